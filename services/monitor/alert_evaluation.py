"""When rules are evaluated: after data arrives for their model (``notify``, at most
once per ``min_gap_s`` per rule, coalesced, never blocking the caller) and on a timer
(every enabled rule every ``interval_s``). Each round of the timer also retries due
actions and forgets events older than the retained history.

Several replicas may evaluate one rule at once: each applies its evaluation in a
transaction that locks the rule's row (``alert_states.transition``), so a rule never
fires twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from services.common.errors import DomainError
from services.monitor.alert_actions import ActionRunner
from services.monitor.alert_records import AlertRecord, Evaluate, GuardingDeployments
from services.monitor.alert_states import transition
from services.monitor.alert_store import AlertCore

log = logging.getLogger(__name__)
CONCURRENT_EVALUATIONS = 8
Work = Callable[[], Coroutine[Any, Any, None]]


class AlertScheduler:
    def __init__(
        self,
        core: AlertCore,
        evaluate: Evaluate,
        guards: GuardingDeployments,
        *,
        interval_s: float,
        min_gap_s: float,
        history_ns: int,
    ) -> None:
        self.core = core
        self.evaluate = evaluate
        self.guards = guards
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self.history_ns = history_ns
        self.runner: ActionRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: dict[str, float] = {}  # rule or model -> monotonic start of its last run
        self._queued: set[str] = set()
        self._closed = True
        self._slots = asyncio.Semaphore(CONCURRENT_EVALUATIONS)

    # tasks --------------------------------------------------------------------------
    def spawn(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` as a task of this scheduler; False (and ``work`` dropped) when
        the scheduler is not running."""
        if self._closed:
            work.close()
            return False
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("alerting task failed", exc_info=task.exception())

    async def start(self) -> None:
        self._closed = False
        self.spawn(self._loop())

    async def stop(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.core.drain()

    # data-driven evaluation ---------------------------------------------------------
    def notify(self, model: str) -> None:
        """Data of ``model`` was committed: evaluate its enabled rules soon. Returns at once."""
        self._request(f"models/{model}", lambda: self._evaluate_model(model))

    def _request(self, key: str, work: Work) -> None:
        """Run ``work`` for ``key`` once ``min_gap_s`` has passed since its last run; while
        one is waiting, further requests for ``key`` are folded into it."""
        if key in self._queued or self._closed:
            return
        self._queued.add(key)
        wait = self._last.get(key, -self.min_gap_s) + self.min_gap_s - time.monotonic()
        self.spawn(self._after(key, max(wait, 0.0), work))

    async def _after(self, key: str, wait: float, work: Work) -> None:
        try:
            await asyncio.sleep(wait)
        finally:
            self._queued.discard(key)
        self._last[key] = time.monotonic()
        await work()

    async def _evaluate_model(self, model: str) -> None:
        for rule_id in await self.core.read(lambda store: store.enabled_rule_ids(model)):
            self.request_rule(rule_id)

    def request_rule(self, rule_id: str) -> None:
        self._request(rule_id, lambda: self._evaluate_quietly(rule_id))

    async def _evaluate_quietly(self, rule_id: str) -> None:
        try:
            async with self._slots:
                await self.evaluate_rule(rule_id)
        except DomainError as error:  # e.g. the model is gone from the registry
            log.warning("alert rule %s not evaluated: %s", rule_id, error.message)

    async def evaluate_rule(self, rule_id: str) -> AlertRecord | None:
        """Evaluate one rule now and apply the result; returns the alert it fired."""
        rule = await self.core.read(lambda store: store.get_rule(rule_id))
        if rule is None or rule.spec.disabled:
            return None
        now = self.core.clock()
        evaluation = await self.evaluate(rule.spec, now)
        guards = list(self.guards(rule.spec.name))
        fired = await self.core.write(
            lambda store: transition(store, rule_id, rule.revision, evaluation, now, guards)
        )
        if fired is not None and fired.actions and self.runner is not None:
            self.runner.start(fired.id)
        return fired

    # the timer ----------------------------------------------------------------------
    async def tick(self) -> None:
        """One round: forget old events, evaluate every enabled rule, retry due actions."""
        cutoff = self.core.clock() - self.history_ns
        await self.core.write(lambda store: store.prune_events(cutoff))
        for rule_id in await self.core.read(lambda store: store.enabled_rule_ids()):
            self.request_rule(rule_id)
        if self.runner is not None:
            await self.runner.sweep()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("alert evaluation round failed")
            await asyncio.sleep(self.interval_s)
