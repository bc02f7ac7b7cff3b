"""Two variants of a deployment compared on metrics, each with a confidence interval, a
test fit for the metric, and Holm's correction when several metrics are compared."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

from keel.monitor.v1 import reports_pb2 as rp
from services.common.errors import InvalidArgument
from services.monitor import metrics_math, statistics
from services.monitor.performance import Joined, confusion, metric, pool, values
from services.monitor.reference import CLASSIFIER_METRICS, REGRESSOR_METRICS
from services.monitor.scope import VersionRows

LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}
# What can be compared: the performance metrics, plus label-free figures.
CLASSIFIER_COMPARED = {*CLASSIFIER_METRICS, "selection_rate"}
REGRESSOR_COMPARED = set(REGRESSOR_METRICS)
SideValues = tuple[float, int, tuple[float, ...]]  # value, sample size, what its test needs


def default_metrics(joined: Joined) -> list[str]:
    declared = [
        o.metric
        for o in joined.reference.objectives
        if o.metric in CLASSIFIER_COMPARED | REGRESSOR_COMPARED
    ]
    if declared:
        return list(dict.fromkeys(declared))
    return ["accuracy"] if joined.reference.classifier else ["rmse"]


def check_metrics(joined: Joined, names: list[str]) -> None:
    allowed = (CLASSIFIER_COMPARED if joined.reference.classifier else REGRESSOR_COMPARED) | {
        "mean_prediction"
    }
    for name in names:
        if name not in allowed:
            raise InvalidArgument(
                f"metrics: '{name}' cannot be compared for this model "
                f"(expected one of {sorted(allowed)})"
            )


def _side(joined: Joined, name: str) -> SideValues | None:
    """The metric's value, its sample size, and what its test needs."""
    if name == "selection_rate":
        labels = joined.get("pred:labels")
        if labels is None or labels.sum() == 0:
            return None
        n, x = int(labels.sum()), int(labels[1] if len(labels) > 1 else 0)
        return x / n, n, (x, n)
    if name == "mean_prediction":
        sums, count = joined.get("n:prediction:sum"), joined.get("n:prediction:count")
        if sums is None or count is None or count[0] - count[1] < 1:
            return None
        n = int(count[0] - count[1])
        return float(sums[0]) / n, n, (n, float(sums[0]), float(sums[1]))
    found = values(joined)
    if name not in found:
        return None
    value, n = found[name]
    table = confusion(joined, None)
    if name == "accuracy" and table is not None:
        return value, n, (int(np.trace(table)), n)
    if name in ("precision", "recall") and table is not None and len(table) == 2:
        tp = int(table[1, 1])
        base = int(table[:, 1].sum()) if name == "precision" else int(table[1].sum())
        return value, base, (tp, base)
    if name == "log_loss":
        loss = joined.arrays["j:logloss"]
        return value, int(loss[0]), (int(loss[0]), float(loss[1]), float(loss[2]))
    if name in ("mae", "rmse", "r2"):
        reg = joined.arrays["j:reg"]
        return value, n, tuple(float(x) for x in reg)
    return value, n, ()


def compare_metric(
    name: str, base: Joined, cand: Joined, level: float, min_samples: int
) -> rp.VariantComparison:
    result = rp.VariantComparison(metric=name)
    b, c = _side(base, name), _side(cand, name)
    if b is None or c is None or min(b[1], c[1]) < max(min_samples, 2):
        result.verdict = rp.COMPARISON_VERDICT_INSUFFICIENT_DATA
        if b is not None:
            result.baseline.metric.CopyFrom(metric(name, b[0], b[1]))
        if c is not None:
            result.candidate.metric.CopyFrom(metric(name, c[0], c[1]))
        return result
    test, comparison = _test(name, base, cand, b, c, level)
    result.test = test
    result.baseline.metric.CopyFrom(metric(name, b[0], b[1]))
    result.candidate.metric.CopyFrom(metric(name, c[0], c[1]))
    result.difference = c[0] - b[0]
    result.difference_interval.CopyFrom(
        rp.ConfidenceInterval(lower=comparison.lower, upper=comparison.upper, level=level)
    )
    result.p_value = comparison.p_value
    z = _z(level)
    for side, message, value, n in (
        (b, result.baseline, b[0], b[1]),
        (c, result.candidate, c[0], c[1]),
    ):
        se = _se(name, side, value, n)
        message.interval.CopyFrom(
            rp.ConfidenceInterval(lower=value - z * se, upper=value + z * se, level=level)
        )
    return result


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def _se(name: str, side: SideValues, value: float, n: int) -> float:
    if name in ("accuracy", "precision", "recall", "selection_rate") or n < 1:
        return math.sqrt(max(value * (1 - value), 0.0) / max(n, 1))
    return (
        abs(value) / math.sqrt(n)
        if name not in ("log_loss", "mae", "mean_prediction")
        else _mean_se(name, side)
    )


