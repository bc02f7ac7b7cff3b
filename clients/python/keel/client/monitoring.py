"""MonitorClient: the monitor's RPCs, one method each, raising typed exceptions; and
the report scope (model, version, time range) built from plain arguments.

Times: ``datetime`` (a naive one is taken as UTC) or an ISO 8601 string
(``2025-06-01T12:00:00Z``); ``since`` may also be a ``timedelta`` before ``until`` (or
now). Unset, the monitor reports on the 24 hours before ``until`` (or now).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from keel.client.errors import invoke
from keel.monitor.v1 import alerts_pb2, ingest_pb2, reports_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import monitor_pb2_grpc as pb_grpc

SERVICE = "keel.monitor.v1.MonitorService"
STREAMING_METHODS = (
    f"{SERVICE}/LogPredictions",
    f"{SERVICE}/WatchAlerts",
    f"{SERVICE}/ExportAggregates",
)
PAGE_SIZE = 1000

Moment = datetime | str


def parse_time(value: Moment, what: str) -> datetime:
    """``value`` as an aware UTC datetime (naive datetimes are UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{what} {value!r}: expected an ISO 8601 time, e.g. 2025-06-01T12:00:00Z"
            ) from None
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected a datetime or an ISO 8601 string, got {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def time_range(
    since: Moment | timedelta | None, until: Moment | None
) -> tuple[datetime | None, datetime | None]:
    """``(start, end)``; either may be None (the monitor's defaults)."""
    end = parse_time(until, "until") if until is not None else None
    if isinstance(since, timedelta):
        if since <= timedelta(0):
            raise ValueError(f"since {since}: expected a positive duration before until")
        return (end or datetime.now(UTC)) - since, end
    start = parse_time(since, "since") if since is not None else None
    if start is not None and end is not None and start >= end:
        raise ValueError(f"since {start.isoformat()} is not before until {end.isoformat()}")
    return start, end


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def scope(
    model: str,
    version: int,
    *,
    since: Moment | timedelta | None = None,
    until: Moment | None = None,
    deployment: str = "",
    variant: str = "",
    window: timedelta | None = None,
) -> reports_pb2.ReportScope:
    """The ``ReportScope`` of a report (version 0: all versions pooled)."""
    start, end = time_range(since, until)
    result = reports_pb2.ReportScope(
        model=f"models/{model}",
        version=version,
        deployment=deployment_name(deployment),
        variant=variant,
    )
    if start is not None:
        result.start_time.CopyFrom(timestamp(start))
    if end is not None:
        result.end_time.CopyFrom(timestamp(end))
    if window is not None:
        if window <= timedelta(0):
            raise ValueError(f"window {window}: expected a positive duration")
        result.window.CopyFrom(duration_pb2.Duration(seconds=int(window.total_seconds())))
    return result


def deployment_name(deployment: str) -> str:
    """``deployments/{id}`` for a deployment id (or name); empty stays empty."""
    if not deployment or deployment.startswith("deployments/"):
        return deployment
    return f"deployments/{deployment}"


class MonitorClient:
    """Calls to ``keel.monitor.v1.MonitorService`` over one channel."""

    def __init__(self, channel: grpc.Channel, *, timeout: float = 30.0) -> None:
        self._stub = pb_grpc.MonitorServiceStub(channel)
        self._timeout = timeout

    def _call(self, method: Any, request: Any) -> Any:
        return invoke(method, request, timeout=self._timeout)

    def log_feedback(self, request: pb.LogFeedbackRequest) -> pb.LogFeedbackResponse:
        response: pb.LogFeedbackResponse = self._call(self._stub.LogFeedback, request)
        return response

    def log_prediction_batch(self, batch: ingest_pb2.PredictionBatch) -> ingest_pb2.BatchAck:
        request = pb.LogPredictionBatchRequest(batch=batch)
        response: pb.LogPredictionBatchResponse = self._call(self._stub.LogPredictionBatch, request)
        return response.ack

    def get_prediction(self, model: str, prediction_id: str) -> ingest_pb2.PredictionRecord:
        request = pb.GetPredictionRequest(model=f"models/{model}", prediction_id=prediction_id)
        response: pb.GetPredictionResponse = self._call(self._stub.GetPrediction, request)
        return response.prediction

    def compute_drift(
        self, where: reports_pb2.ReportScope, options: reports_pb2.DriftOptions | None = None
    ) -> pb.ComputeDriftResponse:
        request = pb.ComputeDriftRequest(scope=where, options=options)
        response: pb.ComputeDriftResponse = self._call(self._stub.ComputeDrift, request)
        return response

    def compute_data_quality(self, where: reports_pb2.ReportScope) -> pb.ComputeDataQualityResponse:
        request = pb.ComputeDataQualityRequest(scope=where)
        response: pb.ComputeDataQualityResponse = self._call(self._stub.ComputeDataQuality, request)
        return response

    def compute_performance(
        self,
        where: reports_pb2.ReportScope,
        options: reports_pb2.PerformanceOptions | None = None,
    ) -> pb.ComputePerformanceResponse:
        request = pb.ComputePerformanceRequest(scope=where, options=options)
        response: pb.ComputePerformanceResponse = self._call(self._stub.ComputePerformance, request)
        return response

    def compute_fairness(
        self, where: reports_pb2.ReportScope, options: reports_pb2.FairnessOptions | None = None
    ) -> pb.ComputeFairnessResponse:
        request = pb.ComputeFairnessRequest(scope=where, options=options)
        response: pb.ComputeFairnessResponse = self._call(self._stub.ComputeFairness, request)
        return response

    def compare_variants(self, request: pb.CompareVariantsRequest) -> pb.CompareVariantsResponse:
        response: pb.CompareVariantsResponse = self._call(self._stub.CompareVariants, request)
        return response

    def list_alerts(
        self,
        *,
        model: str = "",
        state: alerts_pb2.AlertState.ValueType = alerts_pb2.ALERT_STATE_UNSPECIFIED,
    ) -> Iterator[alerts_pb2.Alert]:
        """Every alert (of ``model``, in ``state``), newest first, page after page."""
        token = ""
        while True:
            request = pb.ListAlertsRequest(
                page_size=PAGE_SIZE,
                page_token=token,
                model=f"models/{model}" if model else "",
                state=state,
            )
            response: pb.ListAlertsResponse = self._call(self._stub.ListAlerts, request)
            yield from response.alerts
            token = response.next_page_token
            if not token:
                return
