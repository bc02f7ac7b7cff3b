"""Client channels from one Keel service to another.

Every channel carries OpenTelemetry's client interceptors (so one trace spans the
services), a default deadline and a retry policy on UNAVAILABLE, both from the channel's
service config rather than hand-written loops. Long-lived streams (``WatchEvents``,
``LogPredictions``) are named in ``streaming_methods`` and get no default deadline.
A service passes ``credentials=channel_credentials(settings)`` (``services.common.tls``):
TLS, and mutual TLS with its client certificate, whenever its settings name TLS files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import TracerProvider


@dataclass(frozen=True)
class ChannelPolicy:
    """Deadline and retry defaults for the calls on one channel."""

    timeout_s: float = 10.0
    max_attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    max_message_bytes: int = 64 * 1024 * 1024


def service_config(
    services: Sequence[str], streaming_methods: Sequence[str], policy: ChannelPolicy
) -> dict[str, Any]:
    """A gRPC service config: deadline + retries for ``services``; the named
    ``Service/Method`` streams get neither (a retried stream would replay its messages)."""
    retry = {
        "maxAttempts": policy.max_attempts,
        "initialBackoff": f"{policy.initial_backoff_s}s",
        "maxBackoff": f"{policy.max_backoff_s}s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    streams = [
        {"service": full.rsplit("/", 1)[0], "method": full.rsplit("/", 1)[1]}
        for full in streaming_methods
    ]
    config: list[dict[str, Any]] = [
        {
            "name": [{"service": name} for name in services],
            "timeout": f"{policy.timeout_s}s",
            "retryPolicy": retry,
        }
    ]
    if streams:
        config.append({"name": streams})
    return {"methodConfig": config}


def create_channel(
    target: str,
    *,
    tracer_provider: TracerProvider,
    services: Sequence[str],
    streaming_methods: Sequence[str] = (),
    policy: ChannelPolicy = ChannelPolicy(),
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    """An aio channel to ``target`` (``host:port``) for calls to ``services``."""
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(service_config(services, streaming_methods, policy))),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", policy.max_message_bytes),
        ("grpc.max_send_message_length", policy.max_message_bytes),
    ]
    interceptors = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=tracer_provider
    )
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
