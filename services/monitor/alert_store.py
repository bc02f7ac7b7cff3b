"""Persistence of alerting behind one small repository class over a connection.

One ``AlertStore`` lives for one unit of work (one transaction). A rule's row is locked
(``FOR UPDATE``; on SQLite the writer holds the database from ``BEGIN IMMEDIATE``) by
every transaction that changes its state, so replicas never fire one rule twice. The
event sequence comes from a counter row bumped inside the writing transaction, so
sequences commit in order and never leave a gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Row

from services.common.db import Database
from services.common.events import SequenceHub
from services.monitor.alert_docs import alert_doc, alert_from, spec_doc, spec_from
from services.monitor.alert_records import (
    AlertEvent,
    AlertFilter,
    AlertRecord,
    EventType,
    Rule,
    RuleState,
    RuleStatus,
    severity_rank,
)
from services.monitor.alert_tables import AlertCounterRow, AlertEventRow, AlertRow, AlertRuleRow

RULES = AlertRuleRow.__table__  # type: ignore[attr-defined]
ALERTS = AlertRow.__table__  # type: ignore[attr-defined]
EVENTS = AlertEventRow.__table__  # type: ignore[attr-defined]
COUNTERS = AlertCounterRow.__table__  # type: ignore[attr-defined]
EVENT_COUNTER = "alert_events"
T = TypeVar("T")
_BUMP = (
    update(COUNTERS)
    .where(COUNTERS.c.name == EVENT_COUNTER)
    .values(value=COUNTERS.c.value + 1)
    .returning(COUNTERS.c.value)
)


def _rule(row: Row[Any]) -> Rule:
    spec = spec_from(row.spec, row.id, row.model, row.deployment, row.disabled)
    status = RuleStatus(
        RuleState(row.state), row.value, row.sample_count, row.evaluate_time, row.firing_alert
    )
    return Rule(
        spec,
        status,
        row.revision,
        row.create_time,
        row.update_time,
        row.created_by,
        row.updated_by,
        row.last_resolve_time,
    )


def _rule_values(r: Rule) -> dict[str, Any]:
    return {
        "model": r.spec.model,
        "deployment": r.spec.deployment,
        "action_deployment": r.spec.action.deployment if r.spec.action else "",
        "disabled": r.spec.disabled,
        "spec": spec_doc(r.spec),
        "revision": r.revision,
        "state": r.status.state.value,
        "value": r.status.value,
        "sample_count": r.status.sample_count,
        "evaluate_time": r.status.evaluate_time,
        "firing_alert": r.status.firing_alert,
        "last_resolve_time": r.last_resolve_time,
        "created_by": r.created_by,
        "updated_by": r.updated_by,
        "create_time": r.create_time,
        "update_time": r.update_time,
    }


def _alert_values(a: AlertRecord) -> dict[str, Any]:
    return {
        "rule": a.rule,
        "model": a.model,
        "severity": severity_rank(a.severity),
        "state": a.state.value,
        "fire_time": a.fire_time,
        "resolve_time": a.resolve_time,
        "doc": alert_doc(a),
        "last_event_sequence": a.last_event_sequence,
    }


def _event(row: Row[Any]) -> AlertEvent:
    return AlertEvent(row.sequence, EventType(row.type), alert_from(row.alert), row.time)


class AlertStore:
    """Alerting's rows, for one transaction on ``connection``."""

    def __init__(self, connection: Connection) -> None:
        self.c = connection
        self.last_sequence = 0  # the highest event sequence this unit of work recorded

    # rules --------------------------------------------------------------------------
    def get_rule(self, rule_id: str, *, lock: bool = False) -> Rule | None:
        query = select(RULES).where(RULES.c.id == rule_id)
        row = self.c.execute(query.with_for_update() if lock else query).first()
        return _rule(row) if row else None

    def insert_rule(self, rule: Rule) -> None:
        self.c.execute(insert(RULES).values(id=rule.spec.id, **_rule_values(rule)))

    def save_rule(self, rule: Rule) -> None:
        self.c.execute(update(RULES).where(RULES.c.id == rule.spec.id).values(**_rule_values(rule)))

    def delete_rule(self, rule_id: str) -> None:
        self.c.execute(delete(RULES).where(RULES.c.id == rule_id))

    def list_rules(self, model: str, deployment: str, after: str, limit: int) -> list[Rule]:
        query = select(RULES).where(RULES.c.id > after)
        if model:
            query = query.where(RULES.c.model == model)
        if deployment:
            query = query.where(
                or_(RULES.c.deployment == deployment, RULES.c.action_deployment == deployment)
            )
        return [_rule(row) for row in self.c.execute(query.order_by(RULES.c.id).limit(limit))]

    def enabled_rule_ids(self, model: str | None = None) -> list[str]:
        query = select(RULES.c.id).where(RULES.c.disabled.is_(False))
        if model is not None:
            query = query.where(RULES.c.model == model)
        return [row[0] for row in self.c.execute(query.order_by(RULES.c.id))]

    # alerts -------------------------------------------------------------------------
    def get_alert(self, alert_id: int, *, lock: bool = False) -> AlertRecord | None:
        query = select(ALERTS).where(ALERTS.c.id == alert_id)
        row = self.c.execute(query.with_for_update() if lock else query).first()
        return alert_from({**row.doc, "id": row.id}) if row else None

    def insert_alert(self, alert: AlertRecord) -> AlertRecord:
        values = _alert_values(alert)
        row = self.c.execute(insert(ALERTS).values(**values).returning(ALERTS.c.id)).one()
        return dataclasses.replace(alert, id=int(row[0]))  # rows read the id from its column

    def save_alert(self, alert: AlertRecord) -> None:
        self.c.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(**_alert_values(alert)))

    def list_alerts(
        self, where: AlertFilter, after: tuple[int, int] | None, limit: int
    ) -> list[AlertRecord]:
        query = select(ALERTS)
        conditions = [
            (where.model, ALERTS.c.model == where.model),
            (where.rule, ALERTS.c.rule == where.rule),
            (where.state, ALERTS.c.state == (where.state.value if where.state else "")),
            (where.min_severity, ALERTS.c.severity >= severity_rank(where.min_severity)),
            (where.start_time is not None, ALERTS.c.fire_time >= (where.start_time or 0)),
            (where.end_time is not None, ALERTS.c.fire_time < (where.end_time or 0)),
        ]
        query = query.where(*[clause for wanted, clause in conditions if wanted])
        if after is not None:
            time, number = after
            query = query.where(
                or_(
                    ALERTS.c.fire_time < time,
                    and_(ALERTS.c.fire_time == time, ALERTS.c.id < number),
                )
            )
        query = query.order_by(ALERTS.c.fire_time.desc(), ALERTS.c.id.desc()).limit(limit)
        return [alert_from({**row.doc, "id": row.id}) for row in self.c.execute(query)]

    def alerts_with_due_actions(self, now: int) -> list[int]:
        """Firing alerts that have an action to (re)try at ``now``."""
        rows = self.c.execute(select(ALERTS.c.id, ALERTS.c.doc).where(ALERTS.c.state == "FIRING"))
        return [
            row.id
            for row in rows
            if any(
                r["state"] in ("PENDING", "FAILED") and r["next_attempt"] <= now
                for r in row.doc["actions"]
            )
        ]

    # events -------------------------------------------------------------------------
    def record_event(self, type: EventType, alert: AlertRecord, now: int) -> AlertRecord:
        """Append an event about ``alert`` (saving the alert with its new sequence)."""
        row = self.c.execute(_BUMP).first()
        if row is None:  # a schema created without the migration's counter row
            self.c.execute(insert(COUNTERS).values(name=EVENT_COUNTER, value=1))
        sequence = int(row[0]) if row is not None else 1
        alert = dataclasses.replace(alert, last_event_sequence=sequence)
        self.save_alert(alert)
        self.c.execute(
            insert(EVENTS).values(
                sequence=sequence,
                type=type.value,
                alert_id=alert.id,
                model=alert.model,
                severity=severity_rank(alert.severity),
                time=now,
                alert=alert_doc(alert),
            )
        )
        self.last_sequence = sequence
        return alert

    def event_bounds(self, cutoff: int) -> tuple[int, int]:
        """(first sequence retained at ``cutoff``, latest sequence); the first is latest + 1
        when no event is retained."""
        latest = self.c.execute(
            select(COUNTERS.c.value).where(COUNTERS.c.name == EVENT_COUNTER)
        ).scalar()
        first = self.c.execute(
            select(func.min(EVENTS.c.sequence)).where(EVENTS.c.time >= cutoff)
        ).scalar()
        latest = int(latest or 0)
        return (int(first) if first is not None else latest + 1), latest

    def events_after(self, after: int, model: str, min_rank: int, limit: int) -> list[AlertEvent]:
        query = select(EVENTS).where(EVENTS.c.sequence > after)
        if model:
            query = query.where(EVENTS.c.model == model)
        if min_rank:
            query = query.where(EVENTS.c.severity >= min_rank)
        rows = self.c.execute(query.order_by(EVENTS.c.sequence).limit(limit))
        return [_event(row) for row in rows]

    def prune_events(self, before: int) -> int:
        return int(self.c.execute(delete(EVENTS).where(EVENTS.c.time < before)).rowcount)


