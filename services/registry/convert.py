"""The only module of the registry that knows protobuf: messages to records and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from keel.common.v1 import metric_pb2, schema_pb2
from keel.registry.v1 import alias_pb2, deployment_pb2, event_pb2, gate_pb2, model_pb2
from services.common.comparators import ENUMS, SYMBOLS
from services.common.paging import cursor as cursor
from services.common.paging import token as token
from services.registry import gates
from services.registry.changes import ChangeEntry
from services.registry.core import invalid
from services.registry.records import (
    AliasMove,
    AliasRecord,
    ApprovalRecord,
    ArtifactRecord,
    Change,
    DeploymentRecord,
    FeatureSpec,
    ModelRecord,
    Objective,
    Policy,
    Route,
    Shadow,
    VersionRecord,
)


def _enum_name(enum: Any, value: int, prefix: str, field: str) -> str:
    """The name of ``value`` without ``prefix``; a number the enum does not declare (open
    enums carry any) is INVALID_ARGUMENT naming the request's ``field``."""
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        raise invalid(field, f"unknown value {value}") from None


def _enum_value(enum: Any, name: str, prefix: str) -> int:
    return int(enum.Value(prefix + name))


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


def micros(stamp: timestamp_pb2.Timestamp, field: str) -> int:
    """Microseconds since the epoch of a request's timestamp ``field``."""
    try:
        return int(stamp.ToMicroseconds())
    except ValueError:  # seconds or nanos out of range
        raise invalid(
            field, "expected a timestamp in years 1-9999 with nanos in [0, 999999999]"
        ) from None


def seconds(duration: duration_pb2.Duration, field: str) -> float:
    """Seconds of a request's duration ``field``."""
    try:
        return float(duration.ToTimedelta().total_seconds())
    except (ValueError, OverflowError):  # seconds out of range
        raise invalid(field, "expected a duration within 10,000 years") from None


# models ---------------------------------------------------------------------------------
def objective(message: metric_pb2.Objective, field: str) -> Objective:
    if message.comparator not in SYMBOLS:
        raise invalid(f"{field}.comparator", "expected >=, >, <= or <")
    split = _enum_name(metric_pb2.MetricSplit, message.split, "METRIC_SPLIT_", f"{field}.split")
    return Objective(
        message.metric,
        SYMBOLS[message.comparator],
        message.threshold,
        "HOLDOUT" if split == "UNSPECIFIED" else split,
    )


def objective_message(o: Objective) -> metric_pb2.Objective:
    return metric_pb2.Objective(
        metric=o.metric,
        comparator=ENUMS[o.comparator],
        threshold=o.threshold,
        split=_enum_value(metric_pb2.MetricSplit, o.split, "METRIC_SPLIT_"),  # type: ignore[arg-type]
    )


def policy(message: model_pb2.PromotionPolicy, given: bool) -> Policy:
    if not given:
        return Policy()
    return Policy(
        protected_aliases=tuple(message.protected_aliases),
        require_approval=message.require_approval,
        min_approvals=message.min_approvals or 1,
        primary_metric=message.primary_metric,
        champion_tolerance=message.champion_tolerance,
    )


def model_record(message: model_pb2.Model, model_id: str) -> ModelRecord:
    task = _enum_name(schema_pb2.Task, message.task, "TASK_", "model.task")
    return ModelRecord(
        name=model_id,
        task=task,
        owner_team=message.owner_team,
        description=message.description,
        objectives=tuple(
            objective(o, f"model.objectives[{i}]") for i, o in enumerate(message.objectives)
        ),
        tags=dict(message.tags),
        policy=policy(message.promotion_policy, message.HasField("promotion_policy")),
    )


def model_message(m: ModelRecord) -> model_pb2.Model:
    return model_pb2.Model(
        name=m.resource,
        description=m.description,
        owner_team=m.owner_team,
        task=_enum_value(schema_pb2.Task, m.task, "TASK_"),  # type: ignore[arg-type]
        objectives=[objective_message(o) for o in m.objectives],
        tags=m.tags,
        promotion_policy=model_pb2.PromotionPolicy(
            protected_aliases=m.policy.protected_aliases,
            require_approval=m.policy.require_approval,
            min_approvals=m.policy.min_approvals,
            primary_metric=m.policy.primary_metric,
            champion_tolerance=m.policy.champion_tolerance,
        ),
        state=_enum_value(model_pb2.ModelState, m.state, "MODEL_STATE_"),  # type: ignore[arg-type]
        latest_version=m.latest_version,
        create_time=timestamp(m.create_time),
        update_time=timestamp(m.update_time),
        created_by=m.created_by,
        etag=str(m.revision),
    )


