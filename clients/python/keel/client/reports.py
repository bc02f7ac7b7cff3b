"""What the monitor's reports return, as plain dataclasses: enums as readable
lower-case strings (``wasserstein``, ``binary_classification``), times as aware UTC
datetimes, ``to_dict()`` ready for ``json.dumps`` (times as ISO strings, NaN as None)
and ``to_pandas()`` (pandas needed only there)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from keel.client._optional import require
from keel.common.v1 import metric_pb2, schema_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp

COMPARATORS = {
    metric_pb2.COMPARATOR_GREATER_OR_EQUAL: ">=",
    metric_pb2.COMPARATOR_GREATER: ">",
    metric_pb2.COMPARATOR_LESS_OR_EQUAL: "<=",
    metric_pb2.COMPARATOR_LESS: "<",
}


def enum_text(enum: Any, value: int, prefix: str) -> str:
    """``DRIFT_METHOD_JENSEN_SHANNON`` → ``jensen_shannon``; unspecified → ``""``."""
    name: str = enum.Name(value) if value in enum.values() else ""
    text = name.removeprefix(prefix).lower()
    return "" if text == "unspecified" else text


def time_of(stamp: timestamp_pb2.Timestamp) -> datetime | None:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def optional_value(message: Message, name: str) -> float | None:
    return float(getattr(message, name)) if message.HasField(name) else None


def plain(value: Any) -> Any:
    """``value`` ready for JSON: dataclasses as dicts, datetimes as ISO strings, NaN and
    infinities as None."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def frame(rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None) -> Any:
    pd = require("pandas")
    return pd.DataFrame(list(rows), columns=columns)


@dataclass(frozen=True)
class ObjectiveCheck:
    """One declared objective checked against a measured value."""

    metric: str
    comparator: str
    threshold: float
    actual: float | None
    passed: bool
    message: str = ""

    @classmethod
    def from_proto(cls, result: metric_pb2.ObjectiveResult) -> ObjectiveCheck:
        objective = result.objective
        return cls(
            metric=objective.metric,
            comparator=COMPARATORS.get(objective.comparator, "?"),
            threshold=objective.threshold,
            actual=optional_value(result, "actual"),
            passed=result.passed,
            message=result.message,
        )

    def __str__(self) -> str:
        return f"{self.metric} {self.comparator} {self.threshold:g}"


# Drift -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftBins:
    """The two distributions compared, on the reference's bins: numeric ``edges``
    (interior; one more count than edges) or ``categories`` (plus a last "unseen" bin)."""

    edges: list[float]
    categories: list[str]
    reference_counts: list[int]
    current_counts: list[int]

    @classmethod
    def from_proto(cls, bins: rp.DriftBins) -> DriftBins:
        return cls(
            list(bins.edges),
            list(bins.categories),
            list(bins.reference_counts),
            list(bins.current_counts),
        )


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one column against the reference: ``drift`` is the verdict (False when
    ``insufficient_data``), ``statistic`` the method's effect size, compared with
    ``threshold`` (alpha in p-value mode)."""

    feature: str
    drift: bool
    method: str
    statistic: float
    threshold: float
    p_value: float | None = None
    target: str = "feature"
    kind: str = ""
    insufficient_data: bool = False
    reference_count: int = 0
    current_count: int = 0
    current_missing_count: int = 0
    bins: DriftBins | None = None

    @classmethod
    def from_proto(cls, item: rp.FeatureDrift) -> FeatureDrift:
        return cls(
            feature=item.feature,
            drift=item.drifted,
            method=enum_text(rp.DriftMethod, item.method, "DRIFT_METHOD_"),
            statistic=item.statistic,
            threshold=item.threshold,
            p_value=optional_value(item, "p_value"),
            target=enum_text(rp.DriftTarget, item.target, "DRIFT_TARGET_"),
            kind=enum_text(schema_pb2.FeatureKind, item.kind, "FEATURE_KIND_"),
            insufficient_data=item.insufficient_data,
            reference_count=item.reference_count,
            current_count=item.current_count,
            current_missing_count=item.current_missing_count,
            bins=DriftBins.from_proto(item.bins) if item.HasField("bins") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """``feature``, ``drift``, ``method``, ``statistic``, ``threshold``, then the rest."""
        found: dict[str, Any] = plain(self)
        return found


@dataclass(frozen=True)
class DriftResult:
    """Drift of a model version's inputs (and prediction, and labels) over a time range."""

    model: str
    version: int
    start: datetime | None
    end: datetime | None
    row_count: int
    features: list[FeatureDrift]
    dataset_drift: bool
    drifted_share: float
    drift_share_threshold: float
    drifted_count: int = 0
    evaluated_count: int = 0
    prediction: FeatureDrift | None = None
    label: FeatureDrift | None = None
    series: list[DriftResult] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drift]

    @classmethod
    def from_report(cls, model: str, report: rp.DriftReport) -> DriftResult:
        return cls(
            model=model,
            version=report.version,
            start=time_of(report.window.start_time),
            end=time_of(report.window.end_time),
            row_count=report.row_count,
            features=[FeatureDrift.from_proto(f) for f in report.features],
            dataset_drift=report.dataset_drifted,
            drifted_share=report.drifted_share,
            drift_share_threshold=report.drift_share_threshold,
            drifted_count=report.drifted_feature_count,
            evaluated_count=report.evaluated_feature_count,
            prediction=(
                FeatureDrift.from_proto(report.prediction)
                if report.HasField("prediction")
                else None
            ),
            label=FeatureDrift.from_proto(report.label) if report.HasField("label") else None,
        )

    @classmethod
    def from_response(cls, model: str, response: pb.ComputeDriftResponse) -> DriftResult:
        result = cls.from_report(model, response.report)
        result.series.extend(cls.from_report(model, r) for r in response.series)
        return result

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = plain(self)
        return found

    def to_pandas(self) -> Any:
        """One row per column compared: the features, then the prediction and label."""
        extra = [c for c in (self.prediction, self.label) if c is not None]
        rows = []
        for item in [*self.features, *extra]:
            row = plain(item)
            row.pop("bins")
            rows.append(row)
        return frame(rows, [f.name for f in fields(FeatureDrift) if f.name != "bins"])


