"""How a Keel service process runs: spec, ``serve`` command, ready line and ready file.

A service describes itself with a ``ServiceSpec``: its settings class and ``open``, an
async context manager that opens what the service needs (database, channels to its
peers) and yields its ``ServerDeps``. ``serve`` then builds the server through
``build_server``, starts it, reports where it listens, and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from services.common.heap import settle_heap
from services.common.server import BindError, ServerDeps, build_server, run_until_signalled
from services.common.settings import ServerSettings
from services.common.telemetry import serve_metrics, tracer_provider

S = TypeVar("S", bound=ServerSettings)

Opener = Callable[[S, TracerProvider, CollectorRegistry], AbstractAsyncContextManager[ServerDeps]]


@dataclass(frozen=True)
class ServiceSpec(Generic[S]):
    """What the runner needs to know about one service."""

    name: str
    settings: type[S]
    open: Opener[S]

    @property
    def telemetry_name(self) -> str:
        return f"keel-{self.name}"


@dataclass(frozen=True)
class Listening:
    """Where a started service listens; printed on one line and written as JSON."""

    service: str
    host: str
    port: int
    metrics_port: int | None
    pid: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def line(self) -> str:
        return f"keel: {self.service} listening on {self.address}"

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "address": self.address,
            "host": self.host,
            "port": self.port,
            "metrics_port": self.metrics_port,
            "pid": self.pid,
        }


def write_ready_file(path: Path, listening: Listening) -> None:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(listening.to_json()) + "\n")
    partial.replace(path)


def read_ready_file(path: Path) -> Listening:
    data = json.loads(path.read_text())
    return Listening(
        service=data["service"],
        host=data["host"],
        port=data["port"],
        metrics_port=data["metrics_port"],
        pid=data["pid"],
    )


async def serve(spec: ServiceSpec[S], settings: S, ready_file: Path | None = None) -> None:
    """Run one service until it is signalled to stop."""
    provider = tracer_provider(spec.telemetry_name)
    metrics = CollectorRegistry()
    try:
        async with spec.open(settings, provider, metrics) as deps:
            server, port = build_server(settings, tracer_provider=provider, deps=deps)
            await server.start()
            try:
                endpoint = serve_metrics(metrics, settings.host, settings.metrics_port)
            except OSError:
                await server.stop(None)
                raise
            metrics_port = endpoint.port if endpoint is not None else None
            settle_heap()
            listening = Listening(spec.name, settings.host, port, metrics_port, os.getpid())
            print(listening.line(), flush=True)
            if ready_file is not None:
                write_ready_file(ready_file, listening)
            try:
                await run_until_signalled(server, settings.grace_period_s)
            finally:
                if endpoint is not None:
                    endpoint.close()
    finally:
        provider.shutdown()


def run(spec: ServiceSpec[S], settings: S, ready_file: Path | None) -> None:
    """Process entry point of ``keel <service> serve``."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {spec.name} %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(spec, settings, ready_file))
    except (BindError, OSError) as error:
        # A taken port is the usual cause: say it in one line, not a traceback.
        print(f"keel: {spec.name} cannot start: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