# versions -------------------------------------------------------------------------------
def _whole(metrics: Sequence[metric_pb2.Metric]) -> dict[str, float]:
    return {m.name: m.value for m in metrics if not m.group}


# Fairness disparities, worst first: a ratio is worst at its smallest, a difference at
# its largest.
_DISPARITIES = {
    "demographic_parity_ratio": min,
    "demographic_parity_difference": max,
    "equalized_odds_difference": max,
}


def _worst_disparity(metrics: Sequence[metric_pb2.Metric]) -> dict[str, float]:
    """Each disparity metric at its worst over the protected features (one value per
    feature), so that an objective such as ``demographic_parity_ratio >= 0.8`` holds for
    every protected feature or fails."""
    found: dict[str, list[float]] = {}
    for metric in metrics:
        if metric.name in _DISPARITIES:
            found.setdefault(metric.name, []).append(metric.value)
    return {name: _DISPARITIES[name](values) for name, values in found.items()}


def version_record(message: model_pb2.ModelVersion, model: str, request_id: str) -> VersionRecord:
    flavor = _enum_name(model_pb2.Flavor, message.flavor, "FLAVOR_", "model_version.flavor")
    if flavor == "UNSPECIFIED":
        raise invalid("model_version.flavor", "expected XGBOOST or SKLEARN")
    inputs = []
    for i, feature in enumerate(message.signature.inputs):
        field = f"model_version.signature.inputs[{i}]"
        if not feature.name:
            raise invalid(f"{field}.name", "expected a feature name")
        inputs.append(
            FeatureSpec(
                feature.name,
                _enum_name(schema_pb2.DataType, feature.dtype, "DATA_TYPE_", f"{field}.dtype"),
                _enum_name(schema_pb2.FeatureKind, feature.kind, "FEATURE_KIND_", f"{field}.kind"),
                feature.required,
            )
        )
    stored = model_pb2.ModelVersion()
    stored.CopyFrom(message)
    for output_only in (
        "name",
        "version",
        "status",
        "status_message",
        "author",
        "aliases",
        "create_time",
        "update_time",
        "etag",
        "reference_profile",
        "description",
        "tags",
        "artifact",
        "model_card",
    ):
        stored.ClearField(output_only)
    return VersionRecord(
        model=model,
        version=0,
        flavor=flavor,
        sha256=message.artifact.sha256,
        description=message.description,
        tags=dict(message.tags),
        metrics=_whole(message.evaluation_metrics) | _worst_disparity(message.fairness_metrics),
        training_metrics=_whole(message.training_metrics),
        cv_metrics=_whole(message.cross_validation.metrics),
        inputs=tuple(inputs),
        class_labels=tuple(message.signature.class_labels),
        code_revision=message.lineage.code_revision,
        dataset_sha256=message.lineage.training_dataset.sha256,
        model_card=message.model_card,
        message=stored.SerializeToString(),
        profile=message.reference_profile.SerializeToString()
        if message.HasField("reference_profile")
        else b"",
        request_id=request_id,
    )


def version_patch(message: model_pb2.ModelVersion) -> VersionRecord:
    return VersionRecord(
        model="",
        version=0,
        flavor="",
        sha256="",
        description=message.description,
        tags=dict(message.tags),
        model_card=message.model_card,
    )


def version_message(v: VersionRecord, *, full: bool = True) -> model_pb2.ModelVersion:
    message = model_pb2.ModelVersion()
    message.ParseFromString(v.message)
    if full:
        message.model_card = v.model_card
        if v.profile:
            message.reference_profile.ParseFromString(v.profile)
    message.name = v.resource
    message.version = v.version
    message.status = _enum_value(model_pb2.ModelVersionStatus, v.status, "MODEL_VERSION_STATUS_")  # type: ignore[assignment]
    message.status_message = v.status_message
    message.artifact.name = f"artifacts/{v.sha256}"
    message.artifact.sha256 = v.sha256
    if v.artifact_format:
        message.artifact.size_bytes = v.artifact_size
        message.artifact.format = _format(v.artifact_format)
        message.artifact.create_time.CopyFrom(timestamp(v.artifact_time))
    message.description = v.description
    message.tags.clear()
    message.tags.update(v.tags)
    message.author = v.author
    message.aliases[:] = list(v.aliases)
    message.create_time.CopyFrom(timestamp(v.create_time))
    message.update_time.CopyFrom(timestamp(v.update_time))
    message.etag = str(v.revision)
    return message


