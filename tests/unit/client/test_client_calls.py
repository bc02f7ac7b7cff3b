"""The new calls' checks before any call goes out, the channel options (token, TLS
files, deadlines), and what works without the `ml` extra."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from keel.client import Keel, Prediction
from keel.client.channel import MetadataInterceptor, bearer_metadata, tls_credentials


@pytest.fixture
def keel() -> Any:
    with Keel(registry="127.0.0.1:1", inference="127.0.0.1:1", monitor="127.0.0.1:1") as client:
        yield client


def test_feedback_with_plain_ids_needs_the_model(keel: Keel) -> None:
    with pytest.raises(ValueError, match="model is required with plain prediction ids"):
        keel.feedback(["p/0", "p/1"], [0, 1])
    with pytest.raises(TypeError, match="sequence of prediction ids"):
        keel.feedback("p/0", [0], model="churn")
    with pytest.raises(ValueError, match="model name 'Churn'"):
        keel.feedback(["p/0"], [0], model="Churn")
    answer = Prediction(model="churn", version=1, id="p", ids=["p"])
    with pytest.raises(ValueError, match="these predictions are of 'churn'"):
        keel.feedback(answer, [1], model="fraud")
    assert keel._channels == {}  # nothing was sent


def test_report_arguments_are_checked_first(keel: Keel) -> None:
    with pytest.raises(ValueError, match="'firing' or 'resolved'"):
        keel.alerts("churn", state="open")
    with pytest.raises(ValueError, match="model name"):
        keel.drift("Churn")
    assert keel._channels == {}


def test_the_timeout_has_two_names() -> None:
    assert Keel(timeout=4.0).timeout_s == 4.0
    assert Keel(timeout_s=6.0).timeout == 6.0
    with pytest.raises(ValueError, match="timeout"):
        Keel(timeout_s=0)


def test_tls_files_must_exist_and_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        Keel(cert_file=tmp_path / "client.pem")
    with pytest.raises(ValueError, match="ca_file .*ca.pem"):
        Keel(ca_file=tmp_path / "ca.pem")
    assert tls_credentials() is not None  # the system's roots


def test_tokens_are_bearer_metadata() -> None:
    assert bearer_metadata("abc") == (("authorization", "Bearer abc"),)
    assert bearer_metadata(None) == () == bearer_metadata("")
    with pytest.raises(ValueError, match="token"):
        bearer_metadata("abc\nx-injected: 1")


def test_the_interceptor_adds_its_metadata_to_that_of_the_call() -> None:
    interceptor = MetadataInterceptor((("authorization", "Bearer t"),))
    seen: list[Any] = []

    class Details:
        method, timeout, credentials = "/s/M", 3.0, None
        metadata = (("x-keel-user", "dana"),)

    def proceed(details: Any, request: Any) -> str:
        seen.append(details)
        return "answer"

    assert interceptor.intercept_unary_unary(proceed, Details(), "request") == "answer"
    [details] = seen
    assert details.method == "/s/M" and details.timeout == 3.0
    assert details.metadata == (("x-keel-user", "dana"), ("authorization", "Bearer t"))


def test_reports_work_and_predict_explains_itself_without_the_ml_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        for name in ("numpy", "sklearn", "xgboost", "skops", "pandas"):
            sys.modules[name] = None  # any import of them now fails
        from keel.client import DriftResult, Keel, AlertList
        from keel.monitor.v1 import monitor_pb2, reports_pb2
        report = reports_pb2.DriftReport(
            version=2, features=[reports_pb2.FeatureDrift(feature="age", drifted=True)]
        )
        found = DriftResult.from_response("m", monitor_pb2.ComputeDriftResponse(report=report))
        assert found.to_dict()["features"][0]["drift"] is True
        with Keel() as keel:
            for call in (keel.predict, keel.explain):
                try:
                    call("m", [[1.0]])
                except ImportError as error:
                    assert "keel-client[ml]" in str(error), error
                else:
                    raise AssertionError("ran without numpy")
            try:
                keel.feedback(["p"], [1], model="m")
            except ImportError as error:
                assert "keel-client[ml]" in str(error), error
        assert not any(sys.modules.get(n) for n in ("numpy", "sklearn", "xgboost", "skops"))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