class AlertCore:
    """Alerting's shared dependencies: the database, the event hub and the clock.

    Database work runs in worker threads (PostgreSQL); a caller that is cancelled (a
    client gone, the service stopping) does not stop its thread, so every unit of work
    is tracked and ``drain`` waits for them before the database is closed."""

    def __init__(self, db: Database, hub: SequenceHub, clock: Callable[[], int]) -> None:
        self.db = db
        self.hub = hub
        self.clock = clock
        self._inflight: set[asyncio.Future[Any]] = set()

    async def _tracked(self, work: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(work)
        self._inflight.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._inflight.discard)
        return await asyncio.shield(task)

    async def drain(self) -> None:
        """Wait until no unit of work is running."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def write(self, work: Callable[[AlertStore], T]) -> T:
        """Run ``work`` in one write transaction, then wake event subscribers."""

        def unit(connection: Connection) -> tuple[T, int]:
            store = AlertStore(connection)
            return work(store), store.last_sequence

        result, latest = await self._tracked(self.db.write(unit))
        if latest:
            await self.hub.committed(latest)
        return result

    async def read(self, work: Callable[[AlertStore], T]) -> T:
        return await self._tracked(self.db.read(lambda connection: work(AlertStore(connection))))


def _settled(task: asyncio.Future[Any]) -> None:
    """Mark the outcome of a unit whose caller went away as seen (its caller, if still
    there, gets it through the shield)."""
    if not task.cancelled():
        task.exception()
