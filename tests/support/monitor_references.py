"""Model references built in a test, without a registry: a binary classifier's, from
profiles computed on the test's own data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.monitor.reference import (
    BINARY,
    CategoricalReference,
    FeatureSpec,
    ModelReference,
    NumericReference,
)

Column = NumericReference | CategoricalReference


def binary_reference(
    features: Sequence[FeatureSpec], columns: Mapping[str, Column | None], row_count: int
) -> ModelReference:
    """Version 1 of model ``m``, a classifier of the labels "0" and "1" with ``features``;
    a column whose profile gave no reference (None) is left out."""
    return ModelReference(
        model="m",
        version=1,
        task=BINARY,
        features=tuple(features),
        class_labels=("0", "1"),
        columns={name: column for name, column in columns.items() if column is not None},
        row_count=row_count,
        digest="d",
    )
