"""What goes over the client's channels, seen from a real gRPC server: the bearer token
and the caller's identity on every call, mutual TLS with a private CA, and typed
exceptions for what the server answers."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from keel.client import DeadlineExceeded, Keel, Unauthenticated, Unavailable
from keel.oip.v2 import open_inference_pb2 as oip

pytestmark = pytest.mark.integration
METHOD = "/inference.GRPCInferenceService/ModelReady"


@dataclass
class Recorder:
    """Answers ModelReady (ready, or UNAUTHENTICATED without a token) and keeps the
    metadata of every call."""

    seen: list[dict[str, str]] = field(default_factory=list)

    def ready(self, request: oip.ModelReadyRequest, context: grpc.ServicerContext) -> Any:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.seen.append(metadata)
        if "authorization" not in metadata:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no bearer token")
        return oip.ModelReadyResponse(ready=True)


@dataclass(frozen=True)
class Served:
    address: str
    recorder: Recorder


def serve(credentials: grpc.ServerCredentials | None = None) -> Iterator[Served]:
    recorder = Recorder()
    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {
            "ModelReady": grpc.unary_unary_rpc_method_handler(
                recorder.ready,
                request_deserializer=oip.ModelReadyRequest.FromString,
                response_serializer=oip.ModelReadyResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield Served(f"127.0.0.1:{port}", recorder)
    finally:
        server.stop(None)


@pytest.fixture
def plain() -> Iterator[Served]:
    yield from serve()


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def issue(folder: Path, name: str, san: str) -> tuple[Path, Path]:
    """A key and a certificate for ``name`` signed by the CA in ``folder``."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", *curve, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    extensions = folder / f"{name}.ext"
    extensions.write_text(f"subjectAltName={san}\n")
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(folder / "ca.pem"), "-CAkey",
        str(folder / "ca.key"), "-CAcreateserial", "-out", str(cert), "-days", "1",
        "-extfile", str(extensions),
    )  # fmt: skip
    return key, cert


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *curve, "-keyout", str(tmp_path / "ca.key"), "-out",
        str(tmp_path / "ca.pem"), "-days", "1", "-subj", "/CN=keel-test-ca",
    )  # fmt: skip
    issue(tmp_path, "server", "IP:127.0.0.1")
    issue(tmp_path, "client", "DNS:dana")
    return tmp_path


def test_every_call_carries_the_token_and_the_identity(plain: Served) -> None:
    with Keel(inference=plain.address, user="dana", token="t0k3n", timeout_s=5) as keel:
        keel.wait_ready("churn")
        keel.wait_ready("churn", version=2)
    assert len(plain.recorder.seen) == 2
    for metadata in plain.recorder.seen:
        assert metadata["authorization"] == "Bearer t0k3n"
        assert metadata["x-keel-user"] == "dana"


def test_a_refusal_arrives_as_its_typed_exception(
    plain: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEL_TOKEN", raising=False)
    with Keel(inference=plain.address, timeout_s=5) as keel:
        with pytest.raises(Unauthenticated, match="no bearer token") as refused:
            keel.wait_ready("churn")
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_mutual_tls_with_a_private_ca(certificates: Path) -> None:
    credentials = grpc.ssl_server_credentials(
        [((certificates / "server.key").read_bytes(), (certificates / "server.pem").read_bytes())],
        root_certificates=(certificates / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    for served in serve(credentials):
        ca = certificates / "ca.pem"
        with Keel(
            inference=served.address,
            token="t",
            timeout_s=5,
            ca_file=ca,
            cert_file=certificates / "client.pem",
            key_file=certificates / "client.key",
        ) as keel:
            keel.wait_ready("churn")  # tls is implied by the files
        assert served.recorder.seen[0]["authorization"] == "Bearer t"
        without_cert = Keel(inference=served.address, token="t", tls=True, ca_file=ca, timeout_s=2)
        with without_cert, pytest.raises((Unavailable, DeadlineExceeded)):  # retried, then
            without_cert.wait_ready("churn")
        assert len(served.recorder.seen) == 1
