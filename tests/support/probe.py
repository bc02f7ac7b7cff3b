"""A tiny servicer on the real Open Inference Protocol contract, for testing the server
plumbing (``build_server``, errors, metrics, tracing, shutdown) before any real
service exists. It is test code: nothing in the suite imports it.

- ServerLive answers live; ServerReady answers ready.
- ModelReady raises NotFound for every model name (a domain error).
- ModelMetadata raises InvalidArgument with a field violation.
- ServerMetadata raises an unplanned error whose text must never reach the caller.
- ModelInfer sleeps for the request parameter `sleep_s`, then, when the probe has a
  downstream channel, asks the downstream probe ServerLive (a server → server hop);
  it answers with the request's parameters echoed.
- The Triton extensions answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from pydantic_settings import SettingsConfigDict

from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from services.common.channels import create_channel
from services.common.errors import FieldViolation, InvalidArgument, NotFound, Unimplemented
from services.common.rpc import Context
from services.common.server import ServerDeps, ServiceBinding
from services.common.service import ServiceSpec, run
from services.common.settings import ServerSettings

OIP_SERVICE = "inference.GRPCInferenceService"
SECRET = "SELECT password FROM users"


class ProbeSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="KEEL_PROBE_")

    downstream_address: str | None = None


class ProbeServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, downstream: oip_grpc.GRPCInferenceServiceAsyncStub | None = None):
        self._downstream = downstream

    async def ServerLive(
        self, request: oip.ServerLiveRequest, context: Context
    ) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: oip.ServerReadyRequest, context: Context
    ) -> oip.ServerReadyResponse:
        return oip.ServerReadyResponse(ready=True)

    async def ModelReady(
        self, request: oip.ModelReadyRequest, context: Context
    ) -> oip.ModelReadyResponse:
        raise NotFound(f"model '{request.name}' not found", metadata={"model": request.name})

    async def ModelMetadata(
        self, request: oip.ModelMetadataRequest, context: Context
    ) -> oip.ModelMetadataResponse:
        raise InvalidArgument(
            "name: expected a model name, got ''",
            violations=[FieldViolation("name", "expected a model name, got ''")],
        )

    async def ServerMetadata(
        self, request: oip.ServerMetadataRequest, context: Context
    ) -> oip.ServerMetadataResponse:
        raise RuntimeError(SECRET)

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: Context
    ) -> oip.ModelInferResponse:
        await asyncio.sleep(request.parameters["sleep_s"].double_param)
        if self._downstream is not None:
            await self._downstream.ServerLive(oip.ServerLiveRequest())
        response = oip.ModelInferResponse(model_name=request.model_name, id=request.id)
        for key, value in request.parameters.items():
            response.parameters[key].CopyFrom(value)
        return response

    async def ModelStatistics(
        self, request: oip.ModelStatisticsRequest, context: Context
    ) -> oip.ModelStatisticsResponse:
        raise Unimplemented("the probe keeps no statistics")

    async def RepositoryIndex(
        self, request: oip.RepositoryIndexRequest, context: Context
    ) -> oip.RepositoryIndexResponse:
        raise Unimplemented("the probe has no repository")

    async def RepositoryModelLoad(
        self, request: oip.RepositoryModelLoadRequest, context: Context
    ) -> oip.RepositoryModelLoadResponse:
        raise Unimplemented("the probe has no repository")

    async def RepositoryModelUnload(
        self, request: oip.RepositoryModelUnloadRequest, context: Context
    ) -> oip.RepositoryModelUnloadResponse:
        raise Unimplemented("the probe has no repository")


def probe_binding(servicer: ProbeServicer) -> ServiceBinding:
    return ServiceBinding(
        OIP_SERVICE,
        lambda server: oip_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server),
    )


@asynccontextmanager
async def open_probe(
    settings: ProbeSettings, provider: TracerProvider, metrics: CollectorRegistry
) -> AsyncIterator[ServerDeps]:
    if not settings.downstream_address:
        yield ServerDeps("probe", [probe_binding(ProbeServicer())], metrics)
        return
    async with create_channel(
        settings.downstream_address, tracer_provider=provider, services=[OIP_SERVICE]
    ) as channel:
        downstream = oip_grpc.GRPCInferenceServiceStub(channel)
        yield ServerDeps("probe", [probe_binding(ProbeServicer(downstream))], metrics)


SPEC = ServiceSpec(name="probe", settings=ProbeSettings, open=open_probe)

if __name__ == "__main__":
    ready = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    run(SPEC, ProbeSettings(), ready)
