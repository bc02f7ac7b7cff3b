"""What the inference service needs from the registry, as plain records: the serving
state (aliases, deployments), versions with their signatures, artifact bytes, and the
change stream. An adapter to another service: it maps the registry's messages itself."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from keel.registry.v1 import event_pb2, model_pb2
from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc
from services.common.errors import DataLoss, NotFound, Unavailable
from services.inference.convert import signature_from_version
from services.inference.records import ModelSignature

SERVICE = "keel.registry.v1.RegistryService"
STREAMS = (f"{SERVICE}/WatchEvents", f"{SERVICE}/DownloadArtifact")
PAGE = 1000


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: int
    sha256: str
    flavor: str  # xgboost | sklearn
    signature: ModelSignature


@dataclass(frozen=True)
class RouteInfo:
    variant: str
    model: str
    version: int
    weight: float
    alias: str = ""
    shadow: bool = False


@dataclass
class DeploymentInfo:
    name: str
    model: str
    routes: list[RouteInfo]
    sticky_key_parameter: str = ""


@dataclass
class Snapshot:
    """The registry's serving state at ``sequence``."""

    sequence: int
    tasks: dict[str, int] = field(default_factory=dict)  # model -> keel.common.v1.Task
    aliases: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> alias -> version
    deployments: dict[str, DeploymentInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class Notice:
    """A registry change that may alter what is served."""

    sequence: int
    model: str
    alias: str = ""
    version: int = 0  # the alias's new version (0: deleted)
    deployment: DeploymentInfo | None = None
    deleted: bool = False


def _deployment(message: object) -> DeploymentInfo:
    d = message  # keel.registry.v1.Deployment
    model = d.model.removeprefix("models/")  # type: ignore[attr-defined]
    routes = [
        RouteInfo(r.variant, model, r.resolved_version, float(r.weight), _alias_of(r.target))
        for r in d.routes  # type: ignore[attr-defined]
    ]
    routes += [
        RouteInfo(
            s.variant, s.target.split("/")[1], s.resolved_version, 0.0, _alias_of(s.target), True
        )
        for s in d.shadows  # type: ignore[attr-defined]
    ]
    name = d.name.removeprefix("deployments/")  # type: ignore[attr-defined]
    return DeploymentInfo(name, model, routes, d.sticky_key_parameter)  # type: ignore[attr-defined]


def _alias_of(target: str) -> str:
    parts = target.split("/")
    return parts[3] if len(parts) == 4 and parts[2] == "aliases" else ""


def _translated(error: grpc.aio.AioRpcError, what: str) -> Exception:
    if error.code() == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"{what} not found in the registry")
    return Unavailable(f"the registry could not be reached for {what}: {error.code().name}")


class RegistryUpstream:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = pb_grpc.RegistryServiceStub(channel)

    async def position(self) -> int:
        stream = self._stub.WatchEvents(pb.WatchEventsRequest())
        try:
            first = await anext(aiter(stream))
            return int(first.heartbeat.latest_sequence)
        finally:
            stream.cancel()

    async def snapshot(self) -> Snapshot:
        """Everything served, as of a sequence; events after it are applied on top."""
        snapshot = Snapshot(await self.position())
        token = ""
        while True:
            models = await self._stub.ListModels(
                pb.ListModelsRequest(page_size=PAGE, page_token=token)
            )
            for model in models.models:
                name = model.name.removeprefix("models/")
                snapshot.tasks[name] = model.task
                aliases = await self._stub.ListAliases(
                    pb.ListAliasesRequest(parent=model.name, page_size=PAGE)
                )
                snapshot.aliases[name] = {
                    a.name.rsplit("/", 1)[1]: a.version for a in aliases.aliases
                }
            token = models.next_page_token
            if not token:
                break
        deployments = await self._stub.ListDeployments(pb.ListDeploymentsRequest(page_size=PAGE))
        for message in deployments.deployments:
            info = _deployment(message)
            snapshot.deployments[info.name] = info
        return snapshot

    async def version(self, model: str, number: int, task: int | None = None) -> VersionInfo:
        try:
            if task is None:
                task = (
                    await self._stub.GetModel(pb.GetModelRequest(name=f"models/{model}"))
                ).model.task
            reply = await self._stub.GetModelVersion(
                pb.GetModelVersionRequest(
                    name=f"models/{model}/versions/{number}",
                    view=model_pb2.MODEL_VERSION_VIEW_BASIC,
                )
            )
        except grpc.aio.AioRpcError as error:
            raise _translated(error, f"version {number} of '{model}'") from None
        v = reply.model_version
        flavor = "xgboost" if v.flavor == model_pb2.FLAVOR_XGBOOST else "sklearn"
        return VersionInfo(
            model, number, v.artifact.sha256, flavor, signature_from_version(v, task)
        )

    async def resolve(self, model: str, alias: str) -> int:
        try:
            reply = await self._stub.ResolveAlias(
                pb.ResolveAliasRequest(
                    reference=f"{model}@{alias}", view=model_pb2.MODEL_VERSION_VIEW_BASIC
                )
            )
        except grpc.aio.AioRpcError as error:
            raise _translated(error, f"alias '{model}@{alias}'") from None
        return int(reply.model_version.version)

    async def download(self, sha256: str) -> bytes:
        """The artifact's bytes, verified against its digest."""
        pieces: list[bytes] = []
        try:
            async for part in self._stub.DownloadArtifact(
                pb.DownloadArtifactRequest(name=f"artifacts/{sha256}")
            ):
                if part.WhichOneof("content") == "chunk":
                    pieces.append(part.chunk)
        except grpc.aio.AioRpcError as error:
            raise _translated(error, f"artifact {sha256}") from None
        data = b"".join(pieces)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise DataLoss(f"artifact {sha256}: downloaded bytes do not match the digest")
        return data

    async def watch(self, after: int) -> AsyncIterator[Notice | int]:
        """Notices after ``after``; bare ints are heartbeats (the registry's position)."""
        types = [
            event_pb2.CHANGE_TYPE_ALIAS_SET,
            event_pb2.CHANGE_TYPE_ALIAS_ROLLED_BACK,
            event_pb2.CHANGE_TYPE_ALIAS_DELETED,
            event_pb2.CHANGE_TYPE_DEPLOYMENT_CREATED,
            event_pb2.CHANGE_TYPE_DEPLOYMENT_UPDATED,
            event_pb2.CHANGE_TYPE_DEPLOYMENT_CANARY_ABORTED,
            event_pb2.CHANGE_TYPE_DEPLOYMENT_DELETED,
            event_pb2.CHANGE_TYPE_MODEL_CREATED,
        ]
        request = pb.WatchEventsRequest(after_sequence=after, types=types)
        async for item in self._stub.WatchEvents(request):
            if item.WhichOneof("kind") == "heartbeat":
                yield int(item.heartbeat.latest_sequence)
                continue
            event = item.event
            model = event.model.removeprefix("models/")
            kind = event.WhichOneof("payload")
            if kind == "alias":
                alias = event.alias.name.rsplit("/", 1)[1]
                yield Notice(event.sequence, model, alias, event.alias.version)
            elif kind == "deployment":
                deleted = event.type == event_pb2.CHANGE_TYPE_DEPLOYMENT_DELETED
                yield Notice(
                    event.sequence, model, deployment=_deployment(event.deployment), deleted=deleted
                )
            else:
                yield Notice(event.sequence, model)
