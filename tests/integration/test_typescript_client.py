"""Another team's Node service calls Keel through the generated TypeScript stubs and
Connect's gRPC transport (clients/typescript/test/interop.ts): the live registry
(ListModels, GetModel, GetAlias) and inference (ServerReady, ModelMetadata, a raw FP32
ModelInfer, keel.inference.v1 GetServedModel), and a NOT_FOUND status on each. Also:
`make lint`'s staleness check covers the TypeScript stubs."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost

from tests.support.inference import churn_in_production, running_inference
from tests.support.processes import ROOT
from tests.support.registry import training_data, xgboost_artifact

TS = ROOT / "clients" / "typescript"
PROGRAM = TS / "dist" / "test" / "interop.js"
TSC = ROOT / "node_modules" / ".bin" / "tsc"


def compiled_program(node: str) -> Path:
    """The Node program, compiled by `make ts` or here if a source changed since then."""
    sources = [*TS.glob("src/**/*.ts"), *TS.glob("test/**/*.ts"), TS / "tsconfig.json"]
    newest = max(path.stat().st_mtime for path in sources)
    if PROGRAM.exists() and PROGRAM.stat().st_mtime >= newest:
        return PROGRAM
    if not TSC.exists():
        pytest.fail(f"{TSC} is missing: run `make ts` (npm ci, then tsc)")
    built = subprocess.run(
        [node, str(TSC), "-p", str(TS)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return PROGRAM


async def run_node(node: str, program: Path, *args: str) -> dict[str, Any]:
    """Runs the program as a subprocess while this event loop keeps serving."""
    proc = await asyncio.create_subprocess_exec(
        node,
        str(program),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    seen: dict[str, Any] = json.loads(out)
    return seen


async def test_node_program_calls_live_registry_and_inference(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs Node.js (`node` on PATH) to run the TypeScript client")
    program = compiled_program(node)
    rows = training_data()[0][:8]  # both classes
    async with churn_in_production(tmp_path) as (_, registry_port):
        async with running_inference(registry_port, tmp_path / "inference") as inference:
            seen = await run_node(
                node,
                program,
                f"127.0.0.1:{registry_port}",
                inference.address,
                "churn",
                json.dumps(rows.tolist()),
            )

    registry = seen["registry"]
    assert registry["models"] == ["models/churn"]
    assert registry["model"] == {"name": "models/churn", "latestVersion": 1}
    assert registry["production"] == 1
    assert registry["missing"]["code"] == "NotFound"
    assert "no-such-model" in registry["missing"]["message"]

    served = seen["inference"]
    assert served["serverReady"] is True
    assert served["metadata"]["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": [-1, 4]}
    ]
    assert [(t["name"], t["datatype"]) for t in served["metadata"]["outputs"]] == [
        ("label", "INT64"),
        ("probabilities", "FP32"),
    ]
    infer = served["infer"]
    assert (infer["modelName"], infer["modelVersion"], infer["id"]) == ("churn", "1", "ts-1")
    shapes = {t["name"]: (t["datatype"], t["shape"]) for t in infer["outputs"]}
    assert shapes == {"label": ("INT64", [8]), "probabilities": ("FP32", [8, 2])}
    booster = xgboost.Booster()
    booster.load_model(bytearray(xgboost_artifact(trees=5).data))
    positive = np.asarray(booster.inplace_predict(rows))
    probabilities = np.array(infer["probabilities"])
    np.testing.assert_allclose(probabilities[:, 1], positive, atol=1e-5)
    np.testing.assert_allclose(probabilities[:, 0], 1 - positive, atol=1e-5)
    assert infer["label"] == (positive > 0.5).astype(int).tolist()
    assert set(infer["label"]) == {0, 1}
    assert served["served"] == [{"model": "churn", "version": 1, "alias": "production"}]
    assert served["unknownModel"]["code"] == "NotFound"


def protos_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "tools/protos.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stale_or_hand_edited_typescript_stubs_are_reported(tmp_path: Path) -> None:
    if not (ROOT / "node_modules" / ".bin" / "buf").exists():
        pytest.fail("node_modules/.bin/buf is missing: run `make tools-js` (npm ci)")
    out = tmp_path / "gen"
    assert protos_tool("--ts-out", str(out)).returncode == 0
    assert protos_tool("--check", "--ts-out", str(out)).returncode == 0
    stub = out / "keel" / "registry" / "v1" / "registry_pb.ts"
    stub.write_text(stub.read_text() + "// edited by hand\n")
    (out / "keel" / "common" / "v1" / "metric_pb.ts").unlink()
    result = protos_tool("--check", "--ts-out", str(out))
    assert result.returncode == 1
    assert str(stub) in result.stderr
    assert "metric_pb.ts" in result.stderr
