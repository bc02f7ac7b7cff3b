"""Performance from predictions joined with their labels: the joined counts (confusion,
score histograms, log-loss and error sums) pooled over the versions of a scope, then the
canonical metrics and the model's objectives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keel.common.v1 import metric_pb2, schema_pb2
from keel.monitor.v1 import reports_pb2 as rp
from services.common.comparators import ENUMS, TESTS, holds
from services.monitor import metrics_math
from services.monitor.reference import (
    BINARY,
    CLASSIFIER_METRICS,
    MULTICLASS,
    REGRESSOR_METRICS,
    ModelReference,
    Objective,
)
from services.monitor.scope import VersionRows

PRODUCTION = metric_pb2.METRIC_SPLIT_PRODUCTION
TASKS = {
    BINARY: schema_pb2.TASK_BINARY_CLASSIFICATION,
    MULTICLASS: schema_pb2.TASK_MULTICLASS_CLASSIFICATION,
    "regression": schema_pb2.TASK_REGRESSION,
}


@dataclass
class Joined:
    """Joined counts pooled over versions."""

    reference: ModelReference
    rows: int
    labeled: int
    arrays: dict[str, npt.NDArray[np.generic]]
    predicted: npt.NDArray[np.int64] | None = None

    def get(self, name: str) -> npt.NDArray[np.generic] | None:
        return self.arrays.get(name)


def pool(selection: list[VersionRows]) -> Joined | None:
    if not selection:
        return None
    reference = selection[-1].reference
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    names = [
        "j:confusion",
        "j:score",
        "j:ovr",
        "j:logloss",
        "j:reg",
        "pred:labels",
        "n:prediction:sum",
        "n:prediction:count",
    ]
    for held in selection:
        for name in names:
            if (
                name in held.state.arrays
                and name in reference.layout.shapes
                and (held.state.arrays[name].shape == reference.layout.shapes[name][1])
            ):
                arrays[name] = np.add(arrays.get(name, 0), held.state.arrays[name])
    rows = sum(h.rows for h in selection)
    labeled = sum(h.labeled for h in selection)
    return Joined(reference, rows, labeled, arrays)


def metric(name: str, value: float, samples: int, group: str = "") -> metric_pb2.Metric:
    return metric_pb2.Metric(
        name=name, value=float(value), split=PRODUCTION, sample_count=samples, group=group
    )


def confusion(joined: Joined, threshold: float | None) -> npt.NDArray[np.int64] | None:
    if threshold is not None and joined.get("j:score") is not None:
        hist = joined.arrays["j:score"]
        tp, fp, tn, fn = metrics_math.confusion_at_threshold(hist[0], hist[1], threshold)
        return np.array([[tn, fp], [fn, tp]], dtype=np.int64)
    found = joined.get("j:confusion")
    return None if found is None else found.astype(np.int64)


def values(joined: Joined, threshold: float | None = None) -> dict[str, tuple[float, int]]:
    """Every computable metric: name -> (value, labelled rows)."""
    found: dict[str, tuple[float, int]] = {}
    reference = joined.reference
    if not reference.classifier:
        reg = joined.get("j:reg")
        if reg is not None and reg[0] > 0:
            n = int(reg[0])
            result = metrics_math.regression_metrics(n, *map(float, reg[1:6]))
            found["rmse"], found["mae"] = (result.rmse, n), (result.mae, n)
            if result.r2 is not None:
                found["r2"] = (result.r2, n)
        return found
    table = confusion(joined, threshold)
    if table is None or table.sum() == 0:
        return found
    n = int(table.sum())
    scores = metrics_math.classification_metrics(table)
    for name in ("accuracy", "precision", "recall", "f1"):
        found[name] = (getattr(scores, name), n)
    auc = _auc(joined)
    if auc is not None:
        found["roc_auc"] = (auc, n)
    loss = joined.get("j:logloss")
    if loss is not None and loss[0] > 0:
        found["log_loss"] = (float(loss[1] / loss[0]), int(loss[0]))
    return found


def _auc(joined: Joined) -> float | None:
    score = joined.get("j:score")
    if score is not None:
        return metrics_math.auc_from_histograms(score[0], score[1])
    ovr = joined.get("j:ovr")
    if ovr is None:
        return None
    aucs = [metrics_math.auc_from_histograms(ovr[c, 0], ovr[c, 1]) for c in range(len(ovr))]
    known = [a for a in aucs if a is not None]
    return float(np.mean(known)) if known and len(known) == len(aucs) else None


def class_auc(joined: Joined, index: int) -> float | None:
    score = joined.get("j:score")
    if score is not None:
        auc = metrics_math.auc_from_histograms(score[0], score[1])
        return None if auc is None else (auc if index == 1 else 1 - auc)
    ovr = joined.get("j:ovr")
    return None if ovr is None else metrics_math.auc_from_histograms(ovr[index, 0], ovr[index, 1])


def performance_report(
    selection: list[VersionRows], options: rp.PerformanceOptions
) -> rp.PerformanceReport:
    report = rp.PerformanceReport()
    joined = pool(selection)
    if joined is None:
        return report
    reference = joined.reference
    report.task = TASKS[reference.task]
    report.prediction_count = joined.rows
    report.labeled_count = joined.labeled
    report.label_coverage = joined.labeled / joined.rows if joined.rows else 0.0
    threshold = options.decision_threshold if options.HasField("decision_threshold") else None
    found = values(joined, threshold)
    report.metrics.extend(metric(name, v, n) for name, (v, n) in found.items())
    if reference.classifier:
        table = confusion(joined, threshold)
        if table is not None:
            report.confusion.class_labels.extend(reference.class_labels)
            report.confusion.counts.extend(int(c) for c in table.ravel())
            if table.sum() and (options.per_class or reference.task == MULTICLASS):
                _per_class(report, joined, table)
    report.objectives.extend(check_objectives(reference.objectives, found))
    return report


def _per_class(report: rp.PerformanceReport, joined: Joined, table: npt.NDArray[np.int64]) -> None:
    result = metrics_math.classification_metrics(table)
    for index, (label, per) in enumerate(
        zip(joined.reference.class_labels, result.per_class, strict=True)
    ):
        entry = rp.ClassPerformance(class_label=label, support=per.support)
        entry.metrics.extend(
            metric(name, getattr(per, name), per.support) for name in ("precision", "recall", "f1")
        )
        auc = class_auc(joined, index)
        if auc is not None:
            entry.metrics.append(metric("roc_auc", auc, int(table.sum())))
        report.per_class.append(entry)


def check_objectives(
    objectives: tuple[Objective, ...], found: dict[str, tuple[float, int]]
) -> list[metric_pb2.ObjectiveResult]:
    results = []
    for objective in objectives:
        if objective.metric not in found and objective.metric not in _KNOWN:
            continue
        if objective.metric not in found:
            note = f"{objective.metric} was not measured in production (no labels)"
            results.append(judged(objective, None, note=note))
        else:
            value = found[objective.metric][0]
            results.append(judged(objective, value, where=" in production"))
    return results


def judged(
    objective: Objective,
    value: float | None,
    *,
    note: str = "",
    subject: str = "",
    where: str = "",
) -> metric_pb2.ObjectiveResult:
    """``objective`` checked against ``value`` (None: not measured, so not passed). The
    message is ``note`` unless the objective fails, then it says why:
    ``{subject}{metric} is {value}{where}, not {comparator} {threshold}``."""
    result = metric_pb2.ObjectiveResult(objective=objective_message(objective), message=note)
    if value is None:
        return result
    result.actual = value
    result.passed = holds(objective.comparator, value, objective.threshold)
    if not result.passed:
        symbol = objective.comparator if objective.comparator in TESTS else "?"
        result.message = (
            f"{subject}{objective.metric} is {value:.4g}{where}, "
            f"not {symbol} {objective.threshold:g}"
        )
    return result


def objective_message(objective: Objective) -> metric_pb2.Objective:
    return metric_pb2.Objective(
        metric=objective.metric,
        comparator=ENUMS.get(objective.comparator, metric_pb2.COMPARATOR_UNSPECIFIED),
        threshold=objective.threshold,
        split=metric_pb2.MetricSplit.ValueType(objective.split),
    )


_KNOWN = {*CLASSIFIER_METRICS, *REGRESSOR_METRICS}
