"""A model's figures under Keel's canonical metric names, computed with sklearn.metrics.

Classification: ``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc``,
``log_loss`` — a binary classifier's positive class is its second class (as in
``Signature.class_labels``); a multiclass one uses macro averages and one-vs-rest AUC.
Regression: ``rmse``, ``mae``, ``r2``. A metric that is undefined on the data (AUC with
one class present) is left out rather than reported as a made-up number.

Fairness, for binary classifiers, per protected feature on the holdout: per group
``selection_rate``, ``true_positive_rate``, ``false_positive_rate`` (group
``feature=value``), and across groups ``demographic_parity_difference`` (max − min
selection rate), ``demographic_parity_ratio`` (min / max; 1 when no group is selected)
and ``equalized_odds_difference`` (the larger of the TPR and FPR spreads), with group
``feature``. Numeric protected features are grouped by value only when they have at
most 10 distinct values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from keel.client._model import Predictions, Task, is_classification, predict
from keel.client._optional import require
from keel.client._tabular import Column, find, number_text
from keel.common.v1 import metric_pb2, schema_pb2
from keel.registry.v1 import model_pb2

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
MAX_NUMERIC_GROUPS = 10

Split: TypeAlias = metric_pb2.MetricSplit.ValueType


def metric_names(task: Task) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if is_classification(task) else REGRESSION_METRICS


def scores(task: Task, y_true: npt.ArrayLike, predictions: Predictions) -> dict[str, float]:
    """``{name: value}`` of every canonical metric of ``task`` defined on the data."""
    if is_classification(task):
        return _classification_scores(task, np.asarray(y_true), predictions)
    return _regression_scores(np.asarray(y_true, dtype=np.float64), predictions.labels)


def metrics(
    task: Task, y_true: npt.ArrayLike, predictions: Predictions, split: Split
) -> list[metric_pb2.Metric]:
    """The canonical metrics as ``Metric`` messages of ``split``."""
    count = len(np.asarray(y_true))
    return [
        metric_pb2.Metric(name=name, value=value, split=split, sample_count=count)
        for name, value in scores(task, y_true, predictions).items()
    ]


def _classification_scores(
    task: Task, y_true: npt.NDArray[Any], predictions: Predictions
) -> dict[str, float]:
    m = require("sklearn.metrics")
    labels = list(predictions.class_labels)
    proba = predictions.proba
    assert proba is not None
    y_pred = predictions.labels
    found: dict[str, float] = {"accuracy": float(m.accuracy_score(y_true, y_pred))}
    present = set(np.unique(y_true).tolist())
    if task == schema_pb2.TASK_BINARY_CLASSIFICATION:
        positive = labels[1]
        averaging: dict[str, Any] = {"average": "binary", "pos_label": positive}
    else:
        averaging = {"average": "macro", "labels": labels}
    found["precision"] = float(m.precision_score(y_true, y_pred, zero_division=0, **averaging))
    found["recall"] = float(m.recall_score(y_true, y_pred, zero_division=0, **averaging))
    found["f1"] = float(m.f1_score(y_true, y_pred, zero_division=0, **averaging))
    if task == schema_pb2.TASK_BINARY_CLASSIFICATION:
        if len(present) == 2:
            found["roc_auc"] = float(m.roc_auc_score(y_true == labels[1], proba[:, 1]))
    elif present == set(labels):
        found["roc_auc"] = float(
            m.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
        )
    found["log_loss"] = float(m.log_loss(y_true, proba, labels=labels))
    return found


def _regression_scores(
    y_true: npt.NDArray[np.float64], y_pred: npt.NDArray[Any]
) -> dict[str, float]:
    m = require("sklearn.metrics")
    found = {
        "rmse": math.sqrt(float(m.mean_squared_error(y_true, y_pred))),
        "mae": float(m.mean_absolute_error(y_true, y_pred)),
    }
    if len(y_true) >= 2:
        found["r2"] = float(m.r2_score(y_true, y_pred))
    return found


def cross_validation(
    model: Any, features: Any, labels: npt.ArrayLike, task: Task, *, cv: int | None = 5
) -> model_pb2.CrossValidation | None:
    """Mean and spread across ``cv`` folds of the canonical metrics, from sklearn's
    ``cross_validate`` on a clone of ``model`` fitted on each fold; ``None`` when
    ``cv`` is None. A metric undefined on some fold is summarised over the others."""
    if cv is None:
        return None
    if cv < 2:
        raise ValueError(f"cv {cv}: expected at least 2 folds, or None to skip")
    selection = require("sklearn.model_selection")
    base = require("sklearn.base")
    names = metric_names(task)

    def scorer(estimator: Any, x: Any, y: Any) -> dict[str, float]:
        found = scores(task, y, predict(estimator, x, task))
        return {name: found.get(name, math.nan) for name in names}

    results = selection.cross_validate(
        base.clone(model), features, np.asarray(labels), cv=cv, scoring=scorer
    )
    summary = model_pb2.CrossValidation(folds=cv)
    for name in names:
        folds = np.asarray(results[f"test_{name}"], dtype=np.float64)
        folds = folds[np.isfinite(folds)]
        if folds.size:
            summary.metrics.append(
                metric_pb2.Metric(
                    name=name,
                    value=float(folds.mean()),
                    stddev=float(folds.std()),
                    split=metric_pb2.METRIC_SPLIT_CROSS_VALIDATION,
                    sample_count=len(np.asarray(labels)),
                )
            )
    return summary


def groups(column: Column) -> dict[str, npt.NDArray[np.bool_]] | None:
    """``{value: row mask}`` of a protected column; ``None`` for a numeric column with
    more than 10 distinct values (not groupable). Missing rows belong to no group."""
    present = ~column.missing
    if column.categorical:
        values = sorted({v for v in column.values if v is not None})
        return {v: present & (column.values == v) for v in values}
    numbers = np.unique(column.values[present].astype(np.float64))
    if numbers.size > MAX_NUMERIC_GROUPS:
        return None
    return {number_text(float(v)): present & (column.values == v) for v in numbers}


def fairness_metrics(
    task: Task,
    features: Sequence[Column],
    protected: Iterable[str],
    y_true: npt.ArrayLike,
    predictions: Predictions,
) -> list[metric_pb2.Metric]:
    """Per-group rates and disparities for each protected feature (binary classifiers)."""
    if task != schema_pb2.TASK_BINARY_CLASSIFICATION:
        return []
    positive = predictions.class_labels[1]
    actual = np.asarray(y_true) == positive
    chosen = np.asarray(predictions.labels) == positive
    found: list[metric_pb2.Metric] = []
    for name in protected:
        by_value = groups(find(features, name))
        if by_value:
            found.extend(_feature_fairness(name, by_value, actual, chosen))
    return found


def _confusion(
    actual: npt.NDArray[np.bool_], chosen: npt.NDArray[np.bool_]
) -> tuple[int, int, int, int]:
    """``(tn, fp, fn, tp)`` of positive-class decisions."""
    m = require("sklearn.metrics")
    matrix = m.confusion_matrix(actual, chosen, labels=[False, True])
    tn, fp, fn, tp = (int(n) for n in np.asarray(matrix).ravel())
    return tn, fp, fn, tp


def _feature_fairness(
    name: str,
    by_value: dict[str, npt.NDArray[np.bool_]],
    actual: npt.NDArray[np.bool_],
    chosen: npt.NDArray[np.bool_],
) -> list[metric_pb2.Metric]:
    holdout = metric_pb2.METRIC_SPLIT_HOLDOUT
    found: list[metric_pb2.Metric] = []
    rates: dict[str, list[float]] = {}
    for value, mask in by_value.items():
        size = int(mask.sum())
        tn, fp, fn, tp = _confusion(actual[mask], chosen[mask])
        for metric, numerator, denominator in (
            ("selection_rate", tp + fp, size),
            ("true_positive_rate", tp, tp + fn),
            ("false_positive_rate", fp, fp + tn),
        ):
            if denominator:  # a rate over no rows is undefined, not 0
                rate = numerator / denominator
                rates.setdefault(metric, []).append(rate)
                found.append(
                    metric_pb2.Metric(
                        name=metric,
                        value=rate,
                        split=holdout,
                        group=f"{name}={value}",
                        sample_count=size,
                    )
                )
    total = sum(int(mask.sum()) for mask in by_value.values())

    def disparity(metric: str, value: float) -> metric_pb2.Metric:
        return metric_pb2.Metric(
            name=metric, value=value, split=holdout, group=name, sample_count=total
        )

    selection = rates.get("selection_rate", [])
    if selection:
        high, low = max(selection), min(selection)
        found.append(disparity("demographic_parity_difference", high - low))
        found.append(disparity("demographic_parity_ratio", low / high if high > 0 else 1.0))
    spreads = [
        max(r) - min(r)
        for r in (rates.get("true_positive_rate"), rates.get("false_positive_rate"))
        if r
    ]
    if spreads:
        found.append(disparity("equalized_odds_difference", max(spreads)))
    return found