def _format(name: str) -> model_pb2.ArtifactFormat.ValueType:
    return model_pb2.ArtifactFormat.Value(f"ARTIFACT_FORMAT_{name.upper()}")


def artifact_message(a: ArtifactRecord) -> model_pb2.Artifact:
    return model_pb2.Artifact(
        name=f"artifacts/{a.sha256}",
        sha256=a.sha256,
        size_bytes=a.size_bytes,
        format=_format(a.format),
        create_time=timestamp(a.create_time),
    )


# aliases, approvals, gates ---------------------------------------------------------------
def alias_message(a: AliasRecord) -> alias_pb2.Alias:
    return alias_pb2.Alias(
        name=a.resource,
        version=a.version,
        previous_version=a.previous_version,
        protected=a.protected,
        update_time=timestamp(a.update_time),
        updated_by=a.updated_by,
        reason=a.reason,
    )


def move_message(m: AliasMove) -> alias_pb2.AliasMove:
    return alias_pb2.AliasMove(
        alias=m.alias,
        kind=_enum_value(alias_pb2.AliasMoveKind, m.kind, "ALIAS_MOVE_KIND_"),  # type: ignore[arg-type]
        from_version=m.from_version,
        to_version=m.to_version,
        move_time=timestamp(m.move_time),
        actor=m.actor,
        reason=m.reason,
        sequence=m.sequence,
    )


def approval_message(a: ApprovalRecord) -> gate_pb2.Approval:
    return gate_pb2.Approval(
        name=a.resource,
        alias=a.alias,
        decision=_enum_value(gate_pb2.ApprovalDecision, a.decision, "APPROVAL_DECISION_"),  # type: ignore[arg-type]
        comment=a.comment,
        approver=a.approver,
        create_time=timestamp(a.create_time),
    )


def _check_message(c: gates.GateCheck) -> gate_pb2.GateCheck:
    message = gate_pb2.GateCheck(
        kind=_enum_value(gate_pb2.GateCheckKind, c.kind, "GATE_CHECK_KIND_"),  # type: ignore[arg-type]
        outcome=_enum_value(gate_pb2.GateCheckOutcome, c.outcome, "GATE_CHECK_OUTCOME_"),  # type: ignore[arg-type]
        message=c.message,
    )
    if c.kind == "OBJECTIVE" and c.objective is not None:
        result = message.objective
        result.objective.CopyFrom(objective_message(c.objective))
        if c.actual is not None:
            result.actual = c.actual
        result.passed = c.outcome == gates.PASSED
        result.message = c.message
    elif c.kind == "CHAMPION_COMPARISON" and c.metric:
        cmp = message.champion_comparison
        cmp.metric, cmp.higher_is_better = c.metric, c.higher_is_better
        cmp.champion_version, cmp.tolerance = c.champion_version, c.tolerance
        if c.challenger_value is not None:
            cmp.challenger_value = c.challenger_value
        if c.champion_value is not None:
            cmp.champion_value = c.champion_value
    elif c.kind == "SIGNATURE_COMPATIBILITY" and c.outcome != gates.SKIPPED:
        compat = message.signature_compatibility
        compat.compatible = c.outcome == gates.PASSED
        for d in c.signature_changes:
            compat.changes.add(
                feature=d.feature,
                kind=_enum_value(gate_pb2.SignatureChangeKind, d.kind, "SIGNATURE_CHANGE_KIND_"),
                breaking=d.breaking,
                old_dtype=_dtype(d.old_dtype),
                new_dtype=_dtype(d.new_dtype),
                message=d.message,
            )
    elif c.kind == "APPROVAL" and c.outcome != gates.SKIPPED:
        message.approvals.required = c.approvals_required
        message.approvals.approved_by[:] = list(c.approved_by)
        message.approvals.rejected_by[:] = list(c.rejected_by)
    return message


def _dtype(name: str) -> schema_pb2.DataType:
    return schema_pb2.DataType.Value(f"DATA_TYPE_{name or 'UNSPECIFIED'}")  # type: ignore[return-value]


