"""Alerting's domain records: rules, alerts, events (plain dataclasses, no protobuf).

Times are integer nanoseconds since the epoch (UTC), durations nanoseconds. Models and
deployments are their ids (``churn``), not resource names; alert rules are their ids,
alerts their numbers. Enums are their protobuf names without the prefix.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from services.common.comparators import TESTS, holds
from services.monitor.reference import CLASSIFIER_METRICS, REGRESSOR_METRICS

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DEFAULT_WINDOW_NS = HOUR_NS
DEFAULT_COOLDOWN_NS = 15 * MINUTE_NS
DEFAULT_MIN_SAMPLES = 100

SEVERITIES = ("INFO", "WARNING", "CRITICAL")  # rank = position + 1
DEFAULT_SEVERITY = "WARNING"
COMPARATORS = tuple(TESTS)
DRIFT_METHODS = ("", "PSI", "JENSEN_SHANNON", "WASSERSTEIN", "KS", "CHI_SQUARED")
QUALITY_MEASURES = ("MISSING_RATE", "OUT_OF_RANGE_RATE", "UNSEEN_CATEGORY_RATE", "REJECTED_RATE")
FAIRNESS_MEASURES = (
    "DEMOGRAPHIC_PARITY_DIFFERENCE",
    "DEMOGRAPHIC_PARITY_RATIO",
    "EQUALIZED_ODDS_DIFFERENCE",
)
PERFORMANCE_METRICS = (*CLASSIFIER_METRICS, *REGRESSOR_METRICS)


def severity_rank(severity: str) -> int:
    """1 for INFO … 3 for CRITICAL; 0 for "" (unspecified)."""
    return SEVERITIES.index(severity) + 1 if severity in SEVERITIES else 0


class RuleState(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    OK = "OK"
    FIRING = "FIRING"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
    DISABLED = "DISABLED"


class AlertState(StrEnum):
    FIRING = "FIRING"
    RESOLVED = "RESOLVED"


class ActionState(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class EventType(StrEnum):
    FIRED = "FIRED"
    RESOLVED = "RESOLVED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    ACTION_UPDATED = "ACTION_UPDATED"


@dataclass(frozen=True)
class DriftMetric:
    """A drift statistic; ``feature`` empty = share of drifted features."""

    feature: str = ""
    method: str = ""  # one of DRIFT_METHODS; "" = the default for the feature's kind


@dataclass(frozen=True)
class QualityMetric:
    measure: str  # one of QUALITY_MEASURES, or "" (refused)
    feature: str = ""


@dataclass(frozen=True)
class PerformanceMetric:
    metric: str
    class_label: str = ""


@dataclass(frozen=True)
class FairnessMetric:
    measure: str  # one of FAIRNESS_MEASURES, or "" (refused)
    feature: str = ""


Metric = DriftMetric | QualityMetric | PerformanceMetric | FairnessMetric


@dataclass(frozen=True)
class Condition:
    metric: Metric | None  # None: not set (refused)
    comparator: str  # one of COMPARATORS, or "" (refused)
    threshold: float

    def holds(self, value: float) -> bool:
        return holds(self.comparator, value, self.threshold)


@dataclass(frozen=True)
class RollbackCanary:
    """Roll back a deployment's canary (the registry's AbortCanary)."""

    deployment: str


@dataclass(frozen=True)
class RuleSpec:
    """What a user says about a rule. As read from a request ``window_ns``/``cooldown_ns``
    may be None (unset), ``min_samples`` 0 and ``severity`` ""; stored rules have every
    default filled in."""

    id: str
    model: str
    condition: Condition
    version: int = 0
    deployment: str = ""
    variant: str = ""
    description: str = ""
    window_ns: int | None = DEFAULT_WINDOW_NS
    min_samples: int = DEFAULT_MIN_SAMPLES
    cooldown_ns: int | None = DEFAULT_COOLDOWN_NS
    severity: str = DEFAULT_SEVERITY
    action: RollbackCanary | None = None
    disabled: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"alertRules/{self.id}"

    @property
    def window(self) -> int:
        return DEFAULT_WINDOW_NS if self.window_ns is None else self.window_ns

    @property
    def cooldown(self) -> int:
        return DEFAULT_COOLDOWN_NS if self.cooldown_ns is None else self.cooldown_ns


@dataclass(frozen=True)
class RuleStatus:
    state: RuleState = RuleState.UNSPECIFIED
    value: float | None = None
    sample_count: int = 0
    evaluate_time: int = 0
    firing_alert: int = 0  # number of the firing alert; 0 when none


@dataclass(frozen=True)
class Rule:
    spec: RuleSpec
    status: RuleStatus = RuleStatus()
    revision: int = 1
    create_time: int = 0
    update_time: int = 0
    created_by: str = ""
    updated_by: str = ""
    last_resolve_time: int = 0  # when its latest alert resolved (the cooldown's start)

    @property
    def etag(self) -> str:
        return str(self.revision)


class Exemplar(NamedTuple):
    prediction_id: str
    trace_id: str
    time_ns: int


@dataclass(frozen=True)
class Evaluation:
    """A rule's metric over its window, as the aggregates give it."""

    value: float | None  # None: no value (no rows, or not computable)
    sample_count: int  # rows (labelled rows for performance and fairness) in the window
    window_start_ns: int
    window_end_ns: int
    exemplars: Sequence[tuple[str, str, int]] = ()

    @property
    def usable_value(self) -> float | None:
        return None if self.value is None or not math.isfinite(self.value) else self.value


