"""Gathers a report from the registry and the monitor over plain gRPC channels.

Every call has the channel's deadline and is retried on UNAVAILABLE by its service
config (``keel.client.channel``); failures raise the client's typed exceptions. A model
the registry does not know is ``NotFound``; a monitor that has no rows for the model
is not an error: the report then shows the reference profile and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc

from keel.client.channel import create_channel
from keel.client.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    NotFound,
    Unavailable,
    translate,
)
from keel.client.registry import IDENTITY_HEADER
from keel.common.v1 import schema_pb2
from keel.monitor.v1 import monitor_pb2 as mpb
from keel.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from keel.monitor.v1 import reports_pb2 as rp
from keel.registry.v1 import deployment_pb2, model_pb2
from keel.registry.v1 import registry_pb2 as rpb
from keel.registry.v1 import registry_pb2_grpc as rpb_grpc
from keel.report import convert, data

REGISTRY_SERVICE = "keel.registry.v1.RegistryService"
MONITOR_SERVICE = "keel.monitor.v1.MonitorService"
DEFAULT_RANGE = timedelta(hours=24)
# Series granularities, all multiples of the monitor's 5-minute base bucket; the report
# takes the finest that gives at most MAX_POINTS windows over its range.
WINDOWS_S = (300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_POINTS = 36
FOUR_FIFTHS = 0.8
COMPARED = {
    schema_pb2.TASK_BINARY_CLASSIFICATION: ("accuracy", "f1", "roc_auc", "selection_rate"),
    schema_pb2.TASK_MULTICLASS_CLASSIFICATION: ("accuracy", "f1"),
    schema_pb2.TASK_REGRESSION: ("rmse", "mae", "mean_prediction"),
}
COMPARABLE = {
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "rmse",
    "mae",
    "r2",
}
NO_TRAFFIC = "No traffic yet: the monitor has no predictions of this version in the range."

_T = TypeVar("_T")


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime

    @classmethod
    def of(cls, since: datetime | None, until: datetime | None, now: datetime) -> Range:
        end = _aware(until or now)
        start = _aware(since) if since else end - DEFAULT_RANGE
        if end <= start:
            raise ValueError(f"--until {end.isoformat()}: expected a time after --since")
        return cls(start, end)

    def window_seconds(self) -> int:
        span = (self.end - self.start).total_seconds()
        for window in WINDOWS_S:
            if span / window <= MAX_POINTS:
                return window
        return WINDOWS_S[-1]


def _aware(moment: datetime) -> datetime:
    """``moment`` with a time zone: UTC when it has none."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def call(method: Callable[..., _T], request: Any) -> _T:
    """One call with the channel's deadline; a failure raises the client's exception."""
    try:
        return method(request)
    except grpc.RpcError as error:
        raise translate(error) from None


@contextmanager
def answering(service: str, address: str) -> Iterator[None]:
    """Names the service in the error of a call it did not answer."""
    try:
        yield
    except (Unavailable, DeadlineExceeded) as error:
        raise type(error)(
            f"the {service} at {address} did not answer: {error.message}", code=error.code
        ) from None


@contextmanager
def stubs(
    registry: str, monitor: str, user: str | None = None
) -> Iterator[tuple[rpb_grpc.RegistryServiceStub, mpb_grpc.MonitorServiceStub]]:
    metadata = ((IDENTITY_HEADER, user),) if user else ()
    with ExitStack() as stack:
        registry_channel = stack.enter_context(
            create_channel(registry, services=[REGISTRY_SERVICE], metadata=metadata)
        )
        monitor_channel = stack.enter_context(
            create_channel(monitor, services=[MONITOR_SERVICE], metadata=metadata)
        )
        yield (
            rpb_grpc.RegistryServiceStub(registry_channel),
            mpb_grpc.MonitorServiceStub(monitor_channel),
        )


def collect(
    name: str,
    *,
    registry: str,
    monitor: str,
    version: int = 0,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    user: str | None = None,
) -> data.Report:
    """The report on ``name``: the given version, else the one `production` points to,
    else the latest; over ``since``..``until`` (the 24 hours up to ``until`` or now)."""
    generated = now or datetime.now(UTC)
    span = Range.of(since, until, generated)
    with stubs(registry, monitor, user) as (registry_stub, monitor_stub):
        with answering("registry", registry):
            model = call(registry_stub.GetModel, rpb.GetModelRequest(name=f"models/{name}")).model
            aliases = _aliases(registry_stub, name)
            number, chosen_by = _choose(model, aliases, version)
            found = _version(registry_stub, name, number) if number else None
            deployments = _deployments(registry_stub, name)
        with answering("monitor", monitor):
            reports = _Monitor(monitor_stub, _scope(name, span, version=number), span)
            return data.Report(
                header=convert.header(name, model, found, aliases, chosen_by),
                start=span.start,
                end=span.end,
                generated=generated,
                drift=reports.drift(found),
                performance=reports.performance() if found else None,
                fairness=reports.fairness(found, model.task),
                variants=tuple(reports.variants(deployments, model)),
            )


def _scope(name: str, span: Range, **fields: Any) -> rp.ReportScope:
    scope = rp.ReportScope(model=f"models/{name}", **fields)
    scope.start_time.FromDatetime(span.start)
    scope.end_time.FromDatetime(span.end)
    return scope


def _aliases(stub: rpb_grpc.RegistryServiceStub, name: str) -> dict[str, int]:
    found: dict[str, int] = {}
    token = ""
    while True:
        reply = call(
            stub.ListAliases,
            rpb.ListAliasesRequest(parent=f"models/{name}", page_size=1000, page_token=token),
        )
        found.update((a.name.rpartition("/")[2], a.version) for a in reply.aliases)
        token = reply.next_page_token
        if not token:
            return found


