"""The layers every call to a Keel server goes through, from the outside in:
OpenTelemetry's server span, call metrics, bearer tokens and roles (when ``auth_mode``
is not none), the error table.

Each layer wraps a method's behaviour once, when a service registers its handlers on the
``LayeredServer`` that ``build_server`` hands it, not on every call: grpc's interceptor
chain costs each call a coroutine, a partial and a handler lookup per interceptor, which
was a sixth of a one-row ModelInfer's server CPU (ADR 0002). What depends on the call
(its ``traceparent``, its token) is read from the call's metadata inside the wrapper.
Only behaviours written as coroutines or async generators are wrapped, which is how Keel
writes handlers (STYLE.md) and how grpc's aio health and reflection servicers are
written; OpenTelemetry's span is not put around a read/write-style stream handler
(grpc's health ``Watch``), which its aio interceptor breaks.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, NamedTuple

import grpc
from grpc_status import rpc_status
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
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
from services.common.identity import authenticate_as
from services.common.roles import RPC_ROLES, Table, may_call
from services.common.rpc import Context, GenericHandler, Handler
from services.common.settings import ServerSettings
from services.common.telemetry import INFRASTRUCTURE_SERVICES

log = logging.getLogger(__name__)

Behavior = Callable[..., Any]
Wrap = Callable[[Behavior, str], Behavior]
Layers = Callable[[str, Handler], Handler]

_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
_HANDLER_FACTORY = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _behavior(handler: Handler) -> tuple[str, Behavior]:
    """The handler's kind (``unary_unary``…) and its behaviour."""
    for kind in _KINDS:
        behavior = getattr(handler, kind)
        if behavior is not None:
            return kind, behavior
    raise ValueError("a method handler without a behaviour")


