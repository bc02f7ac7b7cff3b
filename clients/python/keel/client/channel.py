"""Sync gRPC channels from the client to a Keel service.

Deadlines and retries come from the channel's service config, not from loops in the
client: every method of the named services gets a default deadline and is retried on
UNAVAILABLE with exponential backoff. Methods named in ``long_methods`` (uploads whose
time grows with their size) keep the retries but take their deadline from the call;
long-lived streams named in ``streaming_methods`` get neither.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def create_channel(
    address: str,
    *,
    services: Sequence[str],
    policy: ChannelPolicy = ChannelPolicy(),
    long_methods: Sequence[str] = (),
    streaming_methods: Sequence[str] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.Channel:
    """A sync channel to ``address`` (``host:port``) for calls to ``services``.

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
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)