def _choose(model: model_pb2.Model, aliases: Mapping[str, int], wanted: int) -> tuple[int, str]:
    if wanted:
        return wanted, "--version"
    if "production" in aliases:
        return aliases["production"], "alias production"
    if model.latest_version:
        return model.latest_version, "latest version (no production alias)"
    return 0, "no version registered yet"


def _version(stub: rpb_grpc.RegistryServiceStub, name: str, number: int) -> model_pb2.ModelVersion:
    request = rpb.GetModelVersionRequest(
        name=f"models/{name}/versions/{number}", view=model_pb2.MODEL_VERSION_VIEW_FULL
    )
    return call(stub.GetModelVersion, request).model_version


def _deployments(stub: rpb_grpc.RegistryServiceStub, name: str) -> list[deployment_pb2.Deployment]:
    found: list[deployment_pb2.Deployment] = []
    token = ""
    while True:
        reply = call(
            stub.ListDeployments,
            rpb.ListDeploymentsRequest(model=f"models/{name}", page_size=1000, page_token=token),
        )
        found.extend(reply.deployments)
        token = reply.next_page_token
        if not token:
            return found


def compared_metrics(model: model_pb2.Model) -> list[str]:
    """The model's declared objective metrics that can be compared, then the task's own."""
    declared = [o.metric for o in model.objectives if o.metric in COMPARABLE]
    return list(dict.fromkeys([*declared, *COMPARED.get(model.task, ("accuracy",))]))


def variant_pairs(deployment: deployment_pb2.Deployment) -> list[tuple[str, str]]:
    """(baseline, candidate) pairs: the first route that is not a canary against every
    other route and shadow; none for a deployment with a single variant."""
    variants = [r.variant for r in deployment.routes] + [s.variant for s in deployment.shadows]
    if len(variants) < 2:
        return []
    stable = [r.variant for r in deployment.routes if not r.canary]
    baseline = stable[0] if stable else variants[0]
    return [(baseline, v) for v in variants if v != baseline]


class _Monitor:
    """The monitor's reports on one scope."""

    def __init__(self, stub: mpb_grpc.MonitorServiceStub, scope: rp.ReportScope, span: Range):
        self._stub = stub
        self._scope = scope
        self._span = span

    def drift(self, version: model_pb2.ModelVersion | None) -> data.DriftSection:
        if version is None:
            return data.DriftSection((), note="The model has no version yet.")
        profile = version.reference_profile
        if not profile.features:
            note = f"Version {version.version} has no reference profile."
            return data.DriftSection((), note=note)
        request = mpb.ComputeDriftRequest(
            scope=self._scope, options=rp.DriftOptions(include_bins=True)
        )
        try:
            report = call(self._stub.ComputeDrift, request).report
        except NotFound:
            report = rp.DriftReport()
        except FailedPrecondition as error:
            return data.DriftSection(convert.reference_columns(profile), note=error.message)
        if report.row_count == 0:
            return data.DriftSection(convert.reference_columns(profile), note=NO_TRAFFIC)
        return convert.drift_section(report)

    def performance(self) -> data.PerformanceSection | None:
        window = self._span.window_seconds()
        scope = rp.ReportScope()
        scope.CopyFrom(self._scope)
        scope.window.FromSeconds(window)
        try:
            reply = call(self._stub.ComputePerformance, mpb.ComputePerformanceRequest(scope=scope))
        except NotFound:
            return None
        if reply.report.prediction_count == 0:
            return None
        return convert.performance_section(reply.report, reply.series, window)

    def fairness(
        self, version: model_pb2.ModelVersion | None, task: schema_pb2.Task.ValueType
    ) -> data.FairnessSection:
        if version is None:
            return data.FairnessSection(note="The model has no version yet.")
        if task == schema_pb2.TASK_REGRESSION:
            return data.FairnessSection(note="Fairness by group is reported for classifiers.")
        if not any(f.protected for f in version.signature.inputs):
            return data.FairnessSection(
                note=f"Version {version.version} declares no protected feature."
            )
        request = mpb.ComputeFairnessRequest(scope=self._scope)
        try:
            report = call(self._stub.ComputeFairness, request).report
        except NotFound:
            return data.FairnessSection(note=NO_TRAFFIC)
        except FailedPrecondition as error:
            return data.FairnessSection(note=error.message)
        if report.row_count == 0:
            return data.FairnessSection(note=NO_TRAFFIC)
        return convert.fairness_section(report, FOUR_FIFTHS)

    def variants(
        self, deployments: Sequence[deployment_pb2.Deployment], model: model_pb2.Model
    ) -> Iterator[data.VariantSection]:
        metrics = compared_metrics(model)
        for deployment in deployments:
            for baseline, candidate in variant_pairs(deployment):
                yield self._compare(deployment.name, baseline, candidate, metrics)

    def _compare(
        self, deployment: str, baseline: str, candidate: str, metrics: list[str]
    ) -> data.VariantSection:
        scope = _scope(self._scope.model.removeprefix("models/"), self._span, deployment=deployment)
        request = mpb.CompareVariantsRequest(
            scope=scope, baseline_variant=baseline, candidate_variant=candidate, metrics=metrics
        )
        name = deployment.removeprefix("deployments/")
        try:
            report = call(self._stub.CompareVariants, request).report
        except NotFound as error:
            note = f"No traffic: {error.message}"
            return data.VariantSection(name, baseline, candidate, note=note)
        return data.VariantSection(name, baseline, candidate, convert.comparisons(report))
