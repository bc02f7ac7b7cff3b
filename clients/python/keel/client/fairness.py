"""What ``Keel.fairness`` returns: rates per group of each protected feature and the
disparities between groups (fairlearn's definitions), with the model's fairness
objectives checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keel.client.reports import ObjectiveCheck, frame, optional_value, plain, time_of
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp


@dataclass(frozen=True)
class GroupRates:
    """One group of a protected feature (a category, or a numeric reference bin such as
    ``[30, 40)``). ``excluded``: smaller than the minimum group size, left out of the
    disparities."""

    group: str
    row_count: int
    labeled_count: int
    selection_rate: float
    true_positive_rate: float | None
    false_positive_rate: float | None
    selection_rate_ratio: float
    adverse_impact: bool
    excluded: bool
    true_positives: int = 0
    false_positives: int = 0
    true_negatives: int = 0
    false_negatives: int = 0

    @classmethod
    def from_proto(cls, item: rp.GroupRates) -> GroupRates:
        return cls(
            group=item.group,
            row_count=item.row_count,
            labeled_count=item.labeled_count,
            selection_rate=item.selection_rate,
            true_positive_rate=optional_value(item, "true_positive_rate"),
            false_positive_rate=optional_value(item, "false_positive_rate"),
            selection_rate_ratio=item.selection_rate_ratio,
            adverse_impact=item.adverse_impact,
            excluded=item.excluded,
            true_positives=item.true_positives,
            false_positives=item.false_positives,
            true_negatives=item.true_negatives,
            false_negatives=item.false_negatives,
        )


@dataclass(frozen=True)
class FeatureFairness:
    """Disparities across the groups of one protected feature."""

    feature: str
    groups: list[GroupRates]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float | None
    four_fifths_passed: bool

    @classmethod
    def from_proto(cls, item: rp.FeatureFairness) -> FeatureFairness:
        return cls(
            feature=item.feature,
            groups=[GroupRates.from_proto(g) for g in item.groups],
            demographic_parity_difference=item.demographic_parity_difference,
            demographic_parity_ratio=item.demographic_parity_ratio,
            equalized_odds_difference=optional_value(item, "equalized_odds_difference"),
            four_fifths_passed=item.four_fifths_passed,
        )


@dataclass(frozen=True)
class FairnessResult:
    """Fairness of a model over a time range, per protected feature."""

    model: str
    version: int
    start: datetime | None
    end: datetime | None
    row_count: int
    labeled_count: int
    positive_class: str
    features: list[FeatureFairness]
    objectives: list[ObjectiveCheck] = field(default_factory=list)
    series: list[FairnessResult] = field(default_factory=list)

    @classmethod
    def from_report(cls, model: str, version: int, report: rp.FairnessReport) -> FairnessResult:
        return cls(
            model=model,
            version=version,
            start=time_of(report.window.start_time),
            end=time_of(report.window.end_time),
            row_count=report.row_count,
            labeled_count=report.labeled_count,
            positive_class=report.positive_class,
            features=[FeatureFairness.from_proto(f) for f in report.features],
            objectives=[ObjectiveCheck.from_proto(o) for o in report.objectives],
        )

    @classmethod
    def from_response(
        cls, model: str, version: int, response: pb.ComputeFairnessResponse
    ) -> FairnessResult:
        result = cls.from_report(model, version, response.report)
        result.series.extend(cls.from_report(model, version, r) for r in response.series)
        return result

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = plain(self)
        return found

    def to_pandas(self) -> Any:
        """One row per (feature, group), with the feature's disparities repeated."""
        rows = []
        for feature in self.features:
            disparities = {
                "demographic_parity_difference": feature.demographic_parity_difference,
                "demographic_parity_ratio": feature.demographic_parity_ratio,
                "equalized_odds_difference": feature.equalized_odds_difference,
            }
            for group in feature.groups:
                rows.append({"feature": feature.feature, **plain(group), **disparities})
        return frame(rows)
