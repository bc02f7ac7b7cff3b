"""TLS and mutual TLS on real in-process servers, with a CA made for the test: a TLS
server answers a TLS client (health checks included) and refuses plaintext; mutual TLS
refuses a client without a certificate or with one from another CA; inference calls
the registry and the monitor over mutual TLS (a prediction reaches the monitor), as
does the Python client; an unusable TLS file is a one-line error naming its setting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from keel.client import Keel, Unavailable
from keel.monitor.v1 import monitor_pb2_grpc
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from services.common.server import ServerDeps, build_server
from services.common.settings import ServerSettings
from services.common.tls import TlsError, channel_credentials, server_credentials
from services.inference.service import serving_stack
from services.inference.settings import InferenceSettings
from services.monitor.service import open_monitor
from services.monitor.settings import MonitorSettings
from services.registry.service import open_registry
from services.registry.settings import RegistrySettings
from tests.support.certificates import Certificates, KeyPair, make_certificates
from tests.support.inference import raw_request
from tests.support.probe import ProbeServicer, ProbeSettings, probe_binding
from tests.support.registry import Client, rpc_error, xgboost_artifact
from tests.support.suite import until_logged, wait_model_ready

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def tls_settings(certs: Certificates, *, mutual: bool = True, **more: Any) -> dict[str, Any]:
    """A service's TLS settings: its certificate, the test CA, mutual TLS or not."""
    return {
        "tls_cert_file": str(certs.service.cert),
        "tls_key_file": str(certs.service.key),
        "tls_ca_file": str(certs.ca),
        "tls_require_client_cert": mutual,
        **more,
    }


def credentials(ca: Path, pair: KeyPair | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=pair.key.read_bytes() if pair else None,
        certificate_chain=pair.cert.read_bytes() if pair else None,
    )


@asynccontextmanager
async def serving(
    settings: ServerSettings,
    deps: AbstractAsyncContextManager[ServerDeps],
    provider: TracerProvider,
) -> AsyncIterator[str]:
    """Build, bind and start the server of ``deps`` (an ``open_*`` context); its address."""
    async with deps as opened:
        server, port = build_server(settings, tracer_provider=provider, deps=opened)
        await server.start()
        try:
            yield f"127.0.0.1:{port}"
        finally:
            await server.stop(None)


def registry_settings(tmp: Path, **tls: Any) -> RegistrySettings:
    return RegistrySettings(
        port=0,
        metrics_port=None,
        data_dir=tmp / "registry",
        database_url=f"sqlite:///{tmp / 'r.db'}",
        event_poll_s=0.05,
        **tls,
    )


@asynccontextmanager
async def tls_registry(tmp: Path, **tls: Any) -> AsyncIterator[str]:
    settings = registry_settings(tmp, **tls)
    provider = TracerProvider()
    opened = open_registry(settings, provider, CollectorRegistry())
    async with serving(settings, opened, provider) as address:
        yield address


async def health(address: str, creds: grpc.ChannelCredentials | None) -> int:
    """The server's health status over a channel with ``creds`` (None: plaintext)."""
    channel = (
        grpc.aio.insecure_channel(address)
        if creds is None
        else grpc.aio.secure_channel(address, creds)
    )
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(reply.status)


async def create_model(address: str, creds: grpc.ChannelCredentials, name: str) -> str:
    async with grpc.aio.secure_channel(address, creds) as channel:
        return (await Client(channel).create_model(name)).name


# One server, several clients -------------------------------------------------------------
async def test_tls_server_answers_a_tls_client_and_health_checks(
    certs: Certificates, tmp_path: Path
) -> None:
    async with tls_registry(tmp_path, **tls_settings(certs, mutual=False)) as address:
        trusting = credentials(certs.ca)
        assert await create_model(address, trusting, "churn") == "models/churn"
        assert await health(address, trusting) == health_pb2.HealthCheckResponse.SERVING


async def test_plaintext_and_untrusting_clients_are_refused(
    certs: Certificates, tmp_path: Path
) -> None:
    async with tls_registry(tmp_path, **tls_settings(certs, mutual=False)) as address:
        for creds in (None, credentials(certs.rogue_ca)):
            error = await rpc_error(health(address, creds))
            assert error.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("certificate", ["none", "rogue CA's"])
