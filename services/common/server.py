"""The one composition root every Keel server goes through: ``build_server``.

It takes settings, a tracer provider and the service's dependencies, and returns a
``grpc.aio`` server already bound (port 0 means the OS picks; the real port comes back)
with every handler wrapped, from the outside in, in OpenTelemetry's server span, call
metrics, bearer tokens and roles (when ``auth_mode`` is not none) and the error table
(``layers.call_layers``);
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
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from services.common.errors import STATUS_TABLE, StatusTable
from services.common.layers import LayeredServer, RpcMetrics, call_layers
from services.common.settings import ServerSettings
from services.common.telemetry import records_only_parented
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
    layers = call_layers(
        settings,
        tracer_provider,
        RpcMetrics(deps.metrics, deps.name),
        deps.status_table,
        parented_only=records_only_parented(tracer_provider),
    )  # AuthConfigError: the auth settings cannot work
    server = grpc.aio.server(options=_options(settings))
    layered = LayeredServer(server, layers)
    for binding in deps.services:
        binding.register(layered)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, layered)
    names = tuple(binding.name for binding in deps.services)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        layered,
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
