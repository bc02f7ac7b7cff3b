"""tritonclient, a real third-party client, talks to a server built by build_server on
Keel's Open Inference Protocol contract: method paths, field numbers (a float request
parameter travels as `double_param`, field 4) and error statuses all line up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from services.common.server import ServerDeps, build_server
from tests.support.probe import ProbeServicer, ProbeSettings, probe_binding
from tests.support.processes import ROOT

COMPAT_PYTHON = ROOT / ".venv-compat" / "bin" / "python"
SCRIPT = Path(__file__).resolve().parents[1] / "compat" / "tritonclient_calls.py"


async def test_tritonclient_calls_reach_the_keel_server() -> None:
    if not COMPAT_PYTHON.exists():
        pytest.skip("needs .venv-compat with tritonclient: `make .venv-compat/.installed`")
    deps = ServerDeps("probe", [probe_binding(ProbeServicer())], CollectorRegistry())
    server, port = build_server(ProbeSettings(), tracer_provider=TracerProvider(), deps=deps)
    await server.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(COMPAT_PYTHON),
            str(SCRIPT),
            f"127.0.0.1:{port}",
            "churn",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    finally:
        await server.stop(None)
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen["is_server_live"] == {"answer": True}
    assert seen["is_server_ready"] == {"answer": True}
    assert seen["is_model_ready"] == {
        "status": "StatusCode.NOT_FOUND",
        "message": "model 'churn' not found",
    }
    assert seen["infer"] == {
        "answer": {
            "model_name": "churn",
            "id": "r-1",
            "parameters": {"sleep_s": {"double_param": 0.01}},
        }
    }
