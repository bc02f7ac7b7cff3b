"""Alert actions in the registry: rolling a deployment's canary back (``AbortCanary``)
and checking that a rule's deployment exists. Registry errors are translated here into
the monitor's own (a missing deployment is NOT_FOUND, an unreachable registry
UNAVAILABLE), never passed on as UNKNOWN."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from keel.registry.v1 import deployment_pb2
from keel.registry.v1 import registry_pb2 as rpb
from services.common.errors import (
    Conflict,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.identity import IDENTITY_HEADER
from services.monitor.alert_records import CanaryOutcome

if TYPE_CHECKING:  # what RegistryServiceStub(an aio channel) is, in the typing stubs
    from keel.registry.v1.registry_pb2_grpc import RegistryServiceAsyncStub

IDENTITY = "keel-monitor"
_ERRORS: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
}


def _translated(error: grpc.aio.AioRpcError, deployment: str) -> DomainError:
    code = error.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"deployment 'deployments/{deployment}' not found in the registry")
    cls = _ERRORS.get(code, Unavailable)
    if cls is Unavailable:
        return Unavailable(f"the registry cannot be reached ({code.name}): {error.details()}")
    return cls(f"registry: {error.details()}")


def describe(before: deployment_pb2.Deployment, after: deployment_pb2.Deployment) -> str:
    """``deployment 'churn': route 'canary' 10 -> 0, 'control' 90 -> 100``."""
    weights = {r.variant: r.weight for r in before.routes}
    moves = [
        f"'{r.variant}' {weights[r.variant]} -> {r.weight}"
        for r in sorted(after.routes, key=lambda r: not r.canary)
        if r.variant in weights and weights[r.variant] != r.weight
    ]
    name = after.name.removeprefix("deployments/")
    if not moves:
        return f"deployment '{name}': no canary weight left to move (revision {after.revision})"
    return f"deployment '{name}': route {', '.join(moves)} (revision {after.revision})"


class RegistryCanaries:
    """The registry's deployments as alert actions need them (see ``Canaries``)."""

    def __init__(self, stub: RegistryServiceAsyncStub, *, timeout_s: float = 10.0) -> None:
        """``stub``: ``RegistryServiceStub`` on a ``grpc.aio`` channel."""
        self.stub = stub
        self.timeout_s = timeout_s
        self.metadata = ((IDENTITY_HEADER, IDENTITY),)

    async def _get(self, deployment: str) -> deployment_pb2.Deployment:
        request = rpb.GetDeploymentRequest(name=f"deployments/{deployment}")
        try:
            reply = await self.stub.GetDeployment(
                request, timeout=self.timeout_s, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as error:
            raise _translated(error, deployment) from None
        return reply.deployment

    async def check(self, deployment: str) -> None:
        await self._get(deployment)

    async def abort(self, deployment: str, rule: str) -> CanaryOutcome:
        """AbortCanary on ``deployment`` with ``rule`` (``alertRules/{id}``) as the cause;
        the registry audits it under the identity ``keel-monitor``."""
        before = await self._get(deployment)
        request = rpb.AbortCanaryRequest(
            name=f"deployments/{deployment}",
            alert_rule=rule,
            reason=f"alert rule '{rule}' fired",
        )
        try:
            reply = await self.stub.AbortCanary(
                request, timeout=self.timeout_s, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as error:
            raise _translated(error, deployment) from None
        after = reply.deployment
        return CanaryOutcome(reply.changed, after.revision, describe(before, after))
