"""build_server with a tiny servicer: health, reflection, errors, metrics, traces."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from services.common.channels import create_channel
from services.common.errors import INTERNAL_MESSAGE
from services.common.server import KeelServer, ServerDeps, build_server
from services.common.telemetry import PARENT_ONLY
from tests.support.probe import OIP_SERVICE, SECRET, ProbeServicer, ProbeSettings, probe_binding


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def metrics() -> CollectorRegistry:
    return CollectorRegistry()


async def start_probe(
    provider: TracerProvider,
    metrics: CollectorRegistry,
    downstream: oip_grpc.GRPCInferenceServiceAsyncStub | None = None,
) -> tuple[KeelServer, int]:
    deps = ServerDeps("probe", [probe_binding(ProbeServicer(downstream))], metrics)
    server, port = build_server(ProbeSettings(port=0), tracer_provider=provider, deps=deps)
    await server.start()
    return server, port


@pytest.fixture
async def probe(
    provider: TracerProvider, metrics: CollectorRegistry
) -> AsyncIterator[grpc.aio.Channel]:
    server, port = await start_probe(provider, metrics)
    assert port > 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


async def test_health_reports_serving_for_server_and_service(probe: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(probe)
    for service in ("", OIP_SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(probe: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(probe)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names = set()
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
        names |= {s.name for s in reply.list_services_response.service}
    assert {OIP_SERVICE, "grpc.health.v1.Health"} <= names
    symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol=OIP_SERVICE)
    async for reply in stub.ServerReflectionInfo(iter([symbol]), timeout=5):
        assert reply.file_descriptor_response.file_descriptor_proto


async def test_domain_error_arrives_with_code_message_and_details(probe: grpc.aio.Channel) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(probe)
    call = stub.ModelReady(oip.ModelReadyRequest(name="churn"), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "model 'churn' not found"
    status = await rpc_status.aio.from_call(call)  # type: ignore[attr-defined]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "NOT_FOUND",
        "keel.dev",
        {"model": "churn"},
    )


async def test_invalid_argument_names_the_field(probe: grpc.aio.Channel) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(probe)
    call = stub.ModelMetadata(oip.ModelMetadataRequest(name=""), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = await rpc_status.aio.from_call(call)  # type: ignore[attr-defined]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad) for detail in status.details)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("name", "expected a model name, got ''")
    ]


async def test_unplanned_error_is_internal_and_leaks_nothing(probe: grpc.aio.Channel) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(probe)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ServerMetadata(oip.ServerMetadataRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == INTERNAL_MESSAGE
    assert SECRET not in str(caught.value)
    assert "Traceback" not in str(caught.value)


async def test_metrics_count_calls_by_method_and_code(
    probe: grpc.aio.Channel, metrics: CollectorRegistry
) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(probe)
    await stub.ServerLive(oip.ServerLiveRequest(), timeout=5)
    await stub.ServerLive(oip.ServerLiveRequest(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ModelReady(oip.ModelReadyRequest(name="x"), timeout=5)

    def calls(method: str, code: str) -> float | None:
        labels = {"service": "probe", "method": f"/{OIP_SERVICE}/{method}", "code": code}
        return metrics.get_sample_value("keel_rpc_server_calls_total", labels)

    assert calls("ServerLive", "OK") == 2
    assert calls("ModelReady", "NOT_FOUND") == 1
    duration = metrics.get_sample_value(
        "keel_rpc_server_duration_seconds_count",
        {"service": "probe", "method": f"/{OIP_SERVICE}/ServerLive"},
    )
    assert duration == 2


async def test_client_server_server_spans_share_one_trace(
    provider: TracerProvider, metrics: CollectorRegistry, exporter: InMemorySpanExporter
) -> None:
    back, back_port = await start_probe(provider, metrics=CollectorRegistry())
    back_channel = create_channel(
        f"127.0.0.1:{back_port}", tracer_provider=provider, services=[OIP_SERVICE]
    )
    try:
        downstream = oip_grpc.GRPCInferenceServiceStub(back_channel)
        front, front_port = await start_probe(provider, metrics, downstream=downstream)
        try:
            async with create_channel(
                f"127.0.0.1:{front_port}", tracer_provider=provider, services=[OIP_SERVICE]
            ) as client:
                stub = oip_grpc.GRPCInferenceServiceStub(client)
                await stub.ModelInfer(oip.ModelInferRequest(model_name="m", id="r1"), timeout=5)
        finally:
            await front.stop(None)
    finally:
        await back_channel.close(None)
        await back.stop(None)

    spans = {(s.kind, s.name): s for s in exporter.get_finished_spans()}
    client_front = spans[(SpanKind.CLIENT, f"/{OIP_SERVICE}/ModelInfer")]
    server_front = spans[(SpanKind.SERVER, f"/{OIP_SERVICE}/ModelInfer")]
    client_back = spans[(SpanKind.CLIENT, f"/{OIP_SERVICE}/ServerLive")]
    server_back = spans[(SpanKind.SERVER, f"/{OIP_SERVICE}/ServerLive")]
    chain = [client_front, server_front, client_back, server_back]
    assert len({s.context.trace_id for s in chain}) == 1
    assert client_front.parent is None
    for parent, child in zip(chain, chain[1:], strict=False):
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
    assert server_front.parent is not None and server_front.parent.is_remote
    assert server_back.parent is not None and server_back.parent.is_remote
    assert not any("grpc.health" in s.name for s in exporter.get_finished_spans())


async def test_without_an_exporter_only_calls_carrying_a_sampled_traceparent_are_traced(
    exporter: InMemorySpanExporter,
) -> None:
    provider = TracerProvider(sampler=PARENT_ONLY)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server, port = await start_probe(provider, CollectorRegistry())
    trace_id, parent_id = "1" * 32, "2" * 16
    sampled = (("traceparent", f"00-{trace_id}-{parent_id}-01"),)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            assert (await stub.ServerLive(oip.ServerLiveRequest(), timeout=5)).live
            assert exporter.get_finished_spans() == ()
            for _ in range(2):  # the span is made the same way on later calls
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.ModelReady(
                        oip.ModelReadyRequest(name="x"), metadata=sampled, timeout=5
                    )
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest(), metadata=sampled, timeout=5)
    finally:
        await server.stop(None)

    spans = exporter.get_finished_spans()
    assert [(s.kind, s.name) for s in spans] == [
        (SpanKind.SERVER, f"/{OIP_SERVICE}/ModelReady")
    ] * 2
    for span in spans:
        assert format(span.context.trace_id, "032x") == trace_id
        assert span.parent is not None and span.parent.is_remote
        assert format(span.parent.span_id, "016x") == parent_id