@dataclass(frozen=True)
class ActionResult:
    action: RollbackCanary
    state: ActionState = ActionState.PENDING
    message: str = ""
    update_time: int = 0
    deployment_revision: int = 0
    attempts: int = 0  # calls made so far (not on the wire)
    next_attempt: int = 0  # earliest time of the next call, ns (not on the wire)


@dataclass(frozen=True)
class AlertRecord:
    id: int
    rule: str  # rule id
    condition: Condition
    severity: str
    model: str
    version: int
    deployment: str
    variant: str
    state: AlertState
    value: float
    sample_count: int
    window_start: int
    window_end: int
    fire_time: int
    message: str
    resolve_value: float | None = None
    resolve_time: int = 0
    acknowledged: bool = False
    acknowledged_by: str = ""
    acknowledge_time: int = 0
    acknowledge_note: str = ""
    actions: tuple[ActionResult, ...] = ()
    exemplars: tuple[Exemplar, ...] = ()
    last_event_sequence: int = 0

    @property
    def name(self) -> str:
        return f"alerts/{self.id}"


@dataclass(frozen=True)
class AlertEvent:
    sequence: int
    type: EventType
    alert: AlertRecord
    time: int


@dataclass(frozen=True)
class AlertFilter:
    """ListAlerts' filters (combined with AND); empty / 0 / None means any."""

    model: str = ""
    rule: str = ""
    state: AlertState | None = None
    min_severity: str = ""
    start_time: int | None = None
    end_time: int | None = None


@dataclass(frozen=True)
class CanaryOutcome:
    """What the registry's AbortCanary did."""

    changed: bool  # whether any weight moved
    revision: int  # the deployment's revision after the call
    message: str  # in words, e.g. "deployment 'churn': route 'canary' 10 -> 0, …"


class Canaries(Protocol):
    """The registry's deployments, as alert actions need them (``actions.py``)."""

    async def abort(self, deployment: str, rule: str) -> CanaryOutcome:
        """Roll ``deployment``'s canary back because ``rule`` (a resource name) fired."""
        ...

    async def check(self, deployment: str) -> None:
        """NotFound when ``deployment`` does not exist; Unavailable when unreachable."""
        ...


# The model-dependent parts, implemented from the aggregates by the monitor's core:
# CheckRule raises a DomainError for a condition that does not fit the model (unknown
# model: NotFound; unknown feature, metric of another task: InvalidArgument naming
# the field); Evaluate computes the rule's metric over the window ending at ``end_ns``.
CheckRule = Callable[[RuleSpec], Awaitable[None]]
Evaluate = Callable[[RuleSpec, int], Awaitable[Evaluation]]
# Deployments (ids) whose guard_alert_rules name the rule (by resource name).
GuardingDeployments = Callable[[str], Sequence[str]]


def no_guards(rule_name: str) -> list[str]:
    """The default hook until the monitor follows the registry's deployments."""
    return []
