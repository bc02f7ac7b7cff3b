"""The ``keel`` command as a user runs it, a process of its own against the suite's
three processes: gates, promotion, predictions from a CSV file, and drift failing a CI
step once the traffic has shifted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc

from keel.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from tests.support.monitor import frame, log_classifier
from tests.support.processes import ROOT, python_env
from tests.support.suite import Suite, running_suite, scope, until_counted, wait_model_ready

# The console script installed next to this interpreter, as a user's shell finds it.
KEEL = Path(sys.executable).with_name("keel")


def run_keel(suite: Suite, *args: str) -> subprocess.CompletedProcess[str]:
    """``keel ARGS`` with the suite's addresses in the environment."""
    env = python_env(
        {
            "KEEL_REGISTRY": suite.registry.address,
            "KEEL_INFERENCE": suite.inference.address,
            "KEEL_MONITOR": suite.monitor.address,
            "KEEL_USER": "dana",
        }
    )
    return subprocess.run(
        [str(KEEL), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


async def keel(suite: Suite, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_keel, suite, *args)


async def test_promote_predict_and_fail_a_ci_step_on_drift(tmp_path: Path) -> None:
    with running_suite(tmp_path) as suite:
        version = await log_classifier(suite.registry.address, "churn")

        gates = await keel(suite, "gates", "check", "churn", str(version), "--json")
        assert gates.returncode == 0, gates.stderr
        assert json.loads(gates.stdout)["allowed"] is True
        moved = await keel(suite, "alias", "set", "churn", "production", str(version), "--json")
        assert moved.returncode == 0, moved.stderr
        assert json.loads(moved.stdout)["alias"]["updated_by"] == "dana"

        async with (
            grpc.aio.insecure_channel(suite.inference.address) as inference,
            grpc.aio.insecure_channel(suite.monitor.address) as monitor,
        ):
            await wait_model_ready(oip_grpc.GRPCInferenceServiceStub(inference), "churn")
            shifted = frame(600, 3)
            shifted[["x0", "x1"]] += 1.5
            rows = tmp_path / "rows.csv"
            shifted.to_csv(rows, index=False)
            predicted = await keel(suite, "predict", "churn", "--input", str(rows), "--json")
            assert predicted.returncode == 0, predicted.stderr
            answers = json.loads(predicted.stdout)["predictions"]
            assert len(answers) == 600 and {a["version"] for a in answers} == {version}
            await until_counted(mpb_grpc.MonitorServiceStub(monitor), scope("churn"), 600)

        failed = await keel(suite, "drift", "churn", "--fail-on-drift", "--json")
        assert failed.returncode == 1, failed.stderr + suite.outputs()
        report = json.loads(failed.stdout)
        assert report["version"] == version and report["row_count"] == 600
        assert report["dataset_drift"] is True
        drifted = {f["feature"]: f["drift"] for f in report["features"]}
        assert drifted == {"x0": True, "x1": True, "x2": False, "x3": False}
        assert all(
            {"feature", "drift", "method", "statistic", "threshold"} <= set(f)
            for f in report["features"]
        )

        informative = await keel(suite, "drift", "churn")
        assert informative.returncode == 0 and "Dataset drift" in informative.stdout

        missing = await keel(suite, "versions", "show", "nope", "1")
        assert missing.returncode == 3 and missing.stdout == ""
        assert missing.stderr.startswith("keel: NOT_FOUND: ")
        assert "Traceback" not in missing.stderr and len(missing.stderr.splitlines()) == 1
