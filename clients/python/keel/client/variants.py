"""What ``Keel.compare_variants`` returns: two variants (A/B, canary) compared on one
or more metrics, with intervals, p-values and a verdict per metric."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keel.client.reports import enum_text, frame, plain, time_of
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp


@dataclass(frozen=True)
class VariantValue:
    """One variant's value of a metric, with its confidence interval."""

    variant: str
    versions: list[int]
    value: float
    sample_count: int
    lower: float
    upper: float

    @classmethod
    def from_proto(cls, item: rp.VariantValue) -> VariantValue:
        return cls(
            variant=item.variant,
            versions=list(item.versions),
            value=item.metric.value,
            sample_count=item.metric.sample_count,
            lower=item.interval.lower,
            upper=item.interval.upper,
        )


@dataclass(frozen=True)
class VariantComparison:
    """One metric compared: ``difference`` is candidate - baseline; ``verdict`` is
    ``candidate_better``, ``candidate_worse``, ``no_difference`` or
    ``insufficient_data`` (the metric's direction taken into account)."""

    metric: str
    baseline: VariantValue
    candidate: VariantValue
    difference: float
    lower: float
    upper: float
    level: float
    p_value: float
    significant: bool
    test: str
    verdict: str

    @classmethod
    def from_proto(cls, item: rp.VariantComparison) -> VariantComparison:
        return cls(
            metric=item.metric,
            baseline=VariantValue.from_proto(item.baseline),
            candidate=VariantValue.from_proto(item.candidate),
            difference=item.difference,
            lower=item.difference_interval.lower,
            upper=item.difference_interval.upper,
            level=item.difference_interval.level,
            p_value=item.p_value,
            significant=item.significant,
            test=enum_text(rp.ComparisonTest, item.test, "COMPARISON_TEST_"),
            verdict=enum_text(rp.ComparisonVerdict, item.verdict, "COMPARISON_VERDICT_"),
        )


@dataclass(frozen=True)
class ComparisonResult:
    """A baseline and a candidate variant compared over a time range."""

    model: str
    baseline: str
    candidate: str
    start: datetime | None
    end: datetime | None
    comparisons: list[VariantComparison]

    @classmethod
    def from_response(
        cls, model: str, baseline: str, candidate: str, response: pb.CompareVariantsResponse
    ) -> ComparisonResult:
        report = response.report
        return cls(
            model=model,
            baseline=baseline,
            candidate=candidate,
            start=time_of(report.window.start_time),
            end=time_of(report.window.end_time),
            comparisons=[VariantComparison.from_proto(c) for c in report.comparisons],
        )

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = plain(self)
        return found

    def to_pandas(self) -> Any:
        """One row per metric: both values, the difference and its interval, the test."""
        rows = []
        for c in self.comparisons:
            rows.append(
                {
                    "metric": c.metric,
                    "baseline": c.baseline.value,
                    "candidate": c.candidate.value,
                    "baseline_samples": c.baseline.sample_count,
                    "candidate_samples": c.candidate.sample_count,
                    "difference": c.difference,
                    "lower": c.lower,
                    "upper": c.upper,
                    "p_value": c.p_value,
                    "significant": c.significant,
                    "test": c.test,
                    "verdict": c.verdict,
                }
            )
        return frame(rows)
