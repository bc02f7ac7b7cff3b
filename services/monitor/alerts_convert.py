"""Protobuf ⇄ alerting's domain records: the only alerting module that imports *_pb2."""

from __future__ import annotations

from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from keel.common.v1 import metric_pb2
from keel.monitor.v1 import alerts_pb2 as apb
from keel.monitor.v1 import monitor_pb2 as mpb
from keel.monitor.v1 import reports_pb2
from services.common.comparators import ENUMS, SYMBOLS
from services.common.paging import cursor as cursor
from services.common.paging import token as token
from services.monitor.alert_records import (
    ActionResult,
    AlertEvent,
    AlertFilter,
    AlertRecord,
    AlertState,
    Condition,
    DriftMetric,
    FairnessMetric,
    Metric,
    PerformanceMetric,
    QualityMetric,
    RollbackCanary,
    Rule,
    RuleSpec,
)
from services.monitor.alert_validation import RULE, invalid, resource_id


# scalars ------------------------------------------------------------------------------
def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


def nanos(stamp: timestamp_pb2.Timestamp, field: str) -> int:
    """Nanoseconds since the epoch of a request's timestamp ``field`` (a bound of a
    filter), clamped to int64 (years 1677-2262), the range of every stored time."""
    try:
        return max(-(2**63), min(int(stamp.ToNanoseconds()), 2**63 - 1))
    except ValueError:  # seconds or nanos out of range
        raise invalid(
            field, "expected a timestamp in years 1-9999 with nanos in [0, 999999999]"
        ) from None


def duration(ns: int) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(ns)
    return value


def _name(enum: Any, value: int, prefix: str) -> str:
    """An enum value's name without ``prefix``; "" for 0; ``#n`` (refused) if unknown."""
    if value == 0:
        return ""
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return f"#{value}"


def severity(value: int) -> str:
    return _name(apb.AlertSeverity, value, "ALERT_SEVERITY_")


def min_severity(value: int) -> str:
    """A ``min_severity`` filter: "" for all; INVALID_ARGUMENT when unknown."""
    name = severity(value)
    if name.startswith("#"):
        raise invalid("min_severity", f"unknown severity {value}")
    return name


# conditions ---------------------------------------------------------------------------
def _metric(message: apb.AlertCondition) -> Metric | None:
    kind = message.WhichOneof("metric")
    if kind == "drift":
        method = _name(reports_pb2.DriftMethod, message.drift.method, "DRIFT_METHOD_")
        return DriftMetric(message.drift.feature, method)
    if kind == "data_quality":
        q = message.data_quality
        return QualityMetric(
            _name(apb.DataQualityMeasure, q.measure, "DATA_QUALITY_MEASURE_"), q.feature
        )
    if kind == "performance":
        return PerformanceMetric(message.performance.metric, message.performance.class_label)
    if kind == "fairness":
        f = message.fairness
        return FairnessMetric(_name(apb.FairnessMeasure, f.measure, "FAIRNESS_MEASURE_"), f.feature)
    return None


def condition(message: apb.AlertCondition) -> Condition:
    return Condition(_metric(message), SYMBOLS.get(message.comparator, ""), message.threshold)


def condition_message(c: Condition) -> apb.AlertCondition:
    comparator = ENUMS.get(c.comparator, metric_pb2.COMPARATOR_UNSPECIFIED)
    out = apb.AlertCondition(comparator=comparator, threshold=c.threshold)
    m = c.metric
    if isinstance(m, DriftMetric):
        method = reports_pb2.DriftMethod.Value(f"DRIFT_METHOD_{m.method or 'UNSPECIFIED'}")
        out.drift.CopyFrom(apb.DriftCondition(feature=m.feature, method=method))
    elif isinstance(m, QualityMetric):
        quality = apb.DataQualityMeasure.Value(f"DATA_QUALITY_MEASURE_{m.measure}")
        out.data_quality.CopyFrom(apb.DataQualityCondition(feature=m.feature, measure=quality))
    elif isinstance(m, PerformanceMetric):
        out.performance.CopyFrom(
            apb.PerformanceCondition(metric=m.metric, class_label=m.class_label)
        )
    elif isinstance(m, FairnessMetric):
        fairness = apb.FairnessMeasure.Value(f"FAIRNESS_MEASURE_{m.measure}")
        out.fairness.CopyFrom(apb.FairnessCondition(feature=m.feature, measure=fairness))
    return out


# rules --------------------------------------------------------------------------------
def _action(message: apb.AlertRule) -> RollbackCanary | None:
    if not message.HasField("action"):
        return None
    if message.action.WhichOneof("kind") != "rollback_canary":
        raise invalid(f"{RULE}.action", "expected exactly one action (rollback_canary)")
    field = f"{RULE}.action.rollback_canary.deployment"
    return RollbackCanary(
        resource_id(field, message.action.rollback_canary.deployment, "deployments")
    )


