"""Carrying out an alert's actions (rolling canaries back), retried with backoff while
the alert fires.

Each call is claimed first (a lease written on the alert's locked row), so replicas do
not call the registry for one action at the same time; an action whose replica died
mid-call is picked up again by any replica's sweep once the lease expires.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from services.common.errors import DomainError
from services.monitor.alert_records import (
    SECOND_NS,
    ActionResult,
    ActionState,
    AlertState,
    Canaries,
    EventType,
)
from services.monitor.alert_store import AlertCore, AlertStore

log = logging.getLogger(__name__)
LEASE_NS = 60 * SECOND_NS
FIRST_BACKOFF_NS = SECOND_NS
MAX_BACKOFF_NS = 300 * SECOND_NS
DONE = (ActionState.SUCCEEDED, ActionState.SKIPPED)
Spawn = Callable[[Coroutine[Any, Any, None]], bool]  # False: not started (shutting down)


def backoff(attempts: int) -> int:
    """1 s after the first failure, doubling, at most 5 minutes."""
    return int(min(FIRST_BACKOFF_NS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_NS))


def _claim(
    store: AlertStore, alert_id: int, now: int
) -> tuple[str, list[tuple[int, ActionResult]]]:
    """The actions of a firing alert due at ``now``, leased to this caller."""
    alert = store.get_alert(alert_id, lock=True)
    if alert is None or alert.state != AlertState.FIRING:
        return "", []
    due = [
        (i, r) for i, r in enumerate(alert.actions) if r.state not in DONE and r.next_attempt <= now
    ]
    if due:
        leased = list(alert.actions)
        for i, r in due:
            leased[i] = dataclasses.replace(r, next_attempt=now + LEASE_NS)
        store.save_alert(dataclasses.replace(alert, actions=tuple(leased)))
    return f"alertRules/{alert.rule}", due


def _record(alert_id: int, index: int, result: ActionResult, now: int, store: AlertStore) -> None:
    alert = store.get_alert(alert_id, lock=True)
    if alert is None or alert.actions[index].state in DONE:
        return
    before = alert.actions[index]
    actions = list(alert.actions)
    actions[index] = result
    alert = dataclasses.replace(alert, actions=tuple(actions))
    if (result.state, result.message) != (before.state, before.message):
        store.record_event(EventType.ACTION_UPDATED, alert, now)
    else:
        store.save_alert(alert)


class ActionRunner:
    def __init__(self, core: AlertCore, canaries: Canaries | None, spawn: Spawn) -> None:
        self.core = core
        self.canaries = canaries
        self.spawn = spawn
        self._running: set[int] = set()

    def start(self, alert_id: int) -> None:
        """Carry out the alert's due actions in the background (once per alert here)."""
        if alert_id not in self._running and self.spawn(self._run(alert_id)):
            self._running.add(alert_id)

    async def sweep(self) -> None:
        """Start the due actions of every firing alert (after a restart, a lost lease)."""
        now = self.core.clock()
        for alert_id in await self.core.read(lambda store: store.alerts_with_due_actions(now)):
            self.start(alert_id)

    async def _run(self, alert_id: int) -> None:
        try:
            while (delay := await self.run_once(alert_id)) is not None:
                await asyncio.sleep(delay)
        finally:
            self._running.discard(alert_id)

    async def run_once(self, alert_id: int) -> float | None:
        """Call the registry for each due action and record what came of it; returns
        seconds until a failed one is due again, None when nothing is left to retry."""
        now = self.core.clock()
        rule, due = await self.core.write(lambda store: _claim(store, alert_id, now))
        retry: list[int] = []
        for index, action in due:
            result = await self._call(rule, action)
            done = self.core.clock()
            result = dataclasses.replace(result, update_time=done)
            await self.core.write(functools.partial(_record, alert_id, index, result, done))
            if result.state == ActionState.FAILED:
                retry.append(result.next_attempt - done)
        return max(min(retry), 0) / SECOND_NS if retry else None

    async def _call(self, rule: str, action: ActionResult) -> ActionResult:
        attempts = action.attempts + 1
        try:
            if self.canaries is None:
                raise DomainError("the monitor has no registry to roll the canary back with")
            outcome = await self.canaries.abort(action.action.deployment, rule)
        except DomainError as error:
            message = error.message
        except Exception:  # noqa: BLE001 - an action never takes the monitor down
            log.exception("alert action on %s failed", action.action.deployment)
            message = "internal error calling the registry; the monitor logged the details"
        else:
            state = ActionState.SUCCEEDED if outcome.changed else ActionState.SKIPPED
            return dataclasses.replace(
                action,
                state=state,
                message=outcome.message,
                deployment_revision=outcome.revision if outcome.changed else 0,
                attempts=attempts,
            )
        return dataclasses.replace(
            action,
            state=ActionState.FAILED,
            message=message,
            attempts=attempts,
            next_attempt=self.core.clock() + backoff(attempts),
        )
