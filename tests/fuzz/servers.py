"""The fuzzed servers: run on an event loop of their own in a thread, traced without
touching the global ``random``, called through a synchronous channel."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator

from tests.fuzz.harness import DEADLINE_S

T = TypeVar("T")
MAX_MESSAGE = 256 * 1024 * 1024
SERVING = health_pb2.HealthCheckResponse.SERVING


def channel_to(address: str) -> grpc.Channel:
    return grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )


def health(channel: grpc.Channel, service: str = "") -> int:
    """The health status of ``service`` (grpc.health.v1), e.g. SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE_S)
    return int(reply.status)


class _PrivateIds(IdGenerator):
    """Span ids from a ``random.Random`` of its own. Hypothesis takes any change of the
    global ``random`` state while it draws an example (here: a span started by a server's
    background task in the other thread) for a strategy misusing ``random``."""

    def __init__(self) -> None:
        self._random = random.Random()

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


def tracer_provider() -> TracerProvider:
    """What the fuzzed servers trace with: the SDK's, ids drawn privately."""
    return TracerProvider(id_generator=_PrivateIds())


class ServerThread(Generic[T]):
    """Runs an async context manager (servers and what they need) on an event loop of its
    own in a thread, so that synchronous hypothesis tests can call the servers."""

    def __init__(self, factory: Callable[[], AbstractAsyncContextManager[T]]) -> None:
        self._factory = factory
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fuzz-servers", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._value: T | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - reported by __enter__/__exit__
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with self._factory() as value:
            self._value = value
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> T:
        self._thread.start()
        if not self._ready.wait(300):
            raise TimeoutError("the servers did not start within 300 s")
        if self._error is not None or self._value is None:
            raise RuntimeError("the servers did not start") from self._error
        return self._value

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self._error is not None:
            raise RuntimeError("the servers failed while stopping") from self._error
