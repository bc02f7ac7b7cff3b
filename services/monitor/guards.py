"""Which deployments each alert rule guards: the registry's deployments list rules in
``guard_alert_rules``; when such a rule fires, the monitor rolls the deployment's canary
back as if the rule had a ``rollback_canary`` action. The map is read from the registry
on start and refreshed every ``interval_s``; while the registry is unreachable the last
map stays in use."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from keel.registry.v1 import registry_pb2 as rpb
from keel.registry.v1 import registry_pb2_grpc as rpb_grpc

RULES = "alertRules/"
DEPLOYMENTS = "deployments/"
log = logging.getLogger(__name__)


class DeploymentGuards:
    def __init__(
        self, registry: rpb_grpc.RegistryServiceAsyncStub, interval_s: float = 5.0
    ) -> None:
        self._registry = registry
        self._interval_s = interval_s
        self._by_rule: dict[str, list[str]] = {}
        self._task: asyncio.Task[None] | None = None

    def __call__(self, rule_name: str) -> list[str]:
        """Deployment ids whose ``guard_alert_rules`` name ``rule_name``."""
        return list(self._by_rule.get(rule_name.removeprefix(RULES), []))

    async def refresh(self) -> None:
        by_rule: dict[str, list[str]] = {}
        token = ""
        while True:
            page = await self._registry.ListDeployments(
                rpb.ListDeploymentsRequest(page_size=1000, page_token=token), timeout=10
            )
            for deployment in page.deployments:
                name = deployment.name.removeprefix(DEPLOYMENTS)
                for rule in deployment.guard_alert_rules:
                    by_rule.setdefault(rule.removeprefix(RULES), []).append(name)
            token = page.next_page_token
            if not token:
                break
        self._by_rule = by_rule

    async def _follow(self) -> None:
        while True:
            try:
                await self.refresh()
            except grpc.aio.AioRpcError as error:
                log.warning("reading the registry's deployments failed: %s", error.details())
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
