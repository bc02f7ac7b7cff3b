"""Use cases on alert rules and alerts: create, read, list, update, delete, acknowledge.

Rules carry an etag (their revision, bumped by every change a user makes, never by an
evaluation). Lists page by key: rules by id, alerts newest first by (fire time, number).
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence

from sqlalchemy.exc import IntegrityError

from services.common.db import Database
from services.common.errors import AlreadyExists, Conflict, NotFound
from services.common.events import SequenceHub
from services.common.paging import Cursor, check_cursor, page_size, query_digest
from services.monitor.alert_actions import ActionRunner
from services.monitor.alert_evaluation import AlertScheduler
from services.monitor.alert_records import (
    SECOND_NS,
    AlertEvent,
    AlertFilter,
    AlertRecord,
    Canaries,
    CheckRule,
    Evaluate,
    EventType,
    GuardingDeployments,
    Rule,
    RuleSpec,
    RuleState,
    RuleStatus,
    no_guards,
)
from services.monitor.alert_states import stop_firing
from services.monitor.alert_store import AlertCore, AlertStore
from services.monitor.alert_validation import invalid, normalised, patched
from services.monitor.alert_watch import watch
from services.monitor.settings import MonitorSettings

MAX_NOTE = 1000
UPDATE_ATTEMPTS = 3
DAY_NS = 86_400 * SECOND_NS


def check_etag(rule: Rule, etag: str) -> None:
    if etag and etag != rule.etag:
        raise Conflict(
            f"{rule.spec.name}: etag {etag!r} is stale, the current one is {rule.etag!r}"
        )


def require_rule(store: AlertStore, rule_id: str, *, lock: bool = False) -> Rule:
    rule = store.get_rule(rule_id, lock=lock)
    if rule is None:
        raise NotFound(f"alert rule 'alertRules/{rule_id}' not found")
    return rule


def require_alert(store: AlertStore, number: int, *, lock: bool = False) -> AlertRecord:
    alert = store.get_alert(number, lock=lock)
    if alert is None:
        raise NotFound(f"alert 'alerts/{number}' not found")
    return alert


def _with_spec(before: Rule, spec: RuleSpec, now: int, caller: str) -> Rule:
    """``before`` changed to ``spec``: disabling shows DISABLED, enabling starts afresh."""
    status = before.status
    if spec.disabled:
        status = RuleStatus(RuleState.DISABLED)
    elif before.spec.disabled:
        status = RuleStatus()
    return dataclasses.replace(
        before,
        spec=spec,
        status=status,
        revision=before.revision + 1,
        update_time=now,
        updated_by=caller,
    )


def _watched(spec: RuleSpec) -> tuple[object, ...]:
    """What the model-dependent checks look at."""
    return (spec.model, spec.version, spec.deployment, spec.variant, spec.condition)


class AlertRules:
    def __init__(
        self, core: AlertCore, bucket_ns: int, check_rule: CheckRule, canaries: Canaries | None
    ) -> None:
        self.core = core
        self.bucket_ns = bucket_ns
        self.check_rule = check_rule
        self.canaries = canaries

    async def _checked(self, spec: RuleSpec, before: RuleSpec | None = None) -> RuleSpec:
        """``spec`` normalised and checked against the model and the registry; what an
        update leaves as it was is not checked again (so a rule whose model is gone can
        still be disabled)."""
        spec = normalised(spec, self.bucket_ns)
        if before is None or _watched(spec) != _watched(before):
            await self.check_rule(spec)
        moved = before is None or spec.action != before.action
        if spec.action is not None and self.canaries is not None and moved:
            await self.canaries.check(spec.action.deployment)
        return spec

    # rules --------------------------------------------------------------------------
    async def create(
        self, spec: RuleSpec, rule_id: str, caller: str, *, validate_only: bool = False
    ) -> Rule:
        spec = await self._checked(dataclasses.replace(spec, id=rule_id or _new_id()))
        now = self.core.clock()
        state = RuleState.DISABLED if spec.disabled else RuleState.UNSPECIFIED
        rule = Rule(spec, RuleStatus(state), 1, now, now, caller, caller)

        def work(store: AlertStore) -> Rule:
            if store.get_rule(spec.id) is not None:
                raise AlreadyExists(f"alert rule '{spec.name}' already exists")
            if not validate_only:
                store.insert_rule(rule)
            return rule

        try:
            return await (self.core.read(work) if validate_only else self.core.write(work))
        except IntegrityError:  # created by another replica between the check and the insert
            raise AlreadyExists(f"alert rule '{spec.name}' already exists") from None

    async def get(self, rule_id: str) -> Rule:
        return await self.core.read(lambda store: require_rule(store, rule_id))

    async def list_page(
        self, model: str, deployment: str, size: int, cursor: Cursor | None
    ) -> tuple[list[Rule], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("alert_rules", model, deployment)
        after = check_cursor(cursor, digest)
        found = await self.core.read(
            lambda store: store.list_rules(
                model, deployment, after.last_key if after else "", limit + 1
            )
        )
        more = len(found) > limit
        found = found[:limit]
        return found, Cursor(found[-1].spec.id, 0, digest) if more else None

    async def update(
        self, rule_id: str, patch: RuleSpec, paths: Sequence[str], etag: str, caller: str
    ) -> Rule:
        """Apply the fields ``paths`` of ``patch``. The model-dependent checks run outside
        the transaction; if the rule changed meanwhile the update starts again (ABORTED
        instead when the caller sent an etag)."""
        for _ in range(UPDATE_ATTEMPTS):
            before = await self.get(rule_id)
            check_etag(before, etag)
            spec = await self._checked(patched(before.spec, patch, list(paths)), before.spec)
            updated = await self.core.write(functools.partial(self._save, before, spec, caller))
            if updated is not None:
                return updated
            if etag:
                raise Conflict(f"{before.spec.name}: changed while it was being updated")
        raise Conflict(f"alert rule 'alertRules/{rule_id}' is changing too often; try again")

    def _save(self, before: Rule, spec: RuleSpec, caller: str, store: AlertStore) -> Rule | None:
        current = require_rule(store, before.spec.id, lock=True)
        if current.revision != before.revision:
            return None
        now = self.core.clock()
        if spec.disabled:
            current = stop_firing(store, current, now, "resolved: rule disabled")
        after = _with_spec(current, spec, now, caller)
        store.save_rule(after)
        return after

    async def delete(self, rule_id: str, etag: str, caller: str) -> None:
        def work(store: AlertStore) -> None:
            rule = require_rule(store, rule_id, lock=True)
            check_etag(rule, etag)
            stop_firing(store, rule, self.core.clock(), f"resolved: rule deleted by {caller}")
            store.delete_rule(rule_id)

        await self.core.write(work)

    # alerts -------------------------------------------------------------------------
    async def get_alert(self, number: int) -> AlertRecord:
        return await self.core.read(lambda store: require_alert(store, number))

    async def list_alerts(
        self, where: AlertFilter, size: int, cursor: Cursor | None
    ) -> tuple[list[AlertRecord], Cursor | None]:
        limit = page_size(size)
        digest = query_digest("alerts", where)
        after = check_cursor(cursor, digest)
        key = (int(after.last_key), after.last_id) if after else None
        found = await self.core.read(lambda store: store.list_alerts(where, key, limit + 1))
        more = len(found) > limit
        found = found[:limit]
        return found, Cursor(str(found[-1].fire_time), found[-1].id, digest) if more else None

    async def acknowledge(self, number: int, note: str, caller: str) -> AlertRecord:
        """Record who acknowledged the alert; the first acknowledgement is kept."""
        if len(note) > MAX_NOTE:
            raise invalid("note", f"expected at most {MAX_NOTE} characters, got {len(note)}")

        def work(store: AlertStore) -> AlertRecord:
            alert = require_alert(store, number, lock=True)
            if alert.acknowledged:
                return alert
            now = self.core.clock()
            acknowledged = dataclasses.replace(
                alert,
                acknowledged=True,
                acknowledged_by=caller,
                acknowledge_time=now,
                acknowledge_note=note,
            )
            return store.record_event(EventType.ACKNOWLEDGED, acknowledged, now)

        return await self.core.write(work)


def _new_id() -> str:
    return f"rule-{secrets.token_hex(5)}"


class Alerting:
    """Alerting as the monitor's service wires it in: rule and alert use cases
    (``rules``), evaluation (``notify``, a timer between ``start`` and ``stop``), actions
    and the event stream (``watch``)."""

    def __init__(
        self,
        db: Database,
        settings: MonitorSettings,
        *,
        check_rule: CheckRule,
        evaluate: Evaluate,
        canaries: Canaries | None = None,
        guarding_deployments: GuardingDeployments = no_guards,
        hub: SequenceHub | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.history_ns = settings.alert_history_days * DAY_NS
        self.core = AlertCore(db, hub or SequenceHub(settings.event_poll_s), clock)
        self.rules = AlertRules(self.core, settings.bucket_s * SECOND_NS, check_rule, canaries)
        self._guards = guarding_deployments
        self.scheduler = AlertScheduler(
            self.core,
            evaluate,
            self.guarding_deployments,
            interval_s=settings.alert_eval_interval_s,
            min_gap_s=settings.alert_min_eval_gap_s,
            history_ns=self.history_ns,
        )
        self.actions = ActionRunner(self.core, canaries, self.scheduler.spawn)
        self.scheduler.runner = self.actions

    def guarding_deployments(self, rule_name: str) -> list[str]:
        """Deployments (ids) whose ``guard_alert_rules`` name ``rule_name``; each gets a
        canary rollback when the rule fires. Empty until the monitor follows the
        registry's deployments (pass ``guarding_deployments`` to fill it)."""
        return list(self._guards(rule_name))

    def notify(self, model: str) -> None:
        """Rows of ``model`` were committed: evaluate its rules soon (never blocks)."""
        self.scheduler.notify(model)

    async def evaluate_rule(self, rule_id: str) -> AlertRecord | None:
        """Evaluate one rule now; returns the alert it fired, if any."""
        return await self.scheduler.evaluate_rule(rule_id)

    async def start(self) -> None:
        await self.scheduler.start()

    async def stop(self) -> None:
        """Stop evaluating and wait for database work in flight (call it after the
        server has stopped taking calls, before the database is closed)."""
        await self.scheduler.stop()

    def watch(self, after: int | None, model: str, min_severity: str) -> AsyncIterator[AlertEvent]:
        return watch(self.core, after, model, min_severity, self.history_ns)