def rule_spec(message: apb.AlertRule, rule_id: str, *, patch: bool = False) -> RuleSpec:
    """The rule a request describes, as written (defaults are filled in by the domain).
    A ``patch`` (of UpdateAlertRule) may leave ``model`` out: it cannot change."""
    return RuleSpec(
        id=rule_id,
        model=resource_id(f"{RULE}.model", message.model, "models", optional=patch),
        condition=condition(message.condition),
        version=message.version,
        deployment=resource_id(
            f"{RULE}.deployment", message.deployment, "deployments", optional=True
        ),
        variant=message.variant,
        description=message.description,
        window_ns=message.window.ToNanoseconds() if message.HasField("window") else None,
        min_samples=message.min_samples,
        cooldown_ns=message.cooldown.ToNanoseconds() if message.HasField("cooldown") else None,
        severity=severity(message.severity),
        action=_action(message),
        disabled=message.disabled,
        labels=dict(message.labels),
    )


def _status(rule: Rule) -> apb.AlertRuleStatus:
    s = rule.status
    state = apb.AlertRuleState.Value(f"ALERT_RULE_STATE_{s.state.value}")
    out = apb.AlertRuleStatus(state=state, sample_count=s.sample_count)
    if s.value is not None:
        out.value = s.value
    if s.evaluate_time:
        out.evaluate_time.CopyFrom(timestamp(s.evaluate_time))
    if s.firing_alert:
        out.firing_alert = f"alerts/{s.firing_alert}"
    return out


def _action_message(action: RollbackCanary) -> apb.AlertAction:
    deployment = f"deployments/{action.deployment}"
    return apb.AlertAction(rollback_canary=apb.RollbackCanaryAction(deployment=deployment))


def rule_message(rule: Rule) -> apb.AlertRule:
    s = rule.spec
    out = apb.AlertRule(
        name=s.name,
        description=s.description,
        model=f"models/{s.model}",
        version=s.version,
        deployment=f"deployments/{s.deployment}" if s.deployment else "",
        variant=s.variant,
        condition=condition_message(s.condition),
        window=duration(s.window),
        min_samples=s.min_samples,
        cooldown=duration(s.cooldown),
        severity=apb.AlertSeverity.Value(f"ALERT_SEVERITY_{s.severity}"),
        disabled=s.disabled,
        labels=dict(s.labels),
        status=_status(rule),
        create_time=timestamp(rule.create_time),
        update_time=timestamp(rule.update_time),
        etag=rule.etag,
    )
    if s.action is not None:
        out.action.CopyFrom(_action_message(s.action))
    return out


# alerts -------------------------------------------------------------------------------
def _result_message(r: ActionResult) -> apb.ActionResult:
    return apb.ActionResult(
        action=_action_message(r.action),
        state=apb.ActionState.Value(f"ACTION_STATE_{r.state.value}"),
        message=r.message,
        update_time=timestamp(r.update_time),
        deployment_revision=r.deployment_revision,
    )


def alert_message(a: AlertRecord) -> apb.Alert:
    out = apb.Alert(
        name=a.name,
        rule=f"alertRules/{a.rule}",
        condition=condition_message(a.condition),
        severity=apb.AlertSeverity.Value(f"ALERT_SEVERITY_{a.severity}"),
        model=f"models/{a.model}",
        version=a.version,
        deployment=f"deployments/{a.deployment}" if a.deployment else "",
        variant=a.variant,
        state=apb.AlertState.Value(f"ALERT_STATE_{a.state.value}"),
        value=a.value,
        sample_count=a.sample_count,
        window=reports_pb2.TimeWindow(
            start_time=timestamp(a.window_start), end_time=timestamp(a.window_end)
        ),
        fire_time=timestamp(a.fire_time),
        message=a.message,
        acknowledged=a.acknowledged,
        acknowledged_by=a.acknowledged_by,
        acknowledge_note=a.acknowledge_note,
        action_results=[_result_message(r) for r in a.actions],
        exemplars=[
            apb.Exemplar(
                prediction_id=e.prediction_id, trace_id=e.trace_id, time=timestamp(e.time_ns)
            )
            for e in a.exemplars
        ],
        last_event_sequence=a.last_event_sequence,
    )
    if a.resolve_value is not None:
        out.resolve_value = a.resolve_value
    if a.resolve_time:
        out.resolve_time.CopyFrom(timestamp(a.resolve_time))
    if a.acknowledge_time:
        out.acknowledge_time.CopyFrom(timestamp(a.acknowledge_time))
    return out


def event_message(e: AlertEvent) -> apb.AlertEvent:
    return apb.AlertEvent(
        sequence=e.sequence,
        type=apb.AlertEventType.Value(f"ALERT_EVENT_TYPE_{e.type.value}"),
        alert=alert_message(e.alert),
        event_time=timestamp(e.time),
    )


def alert_filter(request: mpb.ListAlertsRequest) -> AlertFilter:
    state = _name(apb.AlertState, request.state, "ALERT_STATE_")
    if state.startswith("#"):
        raise invalid("state", f"unknown alert state {request.state}")
    min_severity_name = min_severity(request.min_severity)
    has = request.HasField
    return AlertFilter(
        model=resource_id("model", request.model, "models", optional=True),
        rule=resource_id("rule", request.rule, "alertRules", optional=True),
        state=AlertState(state) if state else None,
        min_severity=min_severity_name,
        start_time=nanos(request.start_time, "start_time") if has("start_time") else None,
        end_time=nanos(request.end_time, "end_time") if has("end_time") else None,
    )
