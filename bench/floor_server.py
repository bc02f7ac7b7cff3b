"""A ServerLive-only Open Inference Protocol server, bare or through Keel's plumbing.

``bare``: a plain ``grpc.aio`` server, the floor any Python gRPC service stands on.
``keel``: the same servicer through ``build_server`` (OpenTelemetry, metrics, error
interceptors, health, reflection), with the tracer recording spans in memory only.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import grpc
from opentelemetry.sdk.trace import TracerProvider

from keel.oip.v2 import open_inference_pb2 as oip
from services.common.rpc import Context, Handler
from services.common.server import ServerDeps, ServiceBinding, build_server, run_until_signalled
from services.common.service import Listening, write_ready_file
from services.common.settings import ServerSettings

SERVICE = "inference.GRPCInferenceService"


async def server_live(request: oip.ServerLiveRequest, context: Context) -> oip.ServerLiveResponse:
    return oip.ServerLiveResponse(live=True)


def handlers() -> dict[str, Handler]:
    live = grpc.unary_unary_rpc_method_handler(
        server_live,
        request_deserializer=oip.ServerLiveRequest.FromString,
        response_serializer=oip.ServerLiveResponse.SerializeToString,
    )
    return {"ServerLive": live}


def register(server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers()),))


async def serve_bare(
    name: str, service: str, handlers: dict[str, Handler], ready_file: Path
) -> None:
    """A plain ``grpc.aio`` server with ``handlers`` for ``service`` (no interceptors,
    health or reflection) on 127.0.0.1:0, its port written to ``ready_file``, until killed.
    Every floor of the benchmarks runs on this."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    write_ready_file(ready_file, Listening(name, "127.0.0.1", port, None, os.getpid()))
    await server.wait_for_termination()


async def serve(kind: str, ready_file: Path) -> None:
    if kind == "bare":
        await serve_bare(kind, SERVICE, handlers(), ready_file)
        return
    deps = ServerDeps("floor", [ServiceBinding(SERVICE, register)])
    keel, port = build_server(ServerSettings(), tracer_provider=TracerProvider(), deps=deps)
    await keel.start()
    write_ready_file(ready_file, Listening(kind, "127.0.0.1", port, None, 0))
    await run_until_signalled(keel, grace=1)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], Path(sys.argv[2])))
