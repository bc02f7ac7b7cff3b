"""Promotion gates: whether a version may take an alias. Pure functions over records.

Checks, in this order: the version is READY; it meets every declared objective; it is
not worse than the current holder on the primary metric by more than the tolerance;
its signature is compatible with the holder's; it has the approvals the model requires
from people other than its author. Only a protected alias enforces anything beyond
READY; for others the remaining checks are SKIPPED.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.registry.records import (
    LOWER_IS_BETTER,
    ApprovalRecord,
    FeatureSpec,
    ModelRecord,
    Objective,
    Status,
    VersionRecord,
)

PASSED, FAILED, SKIPPED = "PASSED", "FAILED", "SKIPPED"


@dataclass(frozen=True)
class SignatureDiff:
    feature: str
    kind: str  # ADDED_OPTIONAL, ADDED_REQUIRED, REMOVED_REQUIRED, …
    breaking: bool
    old_dtype: str = ""
    new_dtype: str = ""
    message: str = ""


@dataclass(frozen=True)
class GateCheck:
    kind: str  # VERSION_READY, OBJECTIVE, CHAMPION_COMPARISON, SIGNATURE_COMPATIBILITY, APPROVAL
    outcome: str
    message: str
    objective: Objective | None = None
    actual: float | None = None
    metric: str = ""
    higher_is_better: bool = True
    challenger_value: float | None = None
    champion_value: float | None = None
    champion_version: int = 0
    tolerance: float = 0.0
    signature_changes: tuple[SignatureDiff, ...] = ()
    approvals_required: int = 0
    approved_by: tuple[str, ...] = ()
    rejected_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class GateReport:
    alias: str
    target_version: int
    current_version: int
    protected: bool
    checks: tuple[GateCheck, ...] = field(default_factory=tuple)
    evaluate_time: int = 0

    @property
    def allowed(self) -> bool:
        return all(check.outcome != FAILED for check in self.checks)

    def failures(self) -> list[str]:
        return [check.message for check in self.checks if check.outcome == FAILED]


def _ready(version: VersionRecord) -> GateCheck:
    if version.status == Status.READY:
        return GateCheck("VERSION_READY", PASSED, f"version {version.version} is READY")
    return GateCheck(
        "VERSION_READY",
        FAILED,
        f"version {version.version} is {version.status}, expected READY",
    )


def _objective(objective: Objective, version: VersionRecord) -> GateCheck:
    values = {
        "TRAIN": version.training_metrics,
        "CROSS_VALIDATION": version.cv_metrics,
    }.get(objective.split, version.metrics)
    actual = values.get(objective.metric)
    if actual is None:
        message = f"objective {objective}: metric '{objective.metric}' was not measured"
        return GateCheck("OBJECTIVE", FAILED, message, objective=objective)
    outcome = PASSED if objective.holds(actual) else FAILED
    verdict = "met" if outcome == PASSED else "not met"
    message = f"objective {objective}: {verdict} ({objective.metric} = {actual:.6g})"
    return GateCheck("OBJECTIVE", outcome, message, objective=objective, actual=actual)


def _champion(model: ModelRecord, target: VersionRecord, holder: VersionRecord | None) -> GateCheck:
    metric = model.primary_metric
    if holder is None or holder.version == target.version:
        return GateCheck("CHAMPION_COMPARISON", SKIPPED, "no current holder to compare with")
    if not metric:
        return GateCheck("CHAMPION_COMPARISON", SKIPPED, "the model declares no primary metric")
    higher = metric not in LOWER_IS_BETTER
    tolerance = model.policy.champion_tolerance
    challenger, champion = target.metrics.get(metric), holder.metrics.get(metric)
    common = dict(
        metric=metric,
        higher_is_better=higher,
        challenger_value=challenger,
        champion_value=champion,
        champion_version=holder.version,
        tolerance=tolerance,
    )
    if champion is None:
        message = f"current holder {holder.version} has no '{metric}'; nothing to compare"
        return GateCheck("CHAMPION_COMPARISON", SKIPPED, message, **common)  # type: ignore[arg-type]
    if challenger is None:
        message = f"version {target.version} has no '{metric}' to compare with the holder"
        return GateCheck("CHAMPION_COMPARISON", FAILED, message, **common)  # type: ignore[arg-type]
    worse_by = (champion - challenger) if higher else (challenger - champion)
    outcome = FAILED if worse_by > tolerance + 1e-12 else PASSED
    message = (
        f"{metric}: version {target.version} has {challenger:.6g}, holder {holder.version} "
        f"has {champion:.6g} (tolerance {tolerance:g})"
    )
    return GateCheck("CHAMPION_COMPARISON", outcome, message, **common)  # type: ignore[arg-type]


def signature_changes(
    old: tuple[FeatureSpec, ...], new: tuple[FeatureSpec, ...]
) -> list[SignatureDiff]:
    """Differences from the holder's inputs (``old``) to the target's (``new``)."""
    before, after = {f.name: f for f in old}, {f.name: f for f in new}
    diffs: list[SignatureDiff] = []
    for name, feature in after.items():
        if name not in before:
            kind = "ADDED_REQUIRED" if feature.required else "ADDED_OPTIONAL"
            diffs.append(
                SignatureDiff(
                    name,
                    kind,
                    feature.required,
                    new_dtype=feature.dtype,
                    message=f"input '{name}' added ({kind.split('_')[1].lower()})",
                )
            )
    for name, feature in before.items():
        new_feature = after.get(name)
        if new_feature is None:
            kind = "REMOVED_REQUIRED" if feature.required else "REMOVED_OPTIONAL"
            diffs.append(
                SignatureDiff(
                    name,
                    kind,
                    feature.required,
                    old_dtype=feature.dtype,
                    message=f"input '{name}' removed",
                )
            )
            continue
        if new_feature.dtype != feature.dtype:
            diffs.append(
                SignatureDiff(
                    name,
                    "DTYPE_CHANGED",
                    True,
                    feature.dtype,
                    new_feature.dtype,
                    f"input '{name}': type {feature.dtype} became {new_feature.dtype}",
                )
            )
        if new_feature.kind != feature.kind:
            diffs.append(
                SignatureDiff(
                    name,
                    "KIND_CHANGED",
                    True,
                    feature.dtype,
                    new_feature.dtype,
                    f"input '{name}': {feature.kind} became {new_feature.kind}",
                )
            )
        if new_feature.required and not feature.required:
            diffs.append(
                SignatureDiff(
                    name, "BECAME_REQUIRED", True, message=f"input '{name}' became required"
                )
            )
        if feature.required and not new_feature.required:
            diffs.append(
                SignatureDiff(
                    name, "BECAME_OPTIONAL", False, message=f"input '{name}' became optional"
                )
            )
    return diffs


def _signature(target: VersionRecord, holder: VersionRecord | None) -> GateCheck:
    if holder is None or holder.version == target.version:
        return GateCheck("SIGNATURE_COMPATIBILITY", SKIPPED, "no current holder to compare with")
    diffs = tuple(signature_changes(holder.inputs, target.inputs))
    breaking = [d.message for d in diffs if d.breaking]
    if breaking:
        message = f"signature incompatible with version {holder.version}: " + "; ".join(breaking)
        return GateCheck("SIGNATURE_COMPATIBILITY", FAILED, message, signature_changes=diffs)
    message = f"signature compatible with version {holder.version}"
    return GateCheck("SIGNATURE_COMPATIBILITY", PASSED, message, signature_changes=diffs)


def _approval(
    model: ModelRecord, target: VersionRecord, decisions: list[ApprovalRecord]
) -> GateCheck:
    required = max(model.policy.min_approvals, 1)
    if not model.policy.require_approval:
        return GateCheck("APPROVAL", SKIPPED, "the model does not require approval")
    latest: dict[str, ApprovalRecord] = {}
    for decision in sorted(decisions, key=lambda d: d.id):
        if decision.approver != target.author:
            latest[decision.approver] = decision
    approved = tuple(sorted(a for a, d in latest.items() if d.decision == "APPROVED"))
    rejected = tuple(sorted(a for a, d in latest.items() if d.decision == "REJECTED"))
    counts = dict(approvals_required=required, approved_by=approved, rejected_by=rejected)
    if rejected:
        message = f"rejected by {', '.join(rejected)}"
        return GateCheck("APPROVAL", FAILED, message, **counts)  # type: ignore[arg-type]
    if len(approved) < required:
        message = (
            f"needs {required} approval(s) from someone other than the author "
            f"'{target.author}', has {len(approved)}"
        )
        return GateCheck("APPROVAL", FAILED, message, **counts)  # type: ignore[arg-type]
    message = f"approved by {', '.join(approved)}"
    return GateCheck("APPROVAL", PASSED, message, **counts)  # type: ignore[arg-type]


def evaluate(
    model: ModelRecord,
    alias: str,
    target: VersionRecord,
    holder: VersionRecord | None,
    decisions: list[ApprovalRecord],
    now: int,
) -> GateReport:
    """The gate report for moving ``alias`` of ``model`` to ``target``."""
    protected = alias in model.policy.protected_aliases
    checks = [_ready(target)]
    if protected:
        checks += [_objective(o, target) for o in model.objectives]
        checks += [_champion(model, target, holder), _signature(target, holder)]
        checks.append(_approval(model, target, decisions))
    else:
        skipped = f"alias '{alias}' is not protected"
        checks += [
            GateCheck(kind, SKIPPED, skipped)
            for kind in ("CHAMPION_COMPARISON", "SIGNATURE_COMPATIBILITY", "APPROVAL")
        ]
    return GateReport(
        alias=alias,
        target_version=target.version,
        current_version=holder.version if holder else 0,
        protected=protected,
        checks=tuple(checks),
        evaluate_time=now,
    )