def gate_report(r: gates.GateReport) -> gate_pb2.GateReport:
    return gate_pb2.GateReport(
        alias=r.alias,
        target_version=r.target_version,
        current_version=r.current_version,
        protected=r.protected,
        allowed=r.allowed,
        checks=[_check_message(c) for c in r.checks],
        evaluate_time=timestamp(r.evaluate_time),
    )


# deployments ----------------------------------------------------------------------------
def deployment_record(message: deployment_pb2.Deployment, name: str) -> DeploymentRecord:
    model = message.model
    if model:
        parts = model.split("/")
        model = parts[1] if len(parts) == 2 and parts[0] == "models" else model
    return DeploymentRecord(
        name=name,
        model=model,
        description=message.description,
        routes=tuple(Route(r.target, r.weight, r.variant, r.canary) for r in message.routes),
        shadows=tuple(Shadow(s.target, s.variant) for s in message.shadows),
        sticky_key_parameter=message.sticky_key_parameter,
        guard_alert_rules=tuple(message.guard_alert_rules),
    )


def deployment_message(d: DeploymentRecord) -> deployment_pb2.Deployment:
    return deployment_pb2.Deployment(
        name=d.resource,
        model=f"models/{d.model}",
        description=d.description,
        routes=[
            deployment_pb2.Route(
                target=r.target,
                weight=r.weight,
                variant=r.variant,
                canary=r.canary,
                resolved_version=r.resolved_version,
            )
            for r in d.routes
        ],
        shadows=[
            deployment_pb2.Shadow(
                target=s.target, variant=s.variant, resolved_version=s.resolved_version
            )
            for s in d.shadows
        ],
        sticky_key_parameter=d.sticky_key_parameter,
        guard_alert_rules=list(d.guard_alert_rules),
        revision=d.revision,
        create_time=timestamp(d.create_time),
        update_time=timestamp(d.update_time),
        updated_by=d.updated_by,
        etag=str(d.revision),
    )


# changes --------------------------------------------------------------------------------
def _payload(record: object) -> tuple[str, Message]:
    if isinstance(record, ModelRecord):
        return "registered_model", model_message(record)
    if isinstance(record, VersionRecord):
        return "model_version", version_message(record, full=False)
    if isinstance(record, AliasRecord):
        return "alias", alias_message(record)
    if isinstance(record, ApprovalRecord):
        return "approval", approval_message(record)
    if isinstance(record, DeploymentRecord):
        return "deployment", deployment_message(record)
    raise TypeError(f"no event payload for {type(record).__name__}")


def encode_change(change: Change) -> tuple[bytes, bytes | None]:
    """The stored form of a change: its Event (sequence and time filled when read) and
    the state before it, packed in an Any."""
    event = event_pb2.Event(
        type=_enum_value(event_pb2.ChangeType, change.type, "CHANGE_TYPE_"),  # type: ignore[arg-type]
        resource=change.resource,
        model=f"models/{change.model}" if change.model else "",
    )
    field, message = _payload(change.payload)
    getattr(event, field).CopyFrom(message)
    before = None
    if change.before is not None:
        packed = any_pb2.Any()
        packed.Pack(_payload(change.before)[1])
        before = packed.SerializeToString()
    return event.SerializeToString(), before


def event_message(entry: ChangeEntry) -> event_pb2.Event:
    event = event_pb2.Event.FromString(entry.payload)
    event.sequence = entry.sequence
    event.event_time.CopyFrom(timestamp(entry.time))
    event.actor = entry.actor
    return event


def audit_message(entry: ChangeEntry) -> event_pb2.AuditEntry:
    event = event_pb2.Event.FromString(entry.payload)
    audit = event_pb2.AuditEntry(
        sequence=entry.sequence,
        action=event.type,
        resource=entry.resource,
        model=event.model,
        actor=entry.actor,
        time=timestamp(entry.time),
        reason=entry.reason,
        trace_id=entry.trace_id,
    )
    kind = event.WhichOneof("payload")
    if kind is not None:
        audit.after.Pack(getattr(event, kind))
    if entry.before is not None:
        audit.before.ParseFromString(entry.before)
    audit.changed_fields.paths[:] = list(entry.changed_fields)
    return audit


def change_types(values: Sequence[int]) -> list[str]:
    return [_enum_name(event_pb2.ChangeType, value, "CHANGE_TYPE_", "types") for value in values]