async def test_mutual_tls_refuses_a_client_without_a_good_certificate(
    certs: Certificates, tmp_path: Path, certificate: str
) -> None:
    pair = None if certificate == "none" else certs.rogue_client
    async with tls_registry(tmp_path, **tls_settings(certs)) as address:
        error = await rpc_error(create_model(address, credentials(certs.ca, pair), "churn"))
        assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_accepts_a_certificate_of_the_ca(
    certs: Certificates, tmp_path: Path
) -> None:
    async with tls_registry(tmp_path, **tls_settings(certs)) as address:
        good = credentials(certs.ca, certs.client)
        assert await create_model(address, good, "churn") == "models/churn"
        assert await health(address, good) == health_pb2.HealthCheckResponse.SERVING


# The suite over mutual TLS ---------------------------------------------------------------
@dataclass(frozen=True)
class Suite:
    registry: str
    monitor: str
    inference: str


@pytest.fixture
async def mtls_suite(certs: Certificates, tmp_path: Path) -> AsyncIterator[Suite]:
    """Registry, monitor and inference, each requiring client certificates of the test CA;
    ``churn`` version 1 (XGBoost) in production. The monitor presents its own service
    certificate to the registry; inference presents the separate client certificate."""
    provider = TracerProvider()
    good = credentials(certs.ca, certs.client)
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(tls_registry(tmp_path, **tls_settings(certs)))
        async with grpc.aio.secure_channel(registry, good) as channel:
            client = Client(channel)
            await client.create_model("churn")
            await client.register("churn", xgboost_artifact(trees=5))
            await client.set_alias("churn", "production", 1)
        monitor_settings = MonitorSettings(
            port=0,
            metrics_port=None,
            data_dir=tmp_path / "monitor",
            database_url=f"sqlite:///{tmp_path / 'm.db'}",
            registry_address=registry,
            guard_refresh_s=0.2,
            **tls_settings(certs),
        )
        monitor = await stack.enter_async_context(
            serving(
                monitor_settings,
                open_monitor(monitor_settings, provider, CollectorRegistry()),
                provider,
            )
        )
        inference_settings = InferenceSettings(
            port=0,
            metrics_port=None,
            data_dir=tmp_path / "inference",
            registry_address=registry,
            registry_retry_s=0.2,
            monitor_address=monitor,
            prediction_log_flush_s=0.05,
            **tls_settings(
                certs,
                tls_client_cert_file=str(certs.client.cert),
                tls_client_key_file=str(certs.client.key),
            ),
        )
        inference = await stack.enter_async_context(
            serving(
                inference_settings,
                serving_stack(inference_settings, provider, CollectorRegistry()),
                provider,
            )
        )
        yield Suite(registry, monitor, inference)


async def test_a_prediction_goes_through_inference_to_the_monitor_over_mutual_tls(
    certs: Certificates, mtls_suite: Suite
) -> None:
    good = credentials(certs.ca, certs.client)
    async with (
        grpc.aio.secure_channel(mtls_suite.inference, good) as inference_channel,
        grpc.aio.secure_channel(mtls_suite.monitor, good) as monitor_channel,
    ):
        inference = oip_grpc.GRPCInferenceServiceStub(inference_channel)
        await wait_model_ready(inference, "churn", timeout_s=30)  # inference ← registry
        rows = np.array([[1.0, 0.5, -0.2, 0.0]], dtype=np.float32)
        reply = await inference.ModelInfer(raw_request("churn", rows, request_id="r-1"), timeout=10)
        assert (reply.model_name, reply.model_version) == ("churn", "1")
        monitor = monitor_pb2_grpc.MonitorServiceStub(monitor_channel)
        record = await until_logged(monitor, "churn", "r-1")  # inference → monitor
    assert (record.row.model, record.row.version, record.row.row_count) == ("models/churn", 1, 1)


def client_session(suite: Suite, certs: Certificates) -> Iterator[str]:
    """What the Python client sees with and without its certificate (runs in a thread:
    the servers share the test's event loop)."""
    with Keel(
        suite.registry,
        suite.inference,
        suite.monitor,
        tls=True,
        ca_file=certs.ca,
        cert_file=certs.client.cert,
        key_file=certs.client.key,
        timeout_s=30,
    ) as keel:
        yield keel.registry.get_model("churn").name
        keel.wait_ready("churn")
        prediction = keel.predict("churn", np.array([[0.3, -1.0, 0.2, 0.1]], dtype=np.float32))
        yield prediction.ids[0]
    with Keel(suite.registry, tls=True, ca_file=certs.ca, timeout_s=3) as anonymous:
        try:
            anonymous.registry.get_model("churn")
        except Unavailable as error:
            yield type(error).__name__