def _mean_se(name: str, side: SideValues) -> float:
    data = side[2]
    if name == "mae":
        n, total, squares = data[0], data[3], data[2]
    else:
        n, total, squares = data
    n = max(n, 2)
    variance = max(squares - total * total / n, 0.0) / (n - 1)
    return math.sqrt(variance / n)


def _test(
    name: str, base: Joined, cand: Joined, b: SideValues, c: SideValues, level: float
) -> tuple[rp.ComparisonTest.ValueType, metrics_math.Comparison]:
    if name in ("accuracy", "precision", "recall", "selection_rate"):
        (xb, nb), (xc, nc) = b[2], c[2]
        return rp.COMPARISON_TEST_TWO_PROPORTION_Z, metrics_math.two_proportion_z(
            int(xb), int(nb), int(xc), int(nc), level
        )
    if name in ("log_loss", "mean_prediction"):
        (nb, sb, qb), (nc, sc, qc) = b[2], c[2]
        return rp.COMPARISON_TEST_WELCH_T, metrics_math.welch_t(
            int(nb), sb, qb, int(nc), sc, qc, level
        )
    if name == "mae":
        rb, rc = b[2], c[2]
        return rp.COMPARISON_TEST_WELCH_T, metrics_math.welch_t(
            int(rb[0]), rb[3], rb[2], int(rc[0]), rc[3], rc[2], level
        )
    if name == "rmse":
        rb, rc = b[2], c[2]
        mse = metrics_math.welch_t(int(rb[0]), rb[2], rb[6], int(rc[0]), rc[2], rc[6], level)
        # The test is on the mean squared error; the interval maps to RMSE by the delta method.
        scale = 2 * max((b[0] + c[0]) / 2, 1e-12)
        return rp.COMPARISON_TEST_WELCH_T, metrics_math.Comparison(
            c[0] - b[0],
            c[0] - b[0] - (mse.difference - mse.lower) / scale,
            c[0] - b[0] + (mse.upper - mse.difference) / scale,
            mse.p_value,
            mse.standard_error / scale,
        )
    if name == "roc_auc":
        se = [metrics_math.hanley_mcneil_se(v[0], *_classes(j)) for v, j in ((b, base), (c, cand))]
        return rp.COMPARISON_TEST_HANLEY_MCNEIL, metrics_math.delta_method(
            b[0], se[0], c[0], se[1], level
        )
    if name == "f1":
        se = [_f1_se(j) for j in (base, cand)]
        return rp.COMPARISON_TEST_DELTA_METHOD, metrics_math.delta_method(
            b[0], se[0], c[0], se[1], level
        )
    rb, rc = b[2], c[2]
    se = [metrics_math.r2_standard_error(int(r[0]), r[1], r[2], r[4], r[5], r[7]) for r in (rb, rc)]
    return rp.COMPARISON_TEST_DELTA_METHOD, metrics_math.delta_method(
        b[0], se[0], c[0], se[1], level
    )


def _classes(joined: Joined) -> tuple[int, int]:
    score = joined.get("j:score")
    if score is not None:
        return max(int(score[1].sum()), 1), max(int(score[0].sum()), 1)
    table = confusion(joined, None)
    positives = int(table[1].sum()) if table is not None and len(table) > 1 else 1
    total = int(table.sum()) if table is not None else 2
    return max(positives, 1), max(total - positives, 1)


def _f1_se(joined: Joined) -> float:
    table = confusion(joined, None)
    if table is None or len(table) != 2:
        value = values(joined).get("f1", (0.0, 1))
        return math.sqrt(max(value[0] * (1 - value[0]), 0.0) / max(value[1], 1))
    tp, fp, fn = int(table[1, 1]), int(table[0, 1]), int(table[1, 0])
    return metrics_math.f1_standard_error(tp, fp, fn) if tp + fp + fn else 0.0


def comparison_report(
    baseline: list[VersionRows],
    candidate: list[VersionRows],
    names: list[str],
    level: float,
    min_samples: int,
) -> rp.VariantComparisonReport:
    base, cand = pool(baseline), pool(candidate)
    report = rp.VariantComparisonReport()
    if base is None or cand is None:
        return report
    chosen = names or default_metrics(base)
    check_metrics(base, chosen)
    results = [compare_metric(name, base, cand, level, min_samples) for name in chosen]
    tested = [r for r in results if r.verdict != rp.COMPARISON_VERDICT_INSUFFICIENT_DATA]
    if tested:
        method = "holm" if len(chosen) > 1 else "none"
        adjusted = statistics.adjust_p_values([r.p_value for r in tested], method)
        for result, p in zip(tested, adjusted, strict=True):
            result.significant = bool(p < 1 - level)
            if not result.significant:
                result.verdict = rp.COMPARISON_VERDICT_NO_DIFFERENCE
            else:
                better = (result.difference < 0) == (result.metric in LOWER_IS_BETTER)
                result.verdict = (
                    rp.COMPARISON_VERDICT_CANDIDATE_BETTER
                    if better
                    else rp.COMPARISON_VERDICT_CANDIDATE_WORSE
                )
    report.comparisons.extend(results)
    return report
