"""Performance, fairness and variant-comparison statistics from the monitor's aggregates.

Confusion counts, score histograms and running sums in; Python floats and small dataclasses out.
Pure functions with no I/O; bad input raises ValueError. Drift lives in `statistics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ClassMetrics:
    """One class, one-vs-rest; a zero denominator gives 0 (sklearn's zero_division=0)."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationMetrics:
    """Accuracy; precision/recall/f1 of class 1 (binary) or macro averages; every class's own."""

    accuracy: float
    precision: float
    recall: float
    f1: float
    per_class: tuple[ClassMetrics, ...]


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def classification_metrics(confusion: npt.ArrayLike) -> ClassificationMetrics:
    """Metrics of a K x K confusion matrix (actual class by row, predicted by column).

    Binary (K = 2): precision, recall and f1 of class 1. Otherwise macro averages over the classes
    that occur (actual or predicted), as sklearn does on the raw labels.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or np.any(counts < 0):
        raise ValueError(f"confusion: expected a square matrix of counts, got {counts.shape}")
    total = int(counts.sum())
    if total == 0:
        raise ValueError("confusion: no labelled rows")
    tp = np.diag(counts).astype(np.float64)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0).astype(np.float64)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support.astype(np.float64))
    f1 = _ratio(2.0 * tp, support + predicted)
    per_class = tuple(
        ClassMetrics(float(p), float(r), float(f), int(s))
        for p, r, f, s in zip(precision, recall, f1, support, strict=True)
    )
    if counts.shape[0] == 2:
        chosen: npt.NDArray[np.bool_] = np.array([False, True])
    else:
        chosen = (support + predicted) > 0
    return ClassificationMetrics(
        accuracy=float(tp.sum() / total),
        precision=float(np.mean(precision[chosen])),
        recall=float(np.mean(recall[chosen])),
        f1=float(np.mean(f1[chosen])),
        per_class=per_class,
    )


def score_bins(scores: npt.ArrayLike, bins: int) -> npt.NDArray[np.intp]:
    """Bin of each score in [0, 1]: bin i is [i / bins, (i + 1) / bins), 1.0 in the last bin."""
    s = np.asarray(scores, dtype=np.float64)
    if bins < 1:
        raise ValueError(f"bins: expected at least 1, got {bins}")
    if np.any(~np.isfinite(s)) or np.any((s < 0) | (s > 1)):
        raise ValueError("scores must lie in [0, 1]")
    return np.minimum(np.floor(s * bins), bins - 1).astype(np.intp)


def _histogram_pair(negative: npt.ArrayLike, positive: npt.ArrayLike) -> tuple[FloatArray, ...]:
    neg = np.asarray(negative, dtype=np.float64)
    pos = np.asarray(positive, dtype=np.float64)
    if neg.ndim != 1 or neg.shape != pos.shape or neg.size == 0:
        raise ValueError(
            f"expected two score histograms of one length, got {neg.shape}, {pos.shape}"
        )
    if np.any(neg < 0) or np.any(pos < 0):
        raise ValueError("histogram counts must not be negative")
    return neg, pos


def auc_from_histograms(negative: npt.ArrayLike, positive: npt.ArrayLike) -> float | None:
    """ROC AUC from score histograms of actual negatives and positives; None if a class is empty.

    A positive above a negative counts 1, in the same bin 1/2 (ties at the bin's resolution).
    """
    neg, pos = _histogram_pair(negative, positive)
    n_neg, n_pos = neg.sum(), pos.sum()
    if n_neg == 0 or n_pos == 0:
        return None
    negatives_below = np.cumsum(neg) - neg
    return float((np.sum(pos * negatives_below) + 0.5 * np.sum(pos * neg)) / (n_neg * n_pos))


def confusion_at_threshold(
    negative: npt.ArrayLike, positive: npt.ArrayLike, threshold: float
) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) when a score >= threshold is predicted positive.

    The threshold is snapped to the nearest bin edge k / bins; bins k and above are positive, so a
    threshold on an edge (0.5 with 1000 bins) is exact. A threshold of 1 selects nothing.
    """
    neg, pos = _histogram_pair(negative, positive)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: expected a value in [0, 1], got {threshold}")
    k = int(round(threshold * neg.size))
    tp, fn = int(pos[k:].sum()), int(pos[:k].sum())
    fp, tn = int(neg[k:].sum()), int(neg[:k].sum())
    return tp, fp, tn, fn


@dataclass(frozen=True)
class RegressionMetrics:
    """RMSE, MAE, R² (None below two rows) and mean error (bias); error = prediction - actual."""

    rmse: float
    mae: float
    r2: float | None
    mean_error: float


def regression_metrics(
    n: int,
    sum_error: float,
    sum_squared_error: float,
    sum_abs_error: float,
    sum_y: float,
    sum_squared_y: float,
) -> RegressionMetrics:
    """sklearn's RMSE, MAE and R² from running sums (R² is 1 or 0 for a constant y, as sklearn)."""
    if n < 1:
        raise ValueError(f"regression metrics need at least one row, got {n}")
    r2: float | None = None
    if n >= 2:
        total = max(sum_squared_y - sum_y * sum_y / n, 0.0)
        if total <= 1e-12 * sum_squared_y or total == 0.0:
            r2 = 1.0 if sum_squared_error == 0.0 else 0.0
        else:
            r2 = 1.0 - sum_squared_error / total
    return RegressionMetrics(
        rmse=math.sqrt(sum_squared_error / n),
        mae=sum_abs_error / n,
        r2=r2,
        mean_error=sum_error / n,
    )


@dataclass(frozen=True)
class GroupFairness:
    """Rates of one group; TPR/FPR are None without positive/negative labels."""

    group: str
    rows: int
    labeled: int
    selection_rate: float
    true_positive_rate: float | None
    false_positive_rate: float | None
    selection_rate_ratio: float
    adverse_impact: bool
    excluded: bool


@dataclass(frozen=True)
class FairnessResult:
    """Between-group differences over the included groups (fairlearn's definitions)."""

    groups: tuple[GroupFairness, ...]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float | None
    four_fifths_passed: bool


def _spread(rates: Sequence[float | None]) -> float | None:
    known = [r for r in rates if r is not None]
    return max(known) - min(known) if known else None


def fairness(
    groups: Sequence[str],
    rows: npt.ArrayLike,
    selected: npt.ArrayLike,
    tp: npt.ArrayLike,
    fp: npt.ArrayLike,
    tn: npt.ArrayLike,
    fn: npt.ArrayLike,
    min_group_size: int = 30,
    four_fifths: float = 0.8,
) -> FairnessResult:
    """Per-group rates and between-group gaps; groups below `min_group_size` rows are excluded.

    Groups come back largest first (ties by name). Ratios are to the highest selection rate among
    included groups (1.0 when it is 0); only included groups are flagged for adverse impact.
    """
    arrays = [np.asarray(a, dtype=np.int64) for a in (rows, selected, tp, fp, tn, fn)]
    if any(a.shape != (len(groups),) for a in arrays) or any(np.any(a < 0) for a in arrays):
        raise ValueError(f"expected {len(groups)} non-negative counts per group in every array")
    n, sel, tps, fps, tns, fns = arrays
    rate = _ratio(sel.astype(np.float64), n.astype(np.float64))
    tpr = [float(t / (t + f)) if t + f > 0 else None for t, f in zip(tps, fns, strict=True)]
    fpr = [float(f / (f + t)) if f + t > 0 else None for f, t in zip(fps, tns, strict=True)]
    included = n >= min_group_size
    top = float(rate[included].max()) if included.any() else 0.0
    ratio = rate / top if top > 0 else np.ones_like(rate)
    entries = [
        GroupFairness(
            group=groups[i],
            rows=int(n[i]),
            labeled=int(tps[i] + fps[i] + tns[i] + fns[i]),
            selection_rate=float(rate[i]),
            true_positive_rate=tpr[i],
            false_positive_rate=fpr[i],
            selection_rate_ratio=float(ratio[i]),
            adverse_impact=bool(included[i] and ratio[i] < four_fifths),
            excluded=not bool(included[i]),
        )
        for i in sorted(range(len(groups)), key=lambda i: (-int(n[i]), groups[i]))
    ]
    inside = np.flatnonzero(included)
    gaps = [_spread([tpr[i] for i in inside]), _spread([fpr[i] for i in inside])]
    known_gaps = [g for g in gaps if g is not None]
    bottom = float(rate[included].min()) if included.any() else 0.0
    parity_ratio = bottom / top if top > 0 else 1.0
    return FairnessResult(
        groups=tuple(entries),
        demographic_parity_difference=top - bottom,
        demographic_parity_ratio=parity_ratio,
        equalized_odds_difference=max(known_gaps) if known_gaps else None,
        four_fifths_passed=parity_ratio >= four_fifths,
    )


@dataclass(frozen=True)
class Comparison:
    """candidate - baseline, its two-sided interval, p-value and standard error (the interval's)."""

    difference: float
    lower: float
    upper: float
    p_value: float
    standard_error: float


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level: expected a value in (0, 1), got {level}")


def _normal(difference: float, interval_se: float, test_se: float, level: float) -> Comparison:
    _check_level(level)
    half = float(stats.norm.ppf(0.5 + level / 2.0)) * interval_se
    if test_se > 0:
        p_value = float(2.0 * stats.norm.sf(abs(difference) / test_se))
    else:
        p_value = 1.0 if difference == 0 else 0.0
    return Comparison(difference, difference - half, difference + half, p_value, interval_se)


def two_proportion_z(
    x_base: int, n_base: int, x_cand: int, n_cand: int, level: float
) -> Comparison:
    """Two-proportion z-test: pooled SE for the p-value, unpooled (Wald) SE for the interval."""
    if n_base < 1 or n_cand < 1 or not (0 <= x_base <= n_base and 0 <= x_cand <= n_cand):
        raise ValueError("proportions: expected 0 <= x <= n and n >= 1 for both variants")
    p_b, p_c = x_base / n_base, x_cand / n_cand
    unpooled = math.sqrt(p_b * (1 - p_b) / n_base + p_c * (1 - p_c) / n_cand)
    pooled_p = (x_base + x_cand) / (n_base + n_cand)
    pooled = math.sqrt(pooled_p * (1 - pooled_p) * (1 / n_base + 1 / n_cand))
    return _normal(p_c - p_b, unpooled, pooled, level)


def welch_t(
    n_base: int,
    sum_base: float,
    sumsq_base: float,
    n_cand: int,
    sum_cand: float,
    sumsq_cand: float,
    level: float,
) -> Comparison:
    """Welch's t-test of the per-row means from counts, sums and sums of squares."""
    _check_level(level)
    if n_base < 2 or n_cand < 2:
        raise ValueError(f"Welch's t-test needs two rows per variant, got {n_base}, {n_cand}")
    mean_b, mean_c = sum_base / n_base, sum_cand / n_cand
    var_b = max(sumsq_base - sum_base * mean_b, 0.0) / (n_base - 1) / n_base
    var_c = max(sumsq_cand - sum_cand * mean_c, 0.0) / (n_cand - 1) / n_cand
    difference, se = mean_c - mean_b, math.sqrt(var_b + var_c)
    if se == 0:
        p_value = 1.0 if difference == 0 else 0.0
        return Comparison(difference, difference, difference, p_value, 0.0)
    df = (var_b + var_c) ** 2 / (var_b**2 / (n_base - 1) + var_c**2 / (n_cand - 1))
    half = float(stats.t.ppf(0.5 + level / 2.0, df)) * se
    p_value = float(2.0 * stats.t.sf(abs(difference) / se, df))
    return Comparison(difference, difference - half, difference + half, p_value, se)


def delta_method(
    value_b: float, se_b: float, value_c: float, se_c: float, level: float
) -> Comparison:
    """Normal approximation for independent estimates with standard errors se_b and se_c."""
    if se_b < 0 or se_c < 0:
        raise ValueError("standard errors must not be negative")
    se = math.hypot(se_b, se_c)
    return _normal(value_c - value_b, se, se, level)


def f1_standard_error(tp: int, fp: int, fn: int) -> float:
    """Delta-method SE of F1 = 2a / (1 + a), a = tp / (tp + fp + fn) = tp / n.

    SE = 2 sqrt(a (1 - a) / n) / (1 + a)², the same as the full multinomial delta method over
    (tp, fp, fn, tn) since F1 does not depend on tn and is scale-free in the other three.
    """
    n = tp + fp + fn
    if n < 1 or min(tp, fp, fn) < 0:
        raise ValueError(
            f"F1 needs non-negative counts with tp + fp + fn > 0, got {tp}, {fp}, {fn}"
        )
    a = tp / n
    return 2.0 * math.sqrt(a * (1.0 - a) / n) / (1.0 + a) ** 2


def r2_standard_error(
    n: int,
    sum_error: float,
    sum_squared_error: float,
    sum_y: float,
    sum_squared_y: float,
    sum_error_y: float,
) -> float:
    """Delta-method SE of R² = 1 - A/B, A = mean e², B = var y, normal-theory fourth moments.

    Var(e²) = 2 s_e⁴ + 4 m_e² s_e², Var((y - m_y)²) = 2 s_y⁴, Cov = 2 c² with c = cov(e, y);
    SE² = [Var(e²)/B² + A² Var(y²)/B⁴ - 2 A Cov/B³] / n. With c = -s_e² it is Olkin-Finn's
    4 R² (1 - R²)² / n.
    """
    if n < 2:
        raise ValueError(f"R² needs at least two rows, got {n}")
    mean_e, mean_y = sum_error / n, sum_y / n
    a = sum_squared_error / n
    b = sum_squared_y / n - mean_y**2
    if b <= 0:
        raise ValueError("R² is undefined for a constant target")
    var_e = max(a - mean_e**2, 0.0)
    cov = sum_error_y / n - mean_e * mean_y
    variance = (
        (2 * var_e**2 + 4 * mean_e**2 * var_e) / b**2 + 2 * a**2 / b**2 - 4 * a * cov**2 / b**3
    ) / n
    return math.sqrt(max(variance, 0.0))


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley-McNeil (1982) standard error of an AUC from n_pos positives and n_neg negatives."""
    if n_pos < 1 or n_neg < 1 or not 0.0 <= auc <= 1.0:
        raise ValueError("Hanley-McNeil needs both classes and an AUC in [0, 1]")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (
        n_pos * n_neg
    )
    return math.sqrt(max(variance, 0.0))