# Performance -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClassPerformance:
    """One class's one-vs-rest metrics."""

    class_label: str
    support: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class PerformanceResult:
    """Live performance from predictions joined with their labels, under the canonical
    metric names, and the model's objectives checked against it."""

    model: str
    version: int
    start: datetime | None
    end: datetime | None
    task: str
    prediction_count: int
    labeled_count: int
    label_coverage: float
    metrics: dict[str, float]
    sample_counts: dict[str, int] = field(default_factory=dict)
    per_class: list[ClassPerformance] = field(default_factory=list)
    class_labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    objectives: list[ObjectiveCheck] = field(default_factory=list)
    series: list[PerformanceResult] = field(default_factory=list)

    @classmethod
    def from_report(
        cls, model: str, version: int, report: rp.PerformanceReport
    ) -> PerformanceResult:
        labels = list(report.confusion.class_labels)
        k = len(labels)
        counts = list(report.confusion.counts)
        return cls(
            model=model,
            version=version,
            start=time_of(report.window.start_time),
            end=time_of(report.window.end_time),
            task=enum_text(schema_pb2.Task, report.task, "TASK_"),
            prediction_count=report.prediction_count,
            labeled_count=report.labeled_count,
            label_coverage=report.label_coverage,
            metrics={m.name: m.value for m in report.metrics},
            sample_counts={m.name: m.sample_count for m in report.metrics},
            per_class=[
                ClassPerformance(c.class_label, c.support, {m.name: m.value for m in c.metrics})
                for c in report.per_class
            ],
            class_labels=labels,
            confusion=[counts[i * k : (i + 1) * k] for i in range(k)]
            if len(counts) == k * k
            else [],
            objectives=[ObjectiveCheck.from_proto(o) for o in report.objectives],
        )

    @classmethod
    def from_response(
        cls, model: str, version: int, response: pb.ComputePerformanceResponse
    ) -> PerformanceResult:
        result = cls.from_report(model, version, response.report)
        result.series.extend(cls.from_report(model, version, r) for r in response.series)
        return result

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = plain(self)
        return found

    def to_pandas(self) -> Any:
        """One row per window (``series`` when asked, else the whole range): ``start``,
        ``end``, the counts, then one column per metric."""
        rows = []
        for item in self.series or [self]:
            row: dict[str, Any] = {
                "start": item.start,
                "end": item.end,
                "prediction_count": item.prediction_count,
                "labeled_count": item.labeled_count,
                "label_coverage": item.label_coverage,
            }
            rows.append({**row, **item.metrics})
        return frame(rows)
