"""A ServerLive-only Open Inference Protocol server, bare or through Keel's plumbing.

``bare``: a plain ``grpc.aio`` server, the floor any Python gRPC service stands on.
``keel``: the same servicer through ``build_server`` (OpenTelemetry, metrics, error
interceptors, health, reflection), with the tracer recording spans in memory only.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
from opentelemetry.sdk.trace import TracerProvider

from keel.oip.v2 import open_inference_pb2 as oip
from services.common.rpc import Context
from services.common.server import ServerDeps, ServiceBinding, build_server, run_until_signalled
from services.common.service import Listening, write_ready_file
from services.common.settings import ServerSettings


async def server_live(request: oip.ServerLiveRequest, context: Context) -> oip.ServerLiveResponse:
    return oip.ServerLiveResponse(live=True)


def register(server: grpc.aio.Server) -> None:
    live = grpc.unary_unary_rpc_method_handler(
        server_live,
        request_deserializer=oip.ServerLiveRequest.FromString,
        response_serializer=oip.ServerLiveResponse.SerializeToString,
    )
    handlers = {"ServerLive": live}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers),)
    )


async def serve(kind: str, ready_file: Path) -> None:
    if kind == "bare":
        server = grpc.aio.server()
        register(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
    else:
        deps = ServerDeps("floor", [ServiceBinding("inference.GRPCInferenceService", register)])
        keel, port = build_server(ServerSettings(), tracer_provider=TracerProvider(), deps=deps)
        await keel.start()
    write_ready_file(ready_file, Listening(kind, "127.0.0.1", port, None, 0))
    if kind == "bare":
        await server.wait_for_termination()
    else:
        await run_until_signalled(keel, grace=1)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], Path(sys.argv[2])))
