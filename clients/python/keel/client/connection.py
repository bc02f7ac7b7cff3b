"""The connections every call of ``Keel`` goes through: one lazily opened channel per
service (deadline and retries from the service config, TLS, the bearer token and the
caller's identity on every call), the RPC clients on them, and the caches the calls
share. ``Keel`` adds the calls themselves (``keel.py`` and the ``calls_*`` modules).
"""

from __future__ import annotations

import getpass
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import grpc

from keel.client.channel import (
    ChannelPolicy,
    bearer_metadata,
    create_channel,
    parse_address,
    tls_credentials,
)
from keel.client.inference import SERVICES as INFERENCE_SERVICES
from keel.client.inference import InferenceClient
from keel.client.monitoring import SERVICE as MONITOR_SERVICE
from keel.client.monitoring import STREAMING_METHODS as MONITOR_STREAMS
from keel.client.monitoring import MonitorClient
from keel.client.registry import (
    DOWNLOAD_METHOD,
    IDENTITY_HEADER,
    SERVICE,
    UPLOAD_METHOD,
    WATCH_METHOD,
    RegistryClient,
)
from keel.client.results import ServedVersion

if TYPE_CHECKING:
    from keel.client.tensors import Layout

DEFAULT_REGISTRY = "127.0.0.1:50051"
DEFAULT_INFERENCE = "127.0.0.1:50052"
DEFAULT_MONITOR = "127.0.0.1:50053"
DEFAULT_TIMEOUT_S = 30.0
_MODEL_ID = re.compile(r"[a-z0-9-]{1,63}")

PathLike = str | Path


def check_model_id(name: str) -> None:
    if not _MODEL_ID.fullmatch(name):
        raise ValueError(f"model name {name!r}: expected 1-63 of a-z, 0-9 and '-'")


def needs_ml(call: str, error: ImportError) -> ImportError:
    """The ImportError of a call that needs the `ml` extra."""
    return ImportError(f"{call} needs the ML extra: pip install 'keel-client[ml]' ({error})")


class Connection:
    """A client of one Keel installation (addresses are ``host:port``; the defaults are
    a local ``keel up``).

    ``user`` is who the registry records as author and actor (default ``$KEEL_USER``,
    else the login name). ``token`` (default ``$KEEL_TOKEN``) is sent on every call as
    ``authorization: Bearer <token>``. ``tls`` turns TLS on, verifying the servers
    against ``ca_file`` (PEM; the system's roots when None); ``cert_file`` and
    ``key_file`` add a client certificate (mutual TLS). Giving any of the files implies
    ``tls``. ``timeout_s`` is every call's deadline (``timeout`` is its older name).
    """

    def __init__(
        self,
        registry: str = DEFAULT_REGISTRY,
        inference: str = DEFAULT_INFERENCE,
        monitor: str = DEFAULT_MONITOR,
        *,
        user: str | None = None,
        token: str | None = None,
        tls: bool = False,
        ca_file: PathLike | None = None,
        cert_file: PathLike | None = None,
        key_file: PathLike | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        timeout: float | None = None,
    ) -> None:
        for address in (registry, inference, monitor):
            parse_address(address)
        timeout_s = timeout if timeout is not None else timeout_s
        if timeout_s <= 0:
            raise ValueError(f"timeout {timeout_s}: expected a positive number of seconds")
        self.addresses = {"registry": registry, "inference": inference, "monitor": monitor}
        self.timeout = timeout_s
        self.user = user or os.environ.get("KEEL_USER") or getpass.getuser()
        self._auth = bearer_metadata(token or os.environ.get("KEEL_TOKEN"))
        self._identity = ((IDENTITY_HEADER, self.user),)
        self._credentials = (
            tls_credentials(ca_file, cert_file, key_file)
            if tls or ca_file or cert_file or key_file
            else None
        )
        self._channels: dict[str, grpc.Channel] = {}
        self._registry: RegistryClient | None = None
        self._inference: InferenceClient | None = None
        self._monitor: MonitorClient | None = None
        self._layouts: dict[tuple[str, str], Layout] = {}
        self._served: dict[tuple[str, int], ServedVersion] = {}
        self._labels: dict[str, tuple[bool, tuple[str, ...]]] = {}
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def timeout_s(self) -> float:
        return self.timeout

    # Connections

    def _channel(
        self,
        role: str,
        services: Sequence[str],
        *,
        long_methods: Sequence[str] = (),
        streaming_methods: Sequence[str] = (),
    ) -> grpc.Channel:
        """The channel to the ``role`` service (``registry``, ``inference``, ``monitor``)."""
        if role not in self._channels:
            # The registry client states the identity itself, on each call.
            metadata = self._auth if role == "registry" else self._auth + self._identity
            self._channels[role] = create_channel(
                self.addresses[role],
                services=services,
                policy=ChannelPolicy(timeout_s=self.timeout),
                long_methods=long_methods,
                streaming_methods=streaming_methods,
                credentials=self._credentials,
                metadata=metadata,
            )
        return self._channels[role]

    def _registry_channel(self) -> grpc.Channel:
        return self._channel(
            "registry",
            [SERVICE],
            long_methods=[UPLOAD_METHOD, DOWNLOAD_METHOD],
            streaming_methods=[WATCH_METHOD],
        )

    @property
    def registry(self) -> RegistryClient:
        """The registry's RPCs (channel opened on first use)."""
        if self._registry is None:
            self._registry = RegistryClient.on_channel(
                self._registry_channel(), timeout=self.timeout, user=self.user
            )
        return self._registry

    @property
    def inference(self) -> InferenceClient:
        """The inference service's RPCs (channel opened on first use)."""
        if self._inference is None:
            channel = self._channel("inference", INFERENCE_SERVICES)
            self._inference = InferenceClient(channel, timeout=self.timeout)
        return self._inference

    @property
    def monitor(self) -> MonitorClient:
        """The monitor's RPCs (channel opened on first use)."""
        if self._monitor is None:
            channel = self._channel("monitor", [MONITOR_SERVICE], streaming_methods=MONITOR_STREAMS)
            self._monitor = MonitorClient(channel, timeout=self.timeout)
        return self._monitor

    def close(self) -> None:
        """Closes every open channel; the object can be used again (channels reopen)."""
        channels, self._channels = self._channels, {}
        self._registry = self._inference = self._monitor = None
        for channel in channels.values():
            channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
