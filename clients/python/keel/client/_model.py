"""What the client needs to know about a fitted model: its task, its classes, its
predictions and its parameters. Works with any scikit-learn-API estimator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from keel.client._optional import require
from keel.client._tabular import text
from keel.common.v1 import schema_pb2

Task: TypeAlias = schema_pb2.Task.ValueType

_TASK_NAMES: dict[str, Task] = {
    "binary": schema_pb2.TASK_BINARY_CLASSIFICATION,
    "binary_classification": schema_pb2.TASK_BINARY_CLASSIFICATION,
    "multiclass": schema_pb2.TASK_MULTICLASS_CLASSIFICATION,
    "multiclass_classification": schema_pb2.TASK_MULTICLASS_CLASSIFICATION,
    "regression": schema_pb2.TASK_REGRESSION,
}
_PARAMETER_TEXT_LIMIT = 1024


def is_classification(task: Task) -> bool:
    return task in (
        schema_pb2.TASK_BINARY_CLASSIFICATION,
        schema_pb2.TASK_MULTICLASS_CLASSIFICATION,
    )


def classes(model: Any) -> list[Any]:
    """The fitted classifier's classes, in the order of its probability columns."""
    found = getattr(model, "classes_", None)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no classes_: is it a fitted classifier?")
    return list(found)


def resolve_task(model: Any, task: str | int | None) -> Task:
    """The task given (a name such as ``"binary"`` or a ``Task`` value), or the one the
    model shows: a classifier with 2 classes is binary, with more multiclass; a
    regressor is regression."""
    if task is not None:
        if isinstance(task, str):
            key = task.strip().lower().removeprefix("task_")
            if key not in _TASK_NAMES:
                raise ValueError(f"task {task!r}: expected one of binary, multiclass, regression")
            return _TASK_NAMES[key]
        if task not in _TASK_NAMES.values():
            raise ValueError(f"task {task!r}: expected a keel.common.v1.Task value")
        return schema_pb2.Task.ValueType(task)
    base = require("sklearn.base")
    if base.is_classifier(model) or hasattr(model, "classes_"):
        count = len(classes(model))
        if count < 2:
            raise ValueError(f"classifier has {count} class; at least 2 are needed")
        if count == 2:
            return schema_pb2.TASK_BINARY_CLASSIFICATION
        return schema_pb2.TASK_MULTICLASS_CLASSIFICATION
    if base.is_regressor(model):
        return schema_pb2.TASK_REGRESSION
    raise ValueError(
        f"cannot tell the task of {type(model).__name__}; pass task='binary', "
        "'multiclass' or 'regression'"
    )


@dataclass(frozen=True)
class Predictions:
    """A model's answers on one data set.

    ``labels`` are the predicted classes (classifiers) or values (regressors);
    ``proba`` the class probabilities, rows summing to 1, columns in ``class_labels``
    order (classifiers only).
    """

    labels: npt.NDArray[Any]
    proba: npt.NDArray[np.float64] | None
    class_labels: tuple[Any, ...] = ()

    @property
    def positive_score(self) -> npt.NDArray[np.float64]:
        """The positive (second) class's probability of a binary classifier."""
        if self.proba is None or self.proba.shape[1] != 2:
            raise ValueError("a positive-class score needs a binary classifier's probabilities")
        return self.proba[:, 1]


def predict(model: Any, features: Any, task: Task) -> Predictions:
    """``model``'s predictions (and probabilities, for classifiers) on ``features``."""
    labels = np.asarray(model.predict(features))
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if not is_classification(task):
        return Predictions(labels.astype(np.float64), None)
    known = classes(model)
    if not hasattr(model, "predict_proba"):
        raise ValueError(f"{type(model).__name__} has no predict_proba; Keel needs class scores")
    proba = np.asarray(model.predict_proba(features), dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(known):
        raise ValueError(
            f"predict_proba returned shape {proba.shape}; expected [N, {len(known)}] "
            "(one column per class)"
        )
    totals = proba.sum(axis=1, keepdims=True)
    proba = np.divide(proba, totals, out=np.zeros_like(proba), where=totals > 0)
    return Predictions(labels, proba, tuple(known))


def labels_array(y: Any) -> npt.NDArray[Any]:
    """Targets as a 1-D array (a pandas Series, a list or an array)."""
    array = np.asarray(y)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"labels: expected one value per row, got shape {array.shape}")
    return array


def class_texts(values: Any) -> list[str]:
    return [text(v) for v in values]


def parameters(model: Any) -> dict[str, str]:
    """``model.get_params()`` as text: scalars as they print, lists and dicts as JSON,
    other objects (nested estimators) by their repr, each at most 1 KiB."""
    get_params = getattr(model, "get_params", None)
    if get_params is None:
        return {}
    found: dict[str, str] = {}
    for key, value in get_params(deep=True).items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, str | bool | int | float):
            shown = str(value)
        elif isinstance(value, list | tuple | dict):
            shown = json.dumps(value, default=repr, sort_keys=True)
        else:
            shown = repr(value)
        found[str(key)] = shown[:_PARAMETER_TEXT_LIMIT]
    return found
