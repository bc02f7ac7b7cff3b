"""With OTEL_EXPORTER_OTLP_ENDPOINT set, a service process exports its spans by OTLP:
the server span of a call arrives at a collector, in the caller's trace, named after
the service."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from services.common.rpc import Context
from tests.support.processes import probe_argv, spawn, wait_ready

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Context
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_spans_reach_an_otlp_collector(tmp_path: Path) -> None:
    collector = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ready = tmp_path / "probe.json"
    proc = spawn(
        probe_argv(ready),
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        },
    )
    try:
        listening = await asyncio.to_thread(wait_ready, proc, ready)
        async with grpc.aio.insecure_channel(listening.address) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            traceparent = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
            await stub.ModelInfer(
                oip.ModelInferRequest(model_name="m"),
                metadata=(("traceparent", traceparent),),
                timeout=5,
            )
        proc.send_signal(signal.SIGTERM)  # shutdown flushes the batch span processor
        output, _ = await asyncio.to_thread(proc.communicate, None, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        await server.stop(None)
    assert proc.returncode == 0, output
    spans = [
        (resource.resource, span)
        for request in collector.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    [(resource, span)] = [
        (r, s) for r, s in spans if s.name == "/inference.GRPCInferenceService/ModelInfer"
    ]
    names = {a.key: a.value.string_value for a in resource.attributes}
    assert names["service.name"] == "keel-probe"
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == PARENT_SPAN_ID
