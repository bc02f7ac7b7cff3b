"""A service's own credentials on the channels it opens to the other services.

``with_service_token(channel, settings)`` returns ``channel`` as is when the service has
no token (``auth_service_token`` / ``auth_service_token_file`` empty), else a channel
that adds ``authorization: Bearer <token>`` to every call's metadata, stubs and direct
``channel.unary_unary(...)`` calls alike. It works on plaintext and TLS channels the
same way (gRPC call credentials would need TLS).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc

from services.common.auth import AUTHORIZATION, service_token
from services.common.settings import ServerSettings


def _with_token(metadata: Any, header: tuple[str, str]) -> tuple[tuple[str, Any], ...]:
    pairs = tuple(metadata or ())
    if any(key == AUTHORIZATION for key, _ in pairs):
        return pairs  # the call states its own credentials
    return (*pairs, header)


class _Authorized:
    """A multi-callable whose calls carry the token."""

    def __init__(self, inner: Any, header: tuple[str, str]) -> None:
        self._inner = inner
        self._header = header

    def __call__(self, request: Any = None, *args: Any, **kwargs: Any) -> Any:
        kwargs["metadata"] = _with_token(kwargs.get("metadata"), self._header)
        return self._inner(request, *args, **kwargs)


class BearerChannel(grpc.aio.Channel):
    """``inner`` with ``authorization: Bearer <token>`` on every call."""

    def __init__(self, inner: grpc.aio.Channel, token: str) -> None:
        self._inner = inner
        self._header = (AUTHORIZATION, f"Bearer {token}")

    def _authorized(self, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return _Authorized(factory(*args, **kwargs), self._header)

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._authorized(self._inner.unary_unary, *args, **kwargs)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._authorized(self._inner.unary_stream, *args, **kwargs)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._authorized(self._inner.stream_unary, *args, **kwargs)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._authorized(self._inner.stream_stream, *args, **kwargs)

    async def close(self, grace: float | None = None) -> None:
        await self._inner.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._inner.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._inner.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._inner.channel_ready()

    async def __aenter__(self) -> BearerChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close(None)


def with_service_token(channel: grpc.aio.Channel, settings: ServerSettings) -> grpc.aio.Channel:
    """``channel`` sending this service's token, if it has one."""
    token = service_token(settings)
    return BearerChannel(channel, token) if token else channel
