"""The reference profile of a model version: the distribution of its inputs,
predictions and labels on the reference data, on the bins the monitor measures drift on.

Binning follows ``keel/common/v1/profile.proto`` exactly: a numeric column's interior
edges are its deciles (quantiles at 0.1 … 0.9 of the non-missing values), made unique so
they are strictly increasing (a column with few distinct values gets fewer bins). With
edges e_1 < … < e_{B-1}, bin 0 is (-inf, e_1), bin i is [e_i, e_{i+1}) and the last bin
is [e_{B-1}, +inf): the bin of x is ``np.searchsorted(edges, x, side="right")``. NaN is
missing and counted apart; statistics are over the finite values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import timestamp_pb2

from keel.client._model import Predictions, Task, is_classification
from keel.client._tabular import Column, text
from keel.common.v1 import profile_pb2, schema_pb2

DECILES = tuple(i / 10 for i in range(1, 10))
QUANTILE_LEVELS = tuple(i / 100 for i in range(101))


def bin_edges(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Interior edges of a numeric column: its unique deciles, finite and increasing."""
    finite = _finite(values)
    if finite.size == 0:
        return np.empty(0, dtype=np.float64)
    return np.unique(np.quantile(finite, DECILES))


def bin_counts(edges: npt.ArrayLike, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Rows per bin (``len(edges) + 1`` bins, NaN left out), by the documented rule."""
    cut = np.asarray(edges, dtype=np.float64)
    present = np.asarray(values, dtype=np.float64)
    present = present[~np.isnan(present)]
    index = np.searchsorted(cut, present, side="right")
    return np.bincount(index, minlength=cut.size + 1).astype(np.int64)


def numeric_profile(name: str, values: npt.ArrayLike) -> profile_pb2.FeatureProfile:
    """The profile of a numeric column (NaN counted as missing)."""
    array = np.asarray(values, dtype=np.float64)
    missing = int(np.isnan(array).sum())
    edges = bin_edges(array)
    numeric = profile_pb2.NumericProfile(
        bin_edges=edges.tolist(), bin_counts=bin_counts(edges, array).tolist()
    )
    finite = _finite(array)
    if finite.size:
        quantiles = np.quantile(finite, QUANTILE_LEVELS)
        numeric.quantiles.extend(
            profile_pb2.Quantile(level=level, value=float(value))
            for level, value in zip(QUANTILE_LEVELS, quantiles, strict=True)
        )
        numeric.min = float(finite.min())
        numeric.max = float(finite.max())
        numeric.mean = float(finite.mean())
        numeric.stddev = float(finite.std())
    return profile_pb2.FeatureProfile(
        name=name, kind=schema_pb2.FEATURE_KIND_NUMERIC, missing_count=missing, numeric=numeric
    )


def categorical_profile(name: str, values: Iterable[Any]) -> profile_pb2.FeatureProfile:
    """The profile of a categorical column: counts per category, most frequent first
    (ties by value); ``None`` and NaN are missing."""
    counts: Counter[str] = Counter()
    missing = 0
    for value in values:
        if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
            missing += 1
        else:
            counts[text(value)] += 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    categorical = profile_pb2.CategoricalProfile(
        categories=[profile_pb2.CategoryCount(value=v, count=c) for v, c in ordered]
    )
    return profile_pb2.FeatureProfile(
        name=name,
        kind=schema_pb2.FEATURE_KIND_CATEGORICAL,
        missing_count=missing,
        categorical=categorical,
    )


def column_profile(column: Column) -> profile_pb2.FeatureProfile:
    if column.categorical:
        return categorical_profile(column.name, column.values)
    return numeric_profile(column.name, column.values)


def prediction_profile(task: Task, predictions: Predictions) -> profile_pb2.FeatureProfile:
    """The positive-class score of a binary classifier, the predicted label of a
    multiclass one (categorical), the value of a regressor."""
    if task == schema_pb2.TASK_BINARY_CLASSIFICATION:
        return numeric_profile("prediction", predictions.positive_score)
    if task == schema_pb2.TASK_MULTICLASS_CLASSIFICATION:
        return categorical_profile("prediction", predictions.labels)
    return numeric_profile("prediction", predictions.labels)


def label_profile(task: Task, labels: npt.ArrayLike) -> profile_pb2.FeatureProfile:
    """The reference labels: categorical for classifiers, numeric for regressors."""
    if is_classification(task):
        return categorical_profile("label", np.asarray(labels).tolist())
    return numeric_profile("label", labels)


def reference_profile(
    features: Sequence[Column],
    *,
    task: Task,
    predictions: Predictions,
    labels: npt.ArrayLike | None = None,
    dataset: str = "train",
) -> profile_pb2.ReferenceProfile:
    """The profile of a reference data set: every feature (in signature order), the
    model's predictions on it and, when given, its labels."""
    rows = len(features[0].values) if features else len(predictions.labels)
    create_time = timestamp_pb2.Timestamp()
    create_time.GetCurrentTime()
    profile = profile_pb2.ReferenceProfile(
        row_count=rows,
        features=[column_profile(column) for column in features],
        prediction=prediction_profile(task, predictions),
        create_time=create_time,
        dataset=dataset,
    )
    if labels is not None:
        profile.label.CopyFrom(label_profile(task, labels))
    return profile


def _finite(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]
