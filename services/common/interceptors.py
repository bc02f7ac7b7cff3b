"""Server interceptors every Keel server carries, inside OpenTelemetry's.

``ErrorInterceptor`` applies the error table (errors.py) to every handler, unary or
streaming; ``MetricsInterceptor`` counts calls by method and status code and times them.
Both wrap only handlers written as coroutines or async generators, which is how Keel
writes handlers (STYLE.md); a read/write-style stream handler (grpc's own health
``Watch``) passes through untouched.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.errors import (
    STATUS_TABLE,
    DomainError,
    StatusTable,
    internal_status,
    rich_status,
)
from services.common.rpc import Context, Handler

log = logging.getLogger(__name__)

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]
Behavior = Callable[..., Any]
Wrap = Callable[[Behavior, str], Behavior]

_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
_HANDLER_FACTORY = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _rewrap(handler: Handler, method: str, wrap: Wrap) -> Handler:
    """The same handler with its behaviour passed through ``wrap``."""
    for kind in _KINDS:
        behavior = getattr(handler, kind)
        if behavior is None:
            continue
        wrapped = wrap(behavior, method)
        if wrapped is behavior:
            return handler
        factory: Callable[..., Handler] = _HANDLER_FACTORY[kind]
        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class _Interceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps each method's handler once and reuses the wrapper for every later call to
    that method (the inner handler is the same object each time)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(  # type: ignore[override]  # None: no such method
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = _rewrap(handler, method, self.wrap)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def wrap(self, behavior: Behavior, method: str) -> Behavior:
        raise NotImplementedError


class ErrorInterceptor(_Interceptor):
    """Turns domain errors into statuses with details and anything else into INTERNAL."""

    def __init__(self, table: StatusTable = STATUS_TABLE) -> None:
        super().__init__()
        self._table = table

    async def _abort(self, error: Exception, context: Context, method: str) -> None:
        if isinstance(error, DomainError):
            status = rich_status(error, self._table)
        else:
            log.exception("unhandled error in %s", method, exc_info=error)
            status = internal_status()
        await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]

    def wrap(self, behavior: Behavior, method: str) -> Behavior:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                try:
                    async for response in behavior(request, context):
                        yield response
                except grpc.aio.AbortError:
                    raise
                except Exception as error:  # noqa: BLE001 - the boundary of the call
                    await self._abort(error, context, method)

            return stream
        if inspect.iscoroutinefunction(behavior):

            async def unary(request: Any, context: Context) -> Any:
                try:
                    return await behavior(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as error:  # noqa: BLE001 - the boundary of the call
                    await self._abort(error, context, method)

            return unary
        return behavior


class RpcMetrics:
    """Prometheus instruments for calls served, registered on one registry."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.calls = Counter(
            "keel_rpc_server_calls",
            "RPCs finished, by method and gRPC status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "keel_rpc_server_duration_seconds",
            "Time from the start of an RPC to its last response.",
            ["service", "method"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.service = service

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.calls.labels(self.service, method, code.name).inc()
        self.duration.labels(self.service, method).observe(seconds)


def _final_code(context: Context, error: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    return (
        grpc.StatusCode.CANCELLED if isinstance(error, GeneratorExit) else grpc.StatusCode.UNKNOWN
    )


class MetricsInterceptor(_Interceptor):
    """Counts and times every call with its final status code."""

    def __init__(self, metrics: RpcMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap(self, behavior: Behavior, method: str) -> Behavior:
        observe = self._metrics.observe
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                started, error = time.perf_counter(), None
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    observe(method, _final_code(context, error), time.perf_counter() - started)

            return stream
        if inspect.iscoroutinefunction(behavior):

            async def unary(request: Any, context: Context) -> Any:
                started, error = time.perf_counter(), None
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    observe(method, _final_code(context, error), time.perf_counter() - started)

            return unary
        return behavior