def _replaced(handler: Handler, behavior: Behavior) -> Handler:
    """A handler of the same kind and (de)serialisers as ``handler`` with ``behavior``."""
    kind, _ = _behavior(handler)
    factory: Callable[..., Handler] = _HANDLER_FACTORY[kind]
    return factory(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _rewrap(handler: Handler, method: str, wrap: Wrap) -> Handler:
    """The same handler with its behaviour passed through ``wrap``."""
    _, behavior = _behavior(handler)
    wrapped = wrap(behavior, method)
    return handler if wrapped is behavior else _replaced(handler, wrapped)


class ErrorLayer:
    """Turns domain errors into statuses with details and anything else into INTERNAL."""

    def __init__(self, table: StatusTable = STATUS_TABLE) -> None:
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


class MetricsLayer:
    """Counts and times every call with its final status code."""

    def __init__(self, metrics: RpcMetrics) -> None:
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


class AuthLayer:
    """Bearer token on every call but ``exempt`` ones (a full ``/pkg.Service/Method`` or a
    ``/pkg.Service/`` prefix), then the role table. Denials carry the generic words of
    ``denials.py``; the cause is logged. An admitted call's handler sees its principal."""

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

    async def _admit(self, method: str, context: Context) -> None:
        """Record the call's principal, or abort the call with the denial."""
        try:
            principal = self._authenticator.authenticate(context.invocation_metadata())
        except AuthFailure as failure:
            await _deny(context, unauthenticated(method, str(failure)))
            return
        if not may_call(principal.roles, method, self._table):
            cause = f"roles {sorted(principal.roles)} not allowed"
            await _deny(context, permission_denied(principal.subject, f"call {method}", cause))
            return
        authenticate_as(principal)

    def wrap(self, behavior: Behavior, method: str) -> Behavior:
        if self._is_exempt(method):
            return behavior
        admit = self._admit
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                await admit(method, context)
                async for response in behavior(request, context):
                    yield response

            return stream
        if inspect.iscoroutinefunction(behavior):

            async def unary(request: Any, context: Context) -> Any:
                await admit(method, context)
                return await behavior(request, context)

            return unary
        # Never serve a method unguarded: a registered one stops the server's start, one
        # found through a generic handler is refused (``_LayeredGeneric``).
        raise TypeError(f"{method}: only coroutine and async-generator handlers can be guarded")


async def _deny(context: Context, error: DomainError) -> None:
    await context.abort_with_status(  # type: ignore[attr-defined]
        rpc_status.to_status(rich_status(error))
    )


def auth_layer(settings: ServerSettings) -> AuthLayer | None:
    """The ``AuthLayer`` the settings describe; none when ``auth_mode`` is none.
    Raises ``AuthConfigError`` when the settings cannot work."""
    authenticator = build_authenticator(settings)
    if authenticator is None:
        return None
    return AuthLayer(authenticator, exempt=tuple(settings.auth_exempt_methods))


class _CallDetails(NamedTuple):
    """``grpc.HandlerCallDetails`` for OpenTelemetry's interceptor."""

    method: str
    invocation_metadata: Any


class TracingLayer:
    """OpenTelemetry's server span around every call but infrastructure ones (health,
    reflection); with ``parented_only``, only around calls that carry a ``traceparent``
    (when nothing else would be recorded, the span's work is skipped altogether)."""

    def __init__(self, provider: TracerProvider, *, parented_only: bool) -> None:
        self._otel = aio_server_interceptor(tracer_provider=provider)  # type: ignore[no-untyped-call]
        self._parented_only = parented_only

    def _skips(self, context: Context) -> bool:
        if not self._parented_only:
            return False
        return not any(key == "traceparent" for key, _ in context.invocation_metadata() or ())

    def wrap_handler(self, method: str, handler: Handler) -> Handler:
        if method[1 : method.rfind("/")] in INFRASTRUCTURE_SERVICES:
            return handler
        kind, behavior = _behavior(handler)
        traced: Behavior | None = None

        async def traced_behavior(context: Context) -> Behavior:
            # OpenTelemetry wraps per method; its wrapper is made on the first traced call.
            nonlocal traced
            if traced is not None:
                return traced

            async def same(details: grpc.HandlerCallDetails) -> Handler:
                return handler

            found = await self._otel.intercept_service(
                same, _CallDetails(method, context.invocation_metadata())
            )
            if found is handler:  # instrumentation suppressed for now: ask again next time
                return behavior
            traced = getattr(found, kind)
            return traced

        skips = self._skips
        if handler.response_streaming and inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                inner = behavior if skips(context) else await traced_behavior(context)
                async for response in inner(request, context):
                    yield response

            wrapped: Behavior = stream
        elif not handler.response_streaming and inspect.iscoroutinefunction(behavior):

            async def unary(request: Any, context: Context) -> Any:
                if skips(context):
                    return await behavior(request, context)
                return await (await traced_behavior(context))(request, context)

            wrapped = unary
        else:
            return handler
        return _replaced(handler, wrapped)


def call_layers(
    settings: ServerSettings,
    provider: TracerProvider,
    metrics: RpcMetrics,
    table: StatusTable,
    *,
    parented_only: bool,
) -> Layers:
    """What every handler of a server is wrapped in, outermost first: OpenTelemetry's span,
    call metrics, bearer tokens and roles (when auth is on), the error table."""
    inner_first: list[Wrap] = [ErrorLayer(table).wrap]
    auth = auth_layer(settings)  # AuthConfigError: the settings cannot work
    if auth is not None:
        inner_first.append(auth.wrap)
    inner_first.append(MetricsLayer(metrics).wrap)
    tracing = TracingLayer(provider, parented_only=parented_only)

    def wrap(method: str, handler: Handler) -> Handler:
        for layer in inner_first:
            handler = _rewrap(handler, method, layer)
        return tracing.wrap_handler(method, handler)

    return wrap


class _LayeredGeneric(GenericHandler):
    """A generic handler whose handlers come wrapped in the server's layers, each wrapped
    once (the handler a generic handler finds for a method is the same object each time)."""

    def __init__(self, inner: GenericHandler, layers: Layers) -> None:
        self._inner = inner
        self._layers = layers
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        try:
            wrapped = self._layers(method, handler)
        except TypeError:  # a method auth cannot guard: refused, never served unguarded
            log.exception("%s: refused", method)
            wrapped = _refusing(handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _refusing(handler: Handler) -> Handler:
    """A handler of the same kind as ``handler`` that answers every call INTERNAL."""
    status = rpc_status.to_status(internal_status())

    async def refuse(request: Any, context: Context) -> None:
        await context.abort_with_status(status)  # type: ignore[attr-defined]

    async def refuse_stream(request: Any, context: Context) -> AsyncIterator[Any]:
        await context.abort_with_status(status)  # type: ignore[attr-defined]
        yield  # never reached: abort raises

    return _replaced(handler, refuse_stream if handler.response_streaming else refuse)


class LayeredServer(grpc.aio.Server):
    """What a service registers its handlers on: the real server, with every handler
    wrapped in ``layers`` on the way in."""

    def __init__(self, server: grpc.aio.Server, layers: Layers) -> None:
        self._server = server
        self._layers = layers

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[GenericHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_LayeredGeneric(handler, self._layers) for handler in generic_rpc_handlers)
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, Handler]
    ) -> None:
        # grpc's aio server has it (generated stubs call it); grpc-stubs do not list it.
        self._server.add_registered_method_handlers(  # type: ignore[attr-defined]
            service_name,
            {
                name: self._layers(f"/{service_name}/{name}", handler)
                for name, handler in method_handlers.items()
            },
        )

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None = None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self._server.wait_for_termination(timeout)
