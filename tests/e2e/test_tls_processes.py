"""The suite as processes with mutual TLS everywhere, configured only through
``KEEL_<SERVICE>_TLS_*`` variables as an operator would: a request through inference is
logged by the monitor (inference → registry, inference → monitor and monitor → registry
all over mutual TLS), and a service given an unusable certificate says so in one line
and exits with 1."""

from __future__ import annotations

import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

import grpc
import numpy as np
import pytest

from keel.monitor.v1 import monitor_pb2_grpc
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from tests.support.certificates import Certificates, make_certificates
from tests.support.inference import raw_request
from tests.support.processes import ROOT, python_env, serve_argv
from tests.support.registry import Client, xgboost_artifact
from tests.support.suite import Suite, running_suite, until_logged, wait_model_ready


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "tls")


def tls_env(name: str, certs: Certificates) -> dict[str, str]:
    prefix = f"KEEL_{name.upper()}_TLS_"
    return {
        f"{prefix}CERT_FILE": str(certs.service.cert),
        f"{prefix}KEY_FILE": str(certs.service.key),
        f"{prefix}CA_FILE": str(certs.ca),
        f"{prefix}REQUIRE_CLIENT_CERT": "true",
    }


def mtls_suite(tmp: Path, certs: Certificates) -> AbstractContextManager[Suite]:
    return running_suite(tmp, env_for=lambda name: tls_env(name, certs))


def credentials(certs: Certificates) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(),
        private_key=certs.client.key.read_bytes(),
        certificate_chain=certs.client.cert.read_bytes(),
    )


async def test_a_request_through_inference_is_logged_by_the_monitor_over_mutual_tls(
    tmp_path: Path, certs: Certificates
) -> None:
    good = credentials(certs)
    with mtls_suite(tmp_path, certs) as suite:
        async with grpc.aio.secure_channel(suite.registry.address, good) as channel:
            registry = Client(channel)
            await registry.create_model("churn")
            await registry.register("churn", xgboost_artifact(trees=5))
            await registry.set_alias("churn", "production", 1)
        async with (
            grpc.aio.secure_channel(suite.inference.address, good) as inference_channel,
            grpc.aio.secure_channel(suite.monitor.address, good) as monitor_channel,
            grpc.aio.insecure_channel(suite.inference.address) as plaintext,
        ):
            inference = oip_grpc.GRPCInferenceServiceStub(inference_channel)
            await wait_model_ready(inference, "churn", timeout_s=60)
            rows = np.array([[0.4, -0.3, 1.2, 0.0]], dtype=np.float32)
            request = raw_request("churn", rows, request_id="tls-1")
            reply = await inference.ModelInfer(request, timeout=10)
            assert (reply.model_name, reply.model_version) == ("churn", "1")
            monitor = monitor_pb2_grpc.MonitorServiceStub(monitor_channel)
            record = await until_logged(monitor, "churn", "tls-1", timeout_s=60)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await oip_grpc.GRPCInferenceServiceStub(plaintext).ModelInfer(request, timeout=5)
        assert (record.row.model, record.row.version) == ("models/churn", 1)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        logs = suite.outputs()
    assert "Traceback" not in logs, logs


def start_failing(tmp: Path, name: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``keel <name> serve`` that is expected to exit; its code and output."""
    done = subprocess.run(
        serve_argv(name, tmp / name, tmp / f"{name}.json"),
        cwd=ROOT,
        env=python_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["registry", "inference"])
def test_an_unusable_certificate_stops_the_service_with_one_line(
    tmp_path: Path, certs: Certificates, name: str
) -> None:
    prefix = f"KEEL_{name.upper()}_"
    missing = tmp_path / "gone.pem"
    cases = {
        "missing": (
            {f"{prefix}TLS_CERT_FILE": str(missing)},
            f"keel: {name} cannot start: {prefix}TLS_CERT_FILE '{missing}': "
            "No such file or directory",
        ),
        "mismatched": (
            {f"{prefix}TLS_KEY_FILE": str(certs.client.key)},
            f"keel: {name} cannot start: {prefix}TLS_KEY_FILE '{certs.client.key}' is not "
            f"the key of {prefix}TLS_CERT_FILE '{certs.service.cert}'",
        ),
    }
    for change, expected in cases.values():
        code, output = start_failing(tmp_path, name, {**tls_env(name, certs), **change})
        assert code == 1, output
        assert output.splitlines()[-1] == expected, output
        assert "Traceback" not in output
        assert not (tmp_path / f"{name}.json").exists()
