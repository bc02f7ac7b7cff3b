"""What the monitor knows about a model version: its features, classes and reference
profile, as plain records, and the layout of the aggregates derived from them.

The layout is fixed by the reference profile, so every bucket of a version has the same
arrays and two buckets merge by adding them. Numeric columns keep two histograms: the
profile's own bins (deciles of the reference; PSI, Jensen–Shannon, chi-squared) and a
fine grid of ``GRID_CELLS`` equal cells over the reference range widened by half of it
on each side, plus an underflow and an overflow cell (KS and Wasserstein read the
current CDF from it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from services.monitor.numeric_block import Block

GRID_CELLS = 256
SCORE_BINS = 1000  # binary score histograms per label: ROC AUC, confusion at any threshold
OVR_BINS = 200  # multiclass one-vs-rest probability histograms per class
TOP_UNSEEN = 64  # unseen values tracked per categorical column (frequent-items sketch)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# Canonical names of the performance metrics the monitor computes, by task.
CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSOR_METRICS = ("rmse", "mae", "r2")

BINARY = "binary"
MULTICLASS = "multiclass"
REGRESSION = "regression"


@dataclass(frozen=True)
class NumericReference:
    edges: Floats  # interior bin edges, strictly increasing
    counts: Ints  # reference rows per bin, len(edges) + 1
    levels: Floats  # quantile levels, increasing
    values: Floats  # quantile values at those levels
    minimum: float
    maximum: float
    mean: float
    stddev: float
    missing: int = 0

    @property
    def row_count(self) -> int:
        return int(self.counts.sum())

    def grid(self) -> tuple[float, float]:
        """[lo, hi) of the fine grid: the reference range widened by half of it."""
        spread = self.maximum - self.minimum
        if not math.isfinite(spread) or spread <= 0:
            spread = max(abs(self.maximum), 1.0)
        return self.minimum - spread / 2, self.maximum + spread / 2


@dataclass(frozen=True)
class CategoricalReference:
    categories: tuple[str, ...]  # reference order (most frequent first)
    counts: Ints
    missing: int = 0

    @property
    def row_count(self) -> int:
        return int(self.counts.sum())


Reference = NumericReference | CategoricalReference


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: str  # numeric | categorical
    required: bool = False
    range_min: float = -math.inf
    range_max: float = math.inf
    categories: tuple[str, ...] = ()
    pii: bool = False
    protected: bool = False

    @property
    def numeric(self) -> bool:
        return self.kind == "numeric"


@dataclass(frozen=True)
class Objective:
    metric: str
    comparator: str  # >=, >, <=, < (services.common.comparators)
    threshold: float
    split: int  # keel.common.v1.MetricSplit


@dataclass(frozen=True)
class ModelReference:
    """One model version as the monitor needs it."""

    model: str  # resource id (`churn`), without `models/`
    version: int
    task: str  # binary | multiclass | regression
    features: tuple[FeatureSpec, ...]
    class_labels: tuple[str, ...]
    columns: dict[str, Reference]  # feature name, `prediction`, `label` -> reference
    row_count: int
    digest: str  # sha256 of the serialised reference profile
    objectives: tuple[Objective, ...] = ()
    layout: Layout = field(init=False, repr=False, compare=False)
    block: Block = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from services.monitor.numeric_block import Block

        object.__setattr__(self, "layout", Layout.of(self))
        object.__setattr__(self, "block", Block.of(self))

    @property
    def classifier(self) -> bool:
        return self.task != REGRESSION

    @property
    def has_profile(self) -> bool:
        return bool(self.columns)

    def feature(self, name: str) -> FeatureSpec | None:
        return next((f for f in self.features if f.name == name), None)


@dataclass(frozen=True)
class Categories:
    """The known values of a categorical column: the reference's, then the signature's
    others; index ``len(values)`` is the "unseen" bucket."""

    values: tuple[str, ...]
    reference_counts: Ints  # per value (0 for signature-only values), no unseen entry

    @property
    def index(self) -> dict[str, int]:
        return {value: i for i, value in enumerate(self.values)}


@dataclass(frozen=True)
class Layout:
    """The arrays of one bucket's state: name -> (dtype, shape, merge rule)."""

    shapes: dict[str, tuple[str, tuple[int, ...]]]
    categories: dict[str, Categories]
    groups: dict[str, tuple[str, ...]]  # protected feature -> group names

    @staticmethod
    def of(reference: ModelReference) -> Layout:
        shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
        categories: dict[str, Categories] = {}
        groups: dict[str, tuple[str, ...]] = {}
        k = max(len(reference.class_labels), 1)
        for feature in reference.features:
            column = reference.columns.get(feature.name)
            if feature.numeric:
                _numeric(shapes, f"n:{feature.name}", column)
            else:
                categories[feature.name] = _categories(column, feature.categories)
                _categorical(shapes, f"c:{feature.name}", categories[feature.name])
            if feature.protected:
                groups[feature.name] = group_names(feature, column, categories)
                g = len(groups[feature.name])
                shapes[f"f:{feature.name}:pred"] = ("i8", (g, k))
                shapes[f"f:{feature.name}:joint"] = ("i8", (g, k, k))
        shapes["rejections"] = ("i8", (len(reference.features) + 1, 7))
        if reference.task == MULTICLASS:
            categories["prediction"] = _categories(
                reference.columns.get("prediction"), reference.class_labels
            )
            _categorical(shapes, "c:prediction", categories["prediction"])
        else:
            _numeric(shapes, "n:prediction", reference.columns.get("prediction"))
        if reference.classifier:
            categories["label"] = _categories(
                reference.columns.get("label"), reference.class_labels
            )
            _categorical(shapes, "c:label", categories["label"])
            shapes["pred:labels"] = ("i8", (k,))
            shapes["j:confusion"] = ("i8", (k, k))
            shapes["j:logloss"] = ("f8", (3,))  # rows with probabilities, sum, sum of squares
            if reference.task == BINARY:
                shapes["j:score"] = ("i8", (2, SCORE_BINS))
            else:
                shapes["j:ovr"] = ("i8", (k, 2, OVR_BINS))
        else:
            _numeric(shapes, "n:label", reference.columns.get("label"))
            shapes["j:reg"] = ("f8", (8,))  # n, Σe, Σe², Σ|e|, Σy, Σy², Σe⁴, Σey
        return Layout(shapes, categories, groups)


