"""Everything ``Keel.log_model`` computes on the caller's machine before it calls the
registry: the task, the safe model file, the signature, the metrics, the
cross-validation summary, the fairness figures, the reference profile and the lineage,
assembled into the ``ModelVersion`` message to register."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keel.client import evaluation
from keel.client._model import (
    Task,
    classes,
    is_classification,
    labels_array,
    parameters,
    predict,
    resolve_task,
)
from keel.client._tabular import columns, digest, row_count
from keel.client.profile import reference_profile
from keel.client.serialize import SerializedModel, serialize
from keel.client.signature import signature_from_columns
from keel.common.v1 import metric_pb2
from keel.registry.v1 import model_pb2


@dataclass(frozen=True)
class PreparedVersion:
    """A version ready to register: its task, its file, and the message to send (whose
    ``artifact.sha256`` is set once the file is uploaded)."""

    task: Task
    artifact: SerializedModel
    version: model_pb2.ModelVersion


def prepare_version(
    model: Any,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    task: str | int | None = None,
    protected: Sequence[str] = (),
    pii: Mapping[str, str] | None = None,
    cv: int | None = 5,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    author: str | None = None,
) -> PreparedVersion:
    """Serialise and evaluate ``model`` and describe it as a ModelVersion."""
    artifact = serialize(model)  # first, so an unsupported model fails before any work
    resolved = resolve_task(model, task)
    train_cols, test_cols = columns(x_train), columns(x_test)
    if [c.name for c in train_cols] != [c.name for c in test_cols]:
        raise ValueError("X_train and X_test must have the same columns, in the same order")
    train_y, test_y = labels_array(y_train), labels_array(y_test)
    _check_rows("train", x_train, train_y)
    _check_rows("test", x_test, test_y)
    class_labels = classes(model) if is_classification(resolved) else []
    signature = signature_from_columns(
        train_cols, task=resolved, class_labels=class_labels, protected=protected, pii=pii
    )
    on_train = predict(model, x_train, resolved)
    on_test = predict(model, x_test, resolved)
    version = model_pb2.ModelVersion(
        flavor=artifact.flavor,
        flavor_version=artifact.flavor_version,
        signature=signature,
        training_metrics=evaluation.metrics(
            resolved, train_y, on_train, metric_pb2.METRIC_SPLIT_TRAIN
        ),
        evaluation_metrics=evaluation.metrics(
            resolved, test_y, on_test, metric_pb2.METRIC_SPLIT_HOLDOUT
        ),
        fairness_metrics=evaluation.fairness_metrics(
            resolved, test_cols, protected, test_y, on_test
        ),
        reference_profile=reference_profile(
            train_cols, task=resolved, predictions=on_train, labels=train_y, dataset="train"
        ),
        lineage=model_pb2.Lineage(
            training_dataset=model_pb2.Dataset(
                name="train", sha256=digest(x_train), row_count=row_count(x_train)
            ),
            evaluation_dataset=model_pb2.Dataset(
                name="holdout", sha256=digest(x_test), row_count=row_count(x_test)
            ),
            parameters=parameters(model),
        ),
        description=description,
        tags=dict(tags or {}),
        author=author or "",
    )
    summary = evaluation.cross_validation(model, x_train, train_y, resolved, cv=cv)
    if summary is not None:
        version.cross_validation.CopyFrom(summary)
    return PreparedVersion(resolved, artifact, version)


def _check_rows(which: str, features: Any, labels: Any) -> None:
    if row_count(features) != len(labels):
        raise ValueError(
            f"X_{which} has {row_count(features)} rows but y_{which} has {len(labels)} labels"
        )
    if len(labels) == 0:
        raise ValueError(f"X_{which} is empty")
