"""The one composition root every Keel server goes through: ``build_server``.

It takes settings, a tracer provider and the service's dependencies, and returns a
``grpc.aio`` server already bound (port 0 means the OS picks; the real port comes back)
with, in this order: OpenTelemetry's server interceptor, call metrics, bearer tokens and
roles (when ``auth_mode`` is not none), the error table;
``grpc.health.v1``; server reflection; message size limits from settings; TLS or
mutual TLS when the settings name a certificate (``services.common.tls``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from services.common.errors import STATUS_TABLE, StatusTable
from services.common.interceptors import (
    ErrorInterceptor,
    MetricsInterceptor,
    RpcMetrics,
    auth_interceptors,
)
from services.common.settings import ServerSettings
from services.common.telemetry import records_only_parented, traced_calls
from services.common.tls import server_credentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve: its full proto name and how to add its servicer."""

    name: str
    register: Callable[[grpc.aio.Server], None]


@dataclass(frozen=True)
class ServerDeps:
    """Everything a server is made of besides settings and tracing."""

    name: str
    services: Sequence[ServiceBinding]
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    status_table: StatusTable = field(default_factory=lambda: STATUS_TABLE)


class BindError(RuntimeError):
    """The server could not listen where it was told to."""


@dataclass
class KeelServer:
    """A bound ``grpc.aio`` server with its health servicer."""

    name: str
    grpc: grpc.aio.Server
    health: HealthServicer
    services: tuple[str, ...]

    async def start(self) -> None:
        await self.grpc.start()
        for service in ("", *self.services):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None) -> None:
        """Stop taking calls, let in-flight calls run for ``grace`` seconds, then end."""
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(grace)


def _options(settings: ServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Two processes share a port only when told to (``--workers``), never by accident.
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
    ]


def build_server(
    settings: ServerSettings, *, tracer_provider: TracerProvider, deps: ServerDeps
) -> tuple[KeelServer, int]:
    """Build and bind the server; call ``start()`` on it within the event loop."""
    interceptors = [
        aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=tracer_provider,
            filter_=traced_calls(parented_only=records_only_parented(tracer_provider)),
        ),
        MetricsInterceptor(RpcMetrics(deps.metrics, deps.name)),
        # Bearer token and role table (none when auth_mode is none): denials are counted.
        *auth_interceptors(settings),
        ErrorInterceptor(deps.status_table),
    ]
    server = grpc.aio.server(interceptors=interceptors, options=_options(settings))
    for binding in deps.services:
        binding.register(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = tuple(binding.name for binding in deps.services)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    credentials = server_credentials(settings)  # TlsError: a TLS file cannot be used
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.address)
        else:
            port = server.add_secure_port(settings.address, credentials)
    except RuntimeError as error:
        raise BindError(f"{deps.name}: cannot listen on {settings.address}: {error}") from None
    return KeelServer(deps.name, server, health, names), port


async def run_until_signalled(server: KeelServer, grace: float) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("%s: stopping, %.1fs for in-flight calls", server.name, grace)
        await server.stop(grace)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
