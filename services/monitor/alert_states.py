"""The evaluation state machine of alerts.proto, as functions of one transaction.

With at least ``min_samples`` rows, a condition that holds fires an alert (unless one is
already firing, or the rule resolved less than ``cooldown`` ago); a firing alert
resolves at the first evaluation with enough rows where the condition no longer holds.
With fewer rows nothing changes. Every function here runs with the rule's row locked,
so two replicas applying evaluations of one rule take turns and never fire it twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from services.monitor import alert_text
from services.monitor.alert_records import (
    ActionResult,
    ActionState,
    AlertRecord,
    AlertState,
    Evaluation,
    EventType,
    Exemplar,
    RollbackCanary,
    Rule,
    RuleState,
    RuleStatus,
)
from services.monitor.alert_store import AlertStore

MAX_EXEMPLARS = 10


def resolve(
    store: AlertStore, alert_id: int, now: int, value: float | None, why: str
) -> AlertRecord | None:
    """Resolve a firing alert (recording the event); None when it is not firing."""
    alert = store.get_alert(alert_id, lock=True)
    if alert is None or alert.state != AlertState.FIRING:
        return None
    alert = dataclasses.replace(
        alert,
        state=AlertState.RESOLVED,
        resolve_value=value,
        resolve_time=now,
        message=f"{alert.message}; {why}",
    )
    return store.record_event(EventType.RESOLVED, alert, now)


def _actions(rule: Rule, guards: Sequence[str], now: int) -> tuple[ActionResult, ...]:
    """The rule's own rollback first, then one per guarding deployment (no repeats)."""
    deployments = [rule.spec.action.deployment] if rule.spec.action else []
    deployments += [d for d in guards if d not in deployments]
    return tuple(
        ActionResult(RollbackCanary(d), ActionState.PENDING, "waiting for the registry", now)
        for d in deployments
    )


def fire(
    store: AlertStore, rule: Rule, e: Evaluation, value: float, now: int, guards: Sequence[str]
) -> AlertRecord:
    spec = rule.spec
    alert = AlertRecord(
        id=0,
        rule=spec.id,
        condition=spec.condition,
        severity=spec.severity,
        model=spec.model,
        version=spec.version,
        deployment=spec.deployment,
        variant=spec.variant,
        state=AlertState.FIRING,
        value=value,
        sample_count=e.sample_count,
        window_start=e.window_start_ns,
        window_end=e.window_end_ns,
        fire_time=now,
        message=alert_text.fired(spec, value, e.sample_count),
        actions=_actions(rule, guards, now),
        exemplars=tuple(Exemplar(*x) for x in e.exemplars[:MAX_EXEMPLARS]),
    )
    return store.record_event(EventType.FIRED, store.insert_alert(alert), now)


def _status(
    rule: Rule, state: RuleState, value: float | None, e: Evaluation, now: int, firing: int = 0
) -> Rule:
    return dataclasses.replace(rule, status=RuleStatus(state, value, e.sample_count, now, firing))


def transition(
    store: AlertStore,
    rule_id: str,
    revision: int,
    e: Evaluation,
    now: int,
    guards: Sequence[str] = (),
) -> AlertRecord | None:
    """Apply evaluation ``e`` of the rule (as it was at ``revision``) made at ``now``;
    returns the alert it fired, if any. Nothing happens when the rule changed or was
    disabled since, or a later evaluation was applied already."""
    rule = store.get_rule(rule_id, lock=True)
    if rule is None or rule.revision != revision or rule.spec.disabled:
        return None
    if rule.status.evaluate_time > now:
        return None
    spec, value, firing = rule.spec, e.usable_value, rule.status.firing_alert
    fired = None
    if value is None or e.sample_count < spec.min_samples:
        state = RuleState.FIRING if firing else RuleState.INSUFFICIENT_DATA
        rule = _status(rule, state, None, e, now, firing)
    elif spec.condition.holds(value):
        cooling = rule.last_resolve_time and now - rule.last_resolve_time < spec.cooldown
        if not firing and not cooling:
            fired = fire(store, rule, e, value, now, guards)
            firing = fired.id
        state = RuleState.FIRING if firing else RuleState.OK
        rule = _status(rule, state, value, e, now, firing)
    else:
        if firing:
            why = alert_text.resolved(spec, value, e.sample_count)
            if resolve(store, firing, now, value, why) is not None:
                rule = dataclasses.replace(rule, last_resolve_time=now)
        rule = _status(rule, RuleState.OK, value, e, now)
    store.save_rule(rule)
    return fired


def stop_firing(store: AlertStore, rule: Rule, now: int, why: str) -> Rule:
    """Resolve the rule's firing alert, if any (the rule is being disabled or deleted)."""
    if not rule.status.firing_alert:
        return rule
    resolve(store, rule.status.firing_alert, now, None, why)
    status = dataclasses.replace(rule.status, firing_alert=0, state=RuleState.OK)
    return dataclasses.replace(rule, status=status, last_resolve_time=now)
