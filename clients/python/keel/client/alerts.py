"""What ``Keel.alerts`` returns: the monitor's alerts, newest first, as plain
dataclasses (states and severities as lower-case words)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keel.client.reports import COMPARATORS, enum_text, frame, optional_value, plain, time_of
from keel.monitor.v1 import alerts_pb2 as al
from keel.monitor.v1 import reports_pb2 as rp

STATES = {"firing": al.ALERT_STATE_FIRING, "resolved": al.ALERT_STATE_RESOLVED}


def metric_text(condition: al.AlertCondition) -> str:
    """The watched metric in words: ``f1``, ``drift(age)``, ``missing_rate(age)``,
    ``demographic_parity_ratio(sex)``, ``drifted_share``."""
    kind = condition.WhichOneof("metric")
    if kind == "drift":
        drift = condition.drift
        method = enum_text(rp.DriftMethod, drift.method, "DRIFT_METHOD_")
        if not drift.feature:
            return "drifted_share"
        return f"drift({drift.feature}{', ' + method if method else ''})"
    if kind == "data_quality":
        quality = condition.data_quality
        measure = enum_text(al.DataQualityMeasure, quality.measure, "DATA_QUALITY_MEASURE_")
        return f"{measure}({quality.feature})" if quality.feature else measure
    if kind == "performance":
        performance = condition.performance
        label = performance.class_label
        return f"{performance.metric}[{label}]" if label else performance.metric
    if kind == "fairness":
        fairness = condition.fairness
        measure = enum_text(al.FairnessMeasure, fairness.measure, "FAIRNESS_MEASURE_")
        return f"{measure}({fairness.feature})"
    return ""


@dataclass(frozen=True)
class Alert:
    """One firing (and possibly resolved) alert of a rule."""

    name: str
    rule: str
    model: str
    version: int
    deployment: str
    variant: str
    state: str
    severity: str
    metric: str
    condition: str
    value: float
    resolve_value: float | None
    sample_count: int
    fire_time: datetime | None
    resolve_time: datetime | None
    message: str
    acknowledged: bool = False
    acknowledged_by: str = ""

    @classmethod
    def from_proto(cls, alert: al.Alert) -> Alert:
        condition = alert.condition
        metric = metric_text(condition)
        comparator = COMPARATORS.get(condition.comparator, "?")
        return cls(
            name=alert.name,
            rule=alert.rule,
            model=alert.model.removeprefix("models/"),
            version=alert.version,
            deployment=alert.deployment.removeprefix("deployments/"),
            variant=alert.variant,
            state=enum_text(al.AlertState, alert.state, "ALERT_STATE_"),
            severity=enum_text(al.AlertSeverity, alert.severity, "ALERT_SEVERITY_") or "warning",
            metric=metric,
            condition=f"{metric} {comparator} {condition.threshold:g}",
            value=alert.value,
            resolve_value=optional_value(alert, "resolve_value"),
            sample_count=alert.sample_count,
            fire_time=time_of(alert.fire_time),
            resolve_time=time_of(alert.resolve_time),
            message=alert.message,
            acknowledged=alert.acknowledged,
            acknowledged_by=alert.acknowledged_by,
        )

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = plain(self)
        return found


class AlertList(list[Alert]):
    """A list of alerts, newest first, with ``to_dict()`` and ``to_pandas()``."""

    def to_dict(self) -> list[dict[str, Any]]:
        return [alert.to_dict() for alert in self]

    def to_pandas(self) -> Any:
        """One row per alert, one column per field."""
        return frame(self.to_dict(), list(Alert.__dataclass_fields__))


def state_value(state: str | None) -> al.AlertState.ValueType:
    """``firing`` / ``resolved`` (None: both) as the proto's value."""
    if state is None:
        return al.ALERT_STATE_UNSPECIFIED
    key = state.strip().lower()
    if key not in STATES:
        raise ValueError(f"state {state!r}: expected 'firing' or 'resolved'")
    return STATES[key]