def _numeric(shapes: dict[str, tuple[str, tuple[int, ...]]], prefix: str, ref: object) -> None:
    bins = len(ref.edges) + 1 if isinstance(ref, NumericReference) else 1
    shapes[f"{prefix}:bins"] = ("i8", (bins,))
    shapes[f"{prefix}:grid"] = ("i8", (GRID_CELLS + 2,))
    shapes[f"{prefix}:count"] = ("i8", (4,))  # rows, missing, out of range, outside reference
    shapes[f"{prefix}:sum"] = ("f8", (2,))  # Σx, Σx² of present values
    shapes[f"{prefix}:min"] = ("f8", (1,))
    shapes[f"{prefix}:max"] = ("f8", (1,))


def _categorical(
    shapes: dict[str, tuple[str, tuple[int, ...]]], prefix: str, categories: Categories
) -> None:
    shapes[f"{prefix}:counts"] = ("i8", (len(categories.values) + 1,))
    shapes[f"{prefix}:count"] = ("i8", (2,))  # rows, missing


def _categories(ref: object, declared: tuple[str, ...]) -> Categories:
    values: list[str] = []
    counts: list[int] = []
    if isinstance(ref, CategoricalReference):
        values.extend(ref.categories)
        counts.extend(int(c) for c in ref.counts)
    seen = set(values)
    for value in declared:
        if value not in seen:
            values.append(value)
            counts.append(0)
            seen.add(value)
    return Categories(tuple(values), np.asarray(counts, dtype=np.int64))


def group_names(
    feature: FeatureSpec, column: object, categories: dict[str, Categories]
) -> tuple[str, ...]:
    """Groups of a protected feature: its categories plus `(unseen)`, or the intervals of
    its reference bins (`[30, 40)`)."""
    if not feature.numeric:
        return (*categories[feature.name].values, "(unseen)")
    if not isinstance(column, NumericReference) or len(column.edges) == 0:
        return ("(all)",)
    edges = [f"{edge:g}" for edge in column.edges]
    inner = [f"[{a}, {b})" for a, b in zip(edges, edges[1:], strict=False)]
    return (f"(-inf, {edges[0]})", *inner, f"[{edges[-1]}, +inf)")
