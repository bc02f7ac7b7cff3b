"""Infer a model's ``keel.common.v1.Signature`` from its training features.

A pandas DataFrame keeps its column names and dtypes: object, string and category
columns are categorical (STRING) with their observed categories (a category dtype's own
order), numeric columns are numeric with no range enforced. A 2-D numpy array gives
numeric FLOAT32 features ``f0 … f{n-1}``. A feature is required unless the training data
has missing values in it. Outputs follow the names other tools rely on: classifiers
answer ``label`` INT64 [-1] and ``probabilities`` FP32 [-1, C], regressors
``prediction`` FP32 [-1].
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from keel.client._model import Task, is_classification
from keel.client._tabular import Column, columns, text
from keel.common.v1 import schema_pb2


def outputs(task: Task, class_count: int = 0) -> list[schema_pb2.TensorSpec]:
    """The output tensors of a model of ``task``."""
    if is_classification(task):
        return [
            schema_pb2.TensorSpec(name="label", dtype=schema_pb2.DATA_TYPE_INT64, shape=[-1]),
            schema_pb2.TensorSpec(
                name="probabilities", dtype=schema_pb2.DATA_TYPE_FLOAT32, shape=[-1, class_count]
            ),
        ]
    if task == schema_pb2.TASK_REGRESSION:
        return [
            schema_pb2.TensorSpec(name="prediction", dtype=schema_pb2.DATA_TYPE_FLOAT32, shape=[-1])
        ]
    raise ValueError(f"task {task}: expected a classification or regression task")


PII_ACTIONS = {"hash": schema_pb2.PII_ACTION_HASH, "drop": schema_pb2.PII_ACTION_DROP}


def feature(
    column: Column, *, protected: bool = False, pii: str | None = None
) -> schema_pb2.Feature:
    """The signature entry of one column; ``pii`` ('hash' or 'drop') flags it personal."""
    entry = schema_pb2.Feature(
        name=column.name,
        dtype=column.dtype,
        kind=(
            schema_pb2.FEATURE_KIND_CATEGORICAL
            if column.categorical
            else schema_pb2.FEATURE_KIND_NUMERIC
        ),
        required=not bool(column.missing.any()),
        protected=protected,
        pii=pii is not None,
        pii_action=PII_ACTIONS[pii] if pii is not None else schema_pb2.PII_ACTION_UNSPECIFIED,
    )
    entry.categories.extend(column.categories)
    return entry


def signature_from_columns(
    cols: Sequence[Column],
    *,
    task: Task,
    class_labels: Iterable[Any] = (),
    protected: Iterable[str] = (),
    pii: Mapping[str, str] | None = None,
) -> schema_pb2.Signature:
    """The signature of a model fed ``cols``; ``protected`` names protected features,
    ``pii`` maps personal features to what happens to them in prediction logs
    (``hash`` or ``drop``)."""
    marked = set(protected)
    personal = dict(pii or {})
    for what, named in (("protected", marked), ("pii", set(personal))):
        unknown = named - {c.name for c in cols}
        if unknown:
            names = ", ".join(c.name for c in cols)
            raise ValueError(
                f"{what} feature(s) {', '.join(sorted(unknown))} not among the features ({names})"
            )
    for name, action in personal.items():
        if action not in PII_ACTIONS:
            raise ValueError(f"pii feature '{name}': expected 'hash' or 'drop', got {action!r}")
    labels = [text(label) for label in class_labels]
    if is_classification(task) and len(labels) < 2:
        raise ValueError("a classifier's signature needs its class labels (at least 2)")
    return schema_pb2.Signature(
        inputs=[feature(c, protected=c.name in marked, pii=personal.get(c.name)) for c in cols],
        outputs=outputs(task, len(labels)),
        class_labels=labels,
    )


def infer_signature(
    features: Any,
    *,
    task: Task,
    class_labels: Iterable[Any] = (),
    protected: Iterable[str] = (),
) -> schema_pb2.Signature:
    """The signature of a model trained on ``features`` (a DataFrame or a 2-D array)."""
    return signature_from_columns(
        columns(features), task=task, class_labels=class_labels, protected=protected
    )
