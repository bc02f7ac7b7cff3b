"""Sync gRPC channels from the client to a Keel service.

Deadlines and retries come from the channel's service config, not from loops in the
client: every method of the named services gets a default deadline and is retried on
UNAVAILABLE with exponential backoff. Methods named in ``long_methods`` (uploads whose
time grows with their size) keep the retries but take their deadline from the call;
long-lived streams named in ``streaming_methods`` get neither.

Credentials: TLS (server-verified, or mutual with a client certificate) through
``tls_credentials``; call metadata every call carries (the bearer token as
``authorization: Bearer …``, the caller's identity) through an interceptor, so it also
reaches the generated stubs used directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc


@dataclass(frozen=True)
class ChannelPolicy:
    """Deadline, retry and size defaults for the calls on one channel."""

    timeout_s: float = 30.0
    max_attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    max_message_bytes: int = 64 * 1024 * 1024


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of a ``host:port`` address (``[::1]:50051`` for IPv6)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {address!r}: expected host:port, e.g. 127.0.0.1:50051")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"address {address!r}: unbalanced brackets around an IPv6 host")
    return host, int(port)


def _method_names(methods: Sequence[str]) -> list[dict[str, str]]:
    names = []
    for full in methods:
        service, _, method = full.rpartition("/")
        if not service or not method:
            raise ValueError(f"method {full!r}: expected 'package.Service/Method'")
        names.append({"service": service, "method": method})
    return names


def service_config(
    services: Sequence[str],
    policy: ChannelPolicy,
    *,
    long_methods: Sequence[str] = (),
    streaming_methods: Sequence[str] = (),
) -> dict[str, Any]:
    """The gRPC service config for ``services`` (full names, e.g. ``keel.registry.v1.X``)."""
    retry = {
        "maxAttempts": policy.max_attempts,
        "initialBackoff": f"{policy.initial_backoff_s}s",
        "maxBackoff": f"{policy.max_backoff_s}s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    config: list[dict[str, Any]] = [
        {
            "name": [{"service": name} for name in services],
            "timeout": f"{policy.timeout_s}s",
            "retryPolicy": retry,
        }
    ]
    if long_methods:
        config.append({"name": _method_names(long_methods), "retryPolicy": retry})
    if streaming_methods:
        config.append({"name": _method_names(streaming_methods)})
    return {"methodConfig": config}


def tls_credentials(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials: the server is verified against ``ca_file`` (PEM; the system's
    roots when None); ``cert_file`` and ``key_file`` (PEM, both or neither) present a
    client certificate for mutual TLS."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("mutual TLS needs both cert_file and key_file (or neither)")

    def read(path: str | Path | None, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise ValueError(f"{what} {str(path)!r}: {error.strerror or error}") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read(ca_file, "ca_file"),
        private_key=read(key_file, "key_file"),
        certificate_chain=read(cert_file, "cert_file"),
    )


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The ``authorization`` metadata for a bearer token (none without a token)."""
    if not token:
        return ()
    if token != token.strip() or any(c in token for c in "\r\n"):
        raise ValueError("token: expected one line without surrounding spaces")
    return (("authorization", f"Bearer {token}"),)


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class _Details(_CallDetails, grpc.ClientCallDetails):
    """``ClientCallDetails`` with the added metadata (grpc's own type is abstract)."""


class MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds fixed metadata (e.g. ``authorization``) to every call on a channel."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.metadata = tuple(metadata)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        given = tuple(details.metadata or ())
        return _Details(
            details.method,
            details.timeout,
            given + self.metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: Any,
        request_iterator: Iterator[Any],
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: Any,
        request_iterator: Iterator[Any],
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


def create_channel(
    address: str,
    *,
    services: Sequence[str],
    policy: ChannelPolicy = ChannelPolicy(),
    long_methods: Sequence[str] = (),
    streaming_methods: Sequence[str] = (),
    credentials: grpc.ChannelCredentials | None = None,
    metadata: Sequence[tuple[str, str]] = (),
) -> grpc.Channel:
    """A sync channel to ``address`` (``host:port``) for calls to ``services``; every
    call on it carries ``metadata``.

    Opening a channel does not connect: the first call does (and is retried while the
    service is UNAVAILABLE, within its deadline).
    """
    parse_address(address)
    config = service_config(
        services, policy, long_methods=long_methods, streaming_methods=streaming_methods
    )
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(config)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", policy.max_message_bytes),
        ("grpc.max_send_message_length", policy.max_message_bytes),
    ]
    if credentials is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, credentials, options=options)
    if metadata:
        return grpc.intercept_channel(channel, MetadataInterceptor(metadata))
    return channel