async def test_python_client_with_tls_files_talks_to_mutual_tls_services(
    certs: Certificates, mtls_suite: Suite
) -> None:
    steps = await asyncio.to_thread(lambda: list(client_session(mtls_suite, certs)))
    assert steps[0] == "models/churn"
    assert steps[2:] == ["Unavailable"]
    good = credentials(certs.ca, certs.client)
    async with grpc.aio.secure_channel(mtls_suite.monitor, good) as channel:
        monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
        record = await until_logged(monitor, "churn", steps[1])
    assert (record.row.model, record.row.version) == ("models/churn", 1)


# Unusable settings -----------------------------------------------------------------------
def unusable(certs: Certificates, tmp: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Settings that cannot work, and the one line that says why."""
    empty = tmp / "empty.pem"
    empty.write_text("")
    missing = tmp / "missing.pem"
    return {
        "missing certificate": (
            tls_settings(certs, tls_cert_file=str(missing)),
            f"KEEL_PROBE_TLS_CERT_FILE '{missing}': No such file or directory",
        ),
        "key of another certificate": (
            tls_settings(certs, tls_key_file=str(certs.client.key)),
            f"KEEL_PROBE_TLS_KEY_FILE '{certs.client.key}' is not the key of "
            f"KEEL_PROBE_TLS_CERT_FILE '{certs.service.cert}'",
        ),
        "certificate without key": (
            tls_settings(certs, tls_key_file=""),
            "KEEL_PROBE_TLS_CERT_FILE and KEEL_PROBE_TLS_KEY_FILE go together: set both or neither",
        ),
        "client certificates without a CA": (
            tls_settings(certs, tls_ca_file=""),
            "KEEL_PROBE_TLS_REQUIRE_CLIENT_CERT needs KEEL_PROBE_TLS_CA_FILE to verify client "
            "certificates against",
        ),
        "empty CA file": (
            tls_settings(certs, tls_ca_file=str(empty)),
            f"KEEL_PROBE_TLS_CA_FILE '{empty}': the file is empty",
        ),
        "CA file that is a key": (
            tls_settings(certs, tls_ca_file=str(certs.ca.with_name("client.key"))),
            f"KEEL_PROBE_TLS_CA_FILE '{certs.ca.with_name('client.key')}': expected PEM CA "
            "certificates",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing certificate",
        "key of another certificate",
        "certificate without key",
        "client certificates without a CA",
        "empty CA file",
        "CA file that is a key",
    ],
)
def test_an_unusable_tls_setting_is_one_line_naming_it(
    certs: Certificates, tmp_path: Path, case: str
) -> None:
    fields, message = unusable(certs, tmp_path)[case]
    with pytest.raises(TlsError) as caught:
        server_credentials(ProbeSettings(**fields))
    assert str(caught.value) == message


async def test_build_server_refuses_to_start_with_an_unusable_certificate(
    certs: Certificates, tmp_path: Path
) -> None:
    settings = ProbeSettings(**tls_settings(certs, tls_key_file=str(certs.client.key)))
    deps = ServerDeps("probe", [probe_binding(ProbeServicer())], CollectorRegistry())
    with pytest.raises(TlsError, match="is not the key of"):
        build_server(settings, tracer_provider=TracerProvider(), deps=deps)


def test_peers_are_called_with_the_service_certificate_unless_a_client_one_is_given(
    certs: Certificates,
) -> None:
    assert channel_credentials(ProbeSettings()) is None
    assert channel_credentials(ProbeSettings(tls_ca_file=str(certs.ca))) is not None
    assert channel_credentials(ProbeSettings(**tls_settings(certs))) is not None
    with pytest.raises(TlsError, match="TLS_CLIENT_CERT_FILE and KEEL_PROBE_TLS_CLIENT_KEY"):
        channel_credentials(
            ProbeSettings(**tls_settings(certs, tls_client_cert_file=str(certs.client.cert)))
        )
