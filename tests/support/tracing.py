"""Spans for tests to read back: a tracer provider per service keeping its spans in memory,
a registry and a monitor running on such a provider, a caller's traceparent, and an
OTLP/gRPC collector that service processes export to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.rpc import Context


@dataclass(frozen=True)
class Recorded:
    """A service's tracer provider and the spans it finished."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def one(self, name: str, trace_id: int) -> ReadableSpan:
        """The one span named ``name`` in trace ``trace_id``."""
        found = [s for s in self.spans(name) if trace_of(s) == trace_id]
        assert len(found) == 1, f"{len(found)} spans {name!r} in trace {trace_id:032x}"
        return found[0]

    async def wait_for(self, name: str, count: int = 1, timeout_s: float = 10) -> None:
        """Until ``count`` spans named ``name`` have finished."""
        async with asyncio.timeout(timeout_s):
            while len(self.spans(name)) < count:
                await asyncio.sleep(0.01)


def recorded(service: str) -> Recorded:
    """A provider like a service's own (sampling every trace), spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Recorded(provider, exporter)


def traceparent(trace_id: int, span_id: int) -> tuple[tuple[str, str]]:
    """Call metadata naming a sampled caller span."""
    return (("traceparent", f"00-{trace_id:032x}-{span_id:016x}-01"),)


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def parent_id(span: ReadableSpan) -> int:
    return span.parent.span_id if span.parent is not None else 0


def ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[int]:
    """Span ids from ``span``'s parent up, as far as ``spans`` (of any service) go."""
    by_id = {span_id(s): s for s in spans}
    chain, parent = [], parent_id(span)
    while parent:
        chain.append(parent)
        parent = parent_id(by_id[parent]) if parent in by_id else 0
    return chain


@dataclass(frozen=True)
class Exported:
    """One span as a service exported it by OTLP."""

    service: str
    span: trace_pb2.Span

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def links(self) -> set[tuple[str, str]]:
        return {(link.trace_id.hex(), link.span_id.hex()) for link in self.span.links}


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver keeping what it is sent."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Context
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[Exported]:
        found = []
        for request in self.requests:
            for resource in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    found += [Exported(attributes["service.name"], s) for s in scope.spans]
        return found


@asynccontextmanager
async def otlp_collector() -> AsyncIterator[tuple[Collector, str]]:
    """A collector listening on a free port; yields it and its endpoint URL."""
    collector = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield collector, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(None)
