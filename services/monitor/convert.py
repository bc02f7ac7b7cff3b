"""Protobuf to the monitor's records: the registry's model and version messages."""

from __future__ import annotations

import hashlib
import math

import numpy as np

from keel.common.v1 import metric_pb2, profile_pb2, schema_pb2
from keel.registry.v1 import model_pb2
from services.common.comparators import SYMBOLS
from services.monitor.reference import (
    BINARY,
    MULTICLASS,
    REGRESSION,
    CategoricalReference,
    FeatureSpec,
    ModelReference,
    NumericReference,
    Objective,
    Reference,
)

TASKS = {
    schema_pb2.TASK_BINARY_CLASSIFICATION: BINARY,
    schema_pb2.TASK_MULTICLASS_CLASSIFICATION: MULTICLASS,
    schema_pb2.TASK_REGRESSION: REGRESSION,
}


def reference_from_registry(
    model: model_pb2.Model, version: model_pb2.ModelVersion
) -> ModelReference:
    signature = version.signature
    profile = version.reference_profile
    columns: dict[str, Reference] = {}
    for feature_profile in profile.features:
        column = column_reference(feature_profile)
        if column is not None:
            columns[feature_profile.name] = column
    for name in ("prediction", "label"):
        if profile.HasField(name):
            column = column_reference(getattr(profile, name))
            if column is not None:
                columns[name] = column
    return ModelReference(
        model=model.name.removeprefix("models/"),
        version=version.version,
        task=TASKS.get(model.task, BINARY if len(signature.class_labels) == 2 else REGRESSION),
        features=tuple(feature_spec(f) for f in signature.inputs),
        class_labels=tuple(signature.class_labels),
        columns=columns,
        row_count=profile.row_count,
        digest=hashlib.sha256(profile.SerializeToString(deterministic=True)).hexdigest(),
        objectives=tuple(objective(o) for o in model.objectives),
    )


def feature_spec(feature: schema_pb2.Feature) -> FeatureSpec:
    categorical = feature.kind == schema_pb2.FEATURE_KIND_CATEGORICAL or (
        feature.kind == schema_pb2.FEATURE_KIND_UNSPECIFIED
        and feature.dtype == schema_pb2.DATA_TYPE_STRING
    )
    bounds = feature.range
    return FeatureSpec(
        name=feature.name,
        kind="categorical" if categorical else "numeric",
        required=feature.required,
        range_min=bounds.min if bounds.HasField("min") else -math.inf,
        range_max=bounds.max if bounds.HasField("max") else math.inf,
        categories=tuple(feature.categories),
        pii=feature.pii,
        protected=feature.protected,
    )


def column_reference(profile: profile_pb2.FeatureProfile) -> Reference | None:
    kind = profile.WhichOneof("distribution")
    if kind == "numeric":
        n = profile.numeric
        return NumericReference(
            edges=np.asarray(n.bin_edges, dtype=np.float64),
            counts=np.asarray(n.bin_counts, dtype=np.int64),
            levels=np.asarray([q.level for q in n.quantiles], dtype=np.float64),
            values=np.asarray([q.value for q in n.quantiles], dtype=np.float64),
            minimum=n.min,
            maximum=n.max,
            mean=n.mean,
            stddev=n.stddev,
            missing=profile.missing_count,
        )
    if kind == "categorical":
        c = profile.categorical
        return CategoricalReference(
            categories=tuple(item.value for item in c.categories),
            counts=np.asarray([item.count for item in c.categories], dtype=np.int64),
            missing=profile.missing_count,
        )
    return None


def objective(message: metric_pb2.Objective) -> Objective:
    comparator = SYMBOLS.get(message.comparator, "")
    return Objective(message.metric, comparator, message.threshold, message.split)
