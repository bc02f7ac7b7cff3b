"""What a report shows, as plain data: ``collect`` fills it from the services, ``page``
renders it. Nothing here knows about protobuf or HTML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Histogram:
    """Reference and current rows on the same bins (``current`` is empty without traffic).

    Numeric columns have ``edges`` (``len(edges) + 1`` bins); categorical ones have one
    label per bin in ``categories`` (the last may be ``(unseen)``)."""

    reference: tuple[int, ...]
    current: tuple[int, ...] = ()
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def numeric(self) -> bool:
        return not self.categories


@dataclass(frozen=True)
class ColumnDrift:
    """One column's distributions and, with traffic, its drift verdict."""

    name: str
    target: str  # "feature", "prediction" or "label"
    histogram: Histogram
    verdict: str  # "drift", "no drift", "insufficient data" or "no traffic"
    method: str = ""
    statistic: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    mode: str = ""  # "effect size" or "p-value"
    reference_count: int = 0
    current_count: int = 0
    current_missing_count: int = 0


@dataclass(frozen=True)
class DriftSection:
    """Drift of every column of one version over the report's range."""

    columns: tuple[ColumnDrift, ...]
    row_count: int = 0
    drifted_feature_count: int = 0
    evaluated_feature_count: int = 0
    drifted_share: float = 0.0
    drift_share_threshold: float = 0.5
    dataset_drifted: bool = False
    note: str = ""  # why there is nothing to compare, when so


@dataclass(frozen=True)
class Objective:
    """A declared objective checked against production figures."""

    text: str  # e.g. "f1 >= 0.8"
    actual: float | None
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class PerformanceWindow:
    """Performance over one window of the series (or the whole range)."""

    start: datetime
    end: datetime
    prediction_count: int
    labeled_count: int
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PerformanceSection:
    task: str  # "binary classification", "multiclass classification", "regression"
    whole: PerformanceWindow
    series: tuple[PerformanceWindow, ...]
    window_seconds: int
    objectives: tuple[Objective, ...] = ()


@dataclass(frozen=True)
class Group:
    """Rates of one group of a protected feature."""

    name: str
    row_count: int
    labeled_count: int
    selection_rate: float
    selection_rate_ratio: float
    true_positive_rate: float | None
    false_positive_rate: float | None
    adverse_impact: bool
    excluded: bool


@dataclass(frozen=True)
class FeatureFairness:
    feature: str
    groups: tuple[Group, ...]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float | None
    four_fifths_passed: bool


@dataclass(frozen=True)
class FairnessSection:
    features: tuple[FeatureFairness, ...] = ()
    positive_class: str = ""
    row_count: int = 0
    labeled_count: int = 0
    four_fifths_threshold: float = 0.8
    objectives: tuple[Objective, ...] = ()
    note: str = ""  # why there is no fairness report, when so


@dataclass(frozen=True)
class Interval:
    lower: float
    upper: float
    level: float


@dataclass(frozen=True)
class Comparison:
    """One metric compared between a baseline and a candidate variant."""

    metric: str
    baseline: float
    baseline_interval: Interval
    baseline_rows: int
    candidate: float
    candidate_interval: Interval
    candidate_rows: int
    difference: float
    difference_interval: Interval
    p_value: float
    test: str
    verdict: str  # "candidate better", "candidate worse", "no difference", "insufficient data"


@dataclass(frozen=True)
class VariantSection:
    """A baseline variant of a deployment against one candidate."""

    deployment: str
    baseline: str
    candidate: str
    comparisons: tuple[Comparison, ...] = ()
    note: str = ""  # why there is no comparison, when so


@dataclass(frozen=True)
class Header:
    model: str
    description: str
    task: str
    owner_team: str
    version: int  # 0 when the model has no version yet
    status: str = ""
    flavor: str = ""
    author: str = ""
    created: datetime | None = None
    aliases: Mapping[str, int] = field(default_factory=dict)
    objectives: tuple[str, ...] = ()
    evaluation: Mapping[str, float] = field(default_factory=dict)
    chosen_by: str = ""  # how the version was chosen: "--version", "alias production", …


@dataclass(frozen=True)
class Report:
    header: Header
    start: datetime
    end: datetime
    generated: datetime
    drift: DriftSection
    performance: PerformanceSection | None
    fairness: FairnessSection
    variants: tuple[VariantSection, ...] = ()

    @property
    def has_traffic(self) -> bool:
        return self.drift.row_count > 0
