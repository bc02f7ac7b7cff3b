"""The registry's domain records: plain dataclasses, no protobuf.

What the registry reasons about (objectives, metrics, signatures, aliases, routes) is
typed here; what it only stores and returns (lineage, model card, profile, cross-
validation details) travels as the opaque JSON documents ``doc`` and ``profile``.
Times are integer microseconds since the epoch, UTC.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.common.comparators import holds

NAME_PATTERN = re.compile(r"^[a-z0-9-]{1,63}$")
CANONICAL_METRICS = frozenset(
    {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "rmse",
        "mae",
        "r2",
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
    }
)
# Metrics where a smaller value is better; every other canonical metric is higher-better.
LOWER_IS_BETTER = frozenset(
    {"log_loss", "rmse", "mae", "demographic_parity_difference", "equalized_odds_difference"}
)
DEFAULT_PROTECTED_ALIASES = ("production",)
LATEST = "latest"


def now_us() -> int:
    return time.time_ns() // 1000


class Status(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    FAILED = "FAILED"
    ARCHIVED = "ARCHIVED"


@dataclass(frozen=True)
class Objective:
    metric: str
    comparator: str  # one of >=, >, <=, <
    threshold: float
    split: str = "HOLDOUT"

    def holds(self, value: float) -> bool:
        return holds(self.comparator, value, self.threshold)

    def __str__(self) -> str:
        return f"{self.metric} {self.comparator} {self.threshold:g}"


@dataclass(frozen=True)
class Policy:
    protected_aliases: tuple[str, ...] = DEFAULT_PROTECTED_ALIASES
    require_approval: bool = False
    min_approvals: int = 1
    primary_metric: str = ""
    champion_tolerance: float = 0.0


@dataclass
class ModelRecord:
    name: str
    task: str
    owner_team: str = ""
    description: str = ""
    objectives: tuple[Objective, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    state: str = "ACTIVE"
    latest_version: int = 0
    revision: int = 1
    created_by: str = ""
    create_time: int = 0
    update_time: int = 0

    @property
    def resource(self) -> str:
        return f"models/{self.name}"

    @property
    def primary_metric(self) -> str:
        if self.policy.primary_metric:
            return self.policy.primary_metric
        return self.objectives[0].metric if self.objectives else ""


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    dtype: str
    kind: str
    required: bool


@dataclass
class VersionRecord:
    model: str
    version: int
    flavor: str
    sha256: str
    artifact_size: int = 0
    artifact_format: str = ""
    artifact_time: int = 0
    status: str = Status.PENDING
    status_message: str = ""
    author: str = ""
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    training_metrics: dict[str, float] = field(default_factory=dict)
    cv_metrics: dict[str, float] = field(default_factory=dict)
    inputs: tuple[FeatureSpec, ...] = ()
    class_labels: tuple[str, ...] = ()
    code_revision: str = ""
    dataset_sha256: str = ""
    model_card: str = ""
    # What the registry stores and returns without reading: the version as registered
    # (lineage, metrics, signature, …) and its reference profile, in their wire encoding.
    message: bytes = b""
    profile: bytes = b""
    aliases: tuple[str, ...] = ()
    revision: int = 1
    request_id: str = ""
    create_time: int = 0
    update_time: int = 0
    id: int | None = None

    @property
    def resource(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


@dataclass(frozen=True)
class AliasRecord:
    model: str
    alias: str
    version: int
    previous_version: int = 0
    protected: bool = False
    updated_by: str = ""
    reason: str = ""
    update_time: int = 0

    @property
    def resource(self) -> str:
        return f"models/{self.model}/aliases/{self.alias}"


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    kind: str  # SET, ROLLBACK, DELETE
    from_version: int
    to_version: int
    move_time: int
    actor: str
    reason: str
    sequence: int


@dataclass(frozen=True)
class ApprovalRecord:
    id: int
    model: str
    version: int
    alias: str
    decision: str  # APPROVED, REJECTED
    comment: str
    approver: str
    create_time: int

    @property
    def resource(self) -> str:
        return f"models/{self.model}/versions/{self.version}/approvals/{self.id}"


@dataclass(frozen=True)
class Route:
    target: str  # models/{m}/versions/{v} or models/{m}/aliases/{a}
    weight: int
    variant: str
    canary: bool = False
    resolved_version: int = 0


@dataclass(frozen=True)
class Shadow:
    target: str
    variant: str
    resolved_version: int = 0


@dataclass
class DeploymentRecord:
    name: str
    model: str
    description: str = ""
    routes: tuple[Route, ...] = ()
    shadows: tuple[Shadow, ...] = ()
    sticky_key_parameter: str = ""
    guard_alert_rules: tuple[str, ...] = ()
    revision: int = 1
    updated_by: str = ""
    create_time: int = 0
    update_time: int = 0

    @property
    def resource(self) -> str:
        return f"deployments/{self.name}"


@dataclass(frozen=True)
class ArtifactRecord:
    sha256: str
    size_bytes: int
    format: str
    inspection: dict[str, Any]
    create_time: int


@dataclass(frozen=True)
class Caller:
    """Who makes a call; the identity the audit log records. ``authenticated``: proven
    by a bearer token, so ``roles`` and ``team`` are enforced (ownership.py)."""

    identity: str
    roles: tuple[str, ...] = ()
    trace_id: str = ""
    team: str = ""
    authenticated: bool = False


@dataclass(frozen=True)
class Change:
    """A mutation as the audit log and the event stream see it. ``payload`` and
    ``before`` are domain records; the servicer layer encodes them for the wire."""

    type: str  # ChangeType without prefix, e.g. ALIAS_SET
    resource: str
    model: str
    payload: Any
    before: Any = None
    changed_fields: tuple[str, ...] = ()
    reason: str = ""
