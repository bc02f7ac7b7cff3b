"""The report requests: scope from the request, merged state from the buckets, the report
for the whole range and, when asked, one per window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from google.protobuf import timestamp_pb2

from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp
from services.common.errors import InvalidArgument, NotFound
from services.monitor import drift, fairness, performance, quality, variants
from services.monitor.scope import (
    Aggregates,
    Scope,
    Selection,
    VersionRows,
    end_seconds,
    make_scope,
)

R = TypeVar("R")


def _seconds(stamp: timestamp_pb2.Timestamp, present: bool) -> int | None:
    return stamp.seconds if present else None


def _end_seconds(stamp: timestamp_pb2.Timestamp, present: bool) -> int | None:
    return end_seconds(stamp.seconds, stamp.nanos) if present else None


def scope_of(message: rp.ReportScope, base_s: int) -> Scope:
    if not message.model.startswith("models/") or message.model == "models/":
        raise InvalidArgument(f"scope.model: expected 'models/{{model}}', got '{message.model}'")
    return make_scope(
        message.model.removeprefix("models/"),
        message.version,
        message.deployment,
        message.variant,
        _seconds(message.start_time, message.HasField("start_time")),
        _end_seconds(message.end_time, message.HasField("end_time")),
        message.window.seconds if message.HasField("window") else 0,
        base_s,
    )


def window_of(scope: Scope) -> rp.TimeWindow:
    window = rp.TimeWindow()
    window.start_time.FromSeconds(scope.start_s)
    window.end_time.FromSeconds(scope.end_s)
    return window


class Reports:
    def __init__(self, aggregates: Aggregates) -> None:
        self._aggregates = aggregates

    async def _series(self, scope: Scope, build: Callable[[Selection], R]) -> tuple[R, list[R]]:
        whole = build(await self._aggregates.select(scope))
        series = [build(await self._aggregates.select(part)) for part in scope.windows()]
        return whole, series

    async def drift(self, request: pb.ComputeDriftRequest) -> pb.ComputeDriftResponse:
        scope = scope_of(request.scope, self._aggregates.base_s)

        def build(selection: Selection) -> rp.DriftReport:
            held = selection.versions.get(scope.version) if scope.version else selection.newest()
            if held is None:
                raise NotFound(f"model 'models/{scope.model}' has no version with logged rows")
            drift.check_options(held.reference, request.options)
            report = drift.drift_report(held, request.options)
            report.window.CopyFrom(window_of(selection.scope))
            return report

        whole, series = await self._series(scope, build)
        return pb.ComputeDriftResponse(report=whole, series=series)

    async def quality(self, request: pb.ComputeDataQualityRequest) -> pb.ComputeDataQualityResponse:
        scope = scope_of(request.scope, self._aggregates.base_s)

        def build(selection: Selection) -> rp.DataQualityReport:
            held = ordered(selection)
            if held:
                quality.check_features(held[-1].reference, list(request.features))
            report = quality.quality_report(held, list(request.features))
            report.window.CopyFrom(window_of(selection.scope))
            return report

        whole, series = await self._series(scope, build)
        return pb.ComputeDataQualityResponse(report=whole, series=series)

    async def performance(
        self, request: pb.ComputePerformanceRequest
    ) -> pb.ComputePerformanceResponse:
        scope = scope_of(request.scope, self._aggregates.base_s)
        threshold = request.options.decision_threshold
        if request.options.HasField("decision_threshold") and not 0 <= threshold <= 1:
            raise InvalidArgument(f"options.decision_threshold: expected [0, 1], got {threshold}")

        def build(selection: Selection) -> rp.PerformanceReport:
            report = performance.performance_report(ordered(selection), request.options)
            report.window.CopyFrom(window_of(selection.scope))
            return report

        whole, series = await self._series(scope, build)
        return pb.ComputePerformanceResponse(report=whole, series=series)

    async def fairness(self, request: pb.ComputeFairnessRequest) -> pb.ComputeFairnessResponse:
        scope = scope_of(request.scope, self._aggregates.base_s)

        def build(selection: Selection) -> rp.FairnessReport:
            report = fairness.fairness_report(ordered(selection), request.options)
            report.window.CopyFrom(window_of(selection.scope))
            return report

        whole, series = await self._series(scope, build)
        return pb.ComputeFairnessResponse(report=whole, series=series)

    async def compare(self, request: pb.CompareVariantsRequest) -> pb.CompareVariantsResponse:
        scope = scope_of(request.scope, self._aggregates.base_s)
        if scope.variant:
            raise InvalidArgument("scope.variant: must be empty; name the variants to compare")
        for field, name in (
            ("baseline_variant", request.baseline_variant),
            ("candidate_variant", request.candidate_variant),
        ):
            if not name:
                raise InvalidArgument(f"{field}: required")
        level = request.confidence_level if request.HasField("confidence_level") else 0.95
        if not 0 < level < 1:
            raise InvalidArgument(f"confidence_level: expected a value in (0, 1), got {level}")
        min_samples = request.min_samples if request.HasField("min_samples") else 100

        async def one(part: Scope, check: bool) -> rp.VariantComparisonReport:
            sides = []
            for name in (request.baseline_variant, request.candidate_variant):
                selection = await self._aggregates.select(_variant(part, name))
                held = ordered(selection)
                if check and not selection.rows:
                    raise NotFound(f"variant '{name}' has no rows in the range")
                sides.append(held)
            report = variants.comparison_report(
                sides[0], sides[1], list(request.metrics), level, min_samples
            )
            for comparison in report.comparisons:
                for value, held, name in (
                    (comparison.baseline, sides[0], request.baseline_variant),
                    (comparison.candidate, sides[1], request.candidate_variant),
                ):
                    value.variant = name
                    value.versions.extend(h.reference.version for h in held if h.rows)
            report.window.CopyFrom(window_of(part))
            return report

        whole = await one(scope, True)
        series = [await one(part, False) for part in scope.windows()]
        return pb.CompareVariantsResponse(report=whole, series=series)


def _variant(scope: Scope, name: str) -> Scope:
    return replace(scope, variant=name, window_s=0)


def ordered(selection: Selection) -> list[VersionRows]:
    """The versions with rows, oldest first (the newest decides the layout of pooled
    reports)."""
    held = [selection.versions[v] for v in sorted(selection.versions) if selection.versions[v].rows]
    if not held and selection.versions:
        held = [selection.versions[max(selection.versions)]]
    return held
