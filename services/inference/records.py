"""The inference service's domain types: plain dataclasses and numpy, no protobuf."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

Task = Literal["BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION", "REGRESSION"]
DType = Literal["FLOAT32", "FLOAT64", "INT32", "INT64", "BOOL", "STRING"]


@dataclass(frozen=True)
class FeatureSpec:
    """One input column as the signature declares it."""

    name: str
    dtype: DType
    kind: Literal["NUMERIC", "CATEGORICAL"]
    required: bool = True
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    # Personally identifiable: hashed (keyed) or dropped before it leaves the process.
    pii: Literal["", "HASH", "DROP"] = ""


@dataclass(frozen=True)
class ModelSignature:
    """What a served version takes and answers."""

    task: Task
    inputs: tuple[FeatureSpec, ...]
    class_labels: tuple[str, ...] = ()

    @property
    def all_numeric(self) -> bool:
        return all(f.kind == "NUMERIC" for f in self.inputs)

    @property
    def is_classifier(self) -> bool:
        return self.task != "REGRESSION"

    @property
    def output_names(self) -> tuple[str, ...]:
        return ("label", "probabilities") if self.is_classifier else ("prediction",)


class MatrixColumns(Mapping[str, npt.NDArray[np.generic]]):
    """The columns of a ``features`` matrix as received, each a view made when asked
    for: a model reads ``numeric``, and only logging and some pipelines read columns."""

    __slots__ = ("index", "matrix")

    def __init__(self, matrix: npt.NDArray[np.generic], index: Mapping[str, int]) -> None:
        self.matrix = matrix  # [N, F], in the order of ``index``
        self.index = index  # feature name -> column

    def __getitem__(self, name: str) -> npt.NDArray[np.generic]:
        return self.matrix[:, self.index[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class Features:
    """Validated rows, ready for a model: ``numeric`` is float32 [N, F] in signature order
    (NaN where an optional value is missing; a categorical column holds its category's
    index in ``FeatureSpec.categories``, or NaN); ``columns`` keeps each feature's values
    as received (strings for categorical features), for explanations and logging."""

    numeric: npt.NDArray[np.float32]
    columns: Mapping[str, npt.NDArray[np.generic]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.numeric.shape[0])


@dataclass
class Outputs:
    """A model's answer for N rows: ``label`` int64 [N] and ``probabilities`` float32 [N, C]
    for classifiers, ``prediction`` float32 [N] for regressors."""

    tensors: dict[str, npt.NDArray[np.generic]]
