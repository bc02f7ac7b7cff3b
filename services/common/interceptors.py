"""Server interceptors every Keel server carries, inside OpenTelemetry's.

``ErrorInterceptor`` applies the error table (errors.py) to every handler, unary or
streaming; ``MetricsInterceptor`` counts calls by method and status code and times them;
``AuthInterceptor`` (when auth is on) lets in only calls whose bearer token is valid and
whose roles may call the method (roles.py), and records the caller for the handler.
Both wrap only handlers written as coroutines or async generators, which is how Keel
writes handlers (STYLE.md); a read/write-style stream handler (grpc's own health
``Watch``) passes through untouched.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.auth import Authenticator, AuthFailure, build_authenticator
from services.common.denials import permission_denied, unauthenticated
from services.common.errors import (
    STATUS_TABLE,
    DomainError,
    StatusTable,
    internal_status,
    rich_status,
)
from services.common.identity import Principal, authenticate_as
from services.common.roles import RPC_ROLES, Table, may_call
from services.common.rpc import Context, Handler
from services.common.settings import ServerSettings

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
        # Each labelled child, looked up once: ``labels()`` costs more than the update.
        self._counts: dict[tuple[str, grpc.StatusCode], Counter] = {}
        self._durations: dict[str, Histogram] = {}

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        count = self._counts.get((method, code))
        if count is None:
            count = self._counts[method, code] = self.calls.labels(self.service, method, code.name)
        count.inc()
        duration = self._durations.get(method)
        if duration is None:
            duration = self._durations[method] = self.duration.labels(self.service, method)
        duration.observe(seconds)


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


def _denying(handler: Handler, error: DomainError) -> Handler:
    """A handler of the same kind as ``handler`` that answers every call with ``error``."""
    status = rpc_status.to_status(rich_status(error))

    async def deny(request: Any, context: Context) -> None:
        await context.abort_with_status(status)  # type: ignore[attr-defined]

    async def deny_stream(request: Any, context: Context) -> AsyncIterator[Any]:
        await context.abort_with_status(status)  # type: ignore[attr-defined]
        yield  # never reached: abort raises

    streaming = handler.response_streaming
    factory = _HANDLER_FACTORY[
        ("stream_" if handler.request_streaming else "unary_")
        + ("stream" if streaming else "unary")
    ]
    return factory(
        deny_stream if streaming else deny,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _as_caller(principal: Principal) -> Wrap:
    """Wraps a behaviour so that the call's handler sees ``principal`` as its caller."""

    def wrap(behavior: Behavior, method: str) -> Behavior:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                authenticate_as(principal)
                async for response in behavior(request, context):
                    yield response

            return stream
        if inspect.iscoroutinefunction(behavior):

            async def unary(request: Any, context: Context) -> Any:
                authenticate_as(principal)
                return await behavior(request, context)

            return unary
        # Not Keel's style, but never let such a handler fall back to x-keel-user.
        if inspect.isgeneratorfunction(behavior):

            def sync_stream(request: Any, context: Context) -> Iterator[Any]:
                authenticate_as(principal)
                yield from behavior(request, context)

            return sync_stream

        def sync_unary(request: Any, context: Context) -> Any:
            authenticate_as(principal)
            return behavior(request, context)

        return sync_unary

    return wrap


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Bearer token on every call but ``exempt`` ones (a full ``/pkg.Service/Method`` or a
    ``/pkg.Service/`` prefix), then the role table. Denials carry the generic words of
    ``denials.py``; the cause is logged."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        exempt: tuple[str, ...] = (),
        table: Table = RPC_ROLES,
    ) -> None:
        self._authenticator = authenticator
        self._exempt = exempt
        self._table = table

    def _is_exempt(self, method: str) -> bool:
        return any(method.startswith(e) if e.endswith("/") else method == e for e in self._exempt)

    async def intercept_service(  # type: ignore[override]  # None: no such method
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or self._is_exempt(method):
            return handler
        try:
            principal = self._authenticator.authenticate(handler_call_details.invocation_metadata)
        except AuthFailure as failure:
            return _denying(handler, unauthenticated(method, str(failure)))
        if not may_call(principal.roles, method, self._table):
            cause = f"roles {sorted(principal.roles)} not allowed"
            return _denying(handler, permission_denied(principal.subject, f"call {method}", cause))
        return _rewrap(handler, method, _as_caller(principal))


def auth_interceptors(settings: ServerSettings) -> list[AuthInterceptor]:
    """``[AuthInterceptor]`` as the settings describe it; none when ``auth_mode`` is none.
    Raises ``AuthConfigError`` when the settings cannot work."""
    authenticator = build_authenticator(settings)
    if authenticator is None:
        return []
    return [AuthInterceptor(authenticator, exempt=tuple(settings.auth_exempt_methods))]
