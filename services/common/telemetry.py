"""Tracing and metrics setup: OpenTelemetry traces, Prometheus metrics on a side port.

Nothing here is global: a ``TracerProvider`` and a Prometheus ``CollectorRegistry`` are
made per process (or per test) and passed to whatever needs them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from prometheus_client import CollectorRegistry, start_http_server

PARENT_ONLY = ParentBased(ALWAYS_OFF)
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# Infrastructure services are not traced (their calls are counted like any other).
INFRASTRUCTURE_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


def records_only_parented(provider: TracerProvider) -> bool:
    """Whether ``provider`` records spans only under a caller's sampled trace."""
    description = provider.sampler.get_description()
    return bool(description == PARENT_ONLY.get_description())  # type: ignore[no-untyped-call]


def sampler_from_environment() -> Sampler | None:
    """Without an exporter nothing would read the spans: record only what a caller's
    sampled ``traceparent`` asks for (trace ids still propagate). ``OTEL_TRACES_SAMPLER``
    or an OTLP endpoint restore the SDK's default (always on)."""
    if os.environ.get("OTEL_TRACES_SAMPLER") or any(
        os.environ.get(name) for name in OTLP_ENDPOINT_VARIABLES
    ):
        return None
    return PARENT_ONLY


def tracer_provider(service_name: str) -> TracerProvider:
    """A provider naming ``service_name``; it exports by OTLP when the standard
    ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable is set, and records nothing otherwise."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=sampler_from_environment(),
    )
    if any(os.environ.get(name) for name in OTLP_ENDPOINT_VARIABLES):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


@dataclass
class MetricsEndpoint:
    """A running Prometheus endpoint; ``close()`` stops it."""

    port: int
    close: Callable[[], None]


def serve_metrics(
    registry: CollectorRegistry, host: str, port: int | None
) -> MetricsEndpoint | None:
    """Serve ``registry`` at ``http://host:port/metrics``; None turns it off and 0 binds
    a free port (the ``serve`` commands map ``--metrics-port 0`` to None)."""
    if port is None:
        return None
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise OSError(f"metrics: cannot listen on {host}:{port}: {error.strerror}") from None

    def close() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

    return MetricsEndpoint(port=httpd.server_port, close=close)
