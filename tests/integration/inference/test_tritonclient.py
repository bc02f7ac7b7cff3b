"""tritonclient, a real third-party client in its own venv, against Keel's inference
service following a real registry: live, ready, metadata, raw FP32 inference, a BYTES
column, a wrong shape, statistics, repository index, unload and load."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from keel.common.v1 import schema_pb2
from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.inference import churn_in_production, running_inference
from tests.support.processes import ROOT
from tests.support.registry import Artifact, Client, xgboost_artifact

COMPAT_PYTHON = ROOT / ".venv-compat" / "bin" / "python"
SCRIPT = ROOT / "tests" / "compat" / "tritonclient_inference.py"
PLANS = ["basic", "pro", "pr\u00e9mium"]


def plans_model() -> tuple[Artifact, object]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"plan": rng.choice(PLANS, 300), "age": rng.uniform(18, 80, 300).astype(np.float32)}
    )
    target = ((frame["plan"] != "basic") & (frame["age"] > 40)).astype(int)
    encode = ColumnTransformer(
        [("plan", OneHotEncoder(categories=[PLANS]), ["plan"])], remainder="passthrough"
    )
    model = make_pipeline(encode, LogisticRegression()).fit(frame, target)
    artifact = Artifact(skops.io.dumps(model), model_pb2.FLAVOR_SKLEARN, ("plan", "age"))
    return artifact, model


async def register_plans(registry: Client, artifact: Artifact) -> None:
    await registry.create_model("plans")
    await registry.upload(artifact)
    signature = schema_pb2.Signature(
        inputs=[
            schema_pb2.Feature(
                name="plan",
                dtype=schema_pb2.DATA_TYPE_STRING,
                kind=schema_pb2.FEATURE_KIND_CATEGORICAL,
                required=True,
                categories=PLANS,
            ),
            schema_pb2.Feature(
                name="age",
                dtype=schema_pb2.DATA_TYPE_FLOAT32,
                kind=schema_pb2.FEATURE_KIND_NUMERIC,
                required=True,
            ),
        ],
        class_labels=["0", "1"],
    )
    version = model_pb2.ModelVersion(
        flavor=model_pb2.FLAVOR_SKLEARN,
        artifact=model_pb2.Artifact(sha256=artifact.sha256),
        signature=signature,
    )
    await registry.stub.CreateModelVersion(
        pb.CreateModelVersionRequest(parent="models/plans", model_version=version)
    )
    await registry.set_alias("plans", "production", 1)


async def test_tritonclient_against_keel_inference(tmp_path: Path) -> None:
    if not COMPAT_PYTHON.exists():
        pytest.skip("needs .venv-compat with tritonclient: `make .venv-compat/.installed`")
    plans, plans_sklearn = plans_model()
    async with churn_in_production(tmp_path) as (registry, port):
        await register_plans(registry, plans)
        async with running_inference(port, tmp_path / "inference") as inference:
            proc = await asyncio.create_subprocess_exec(
                str(COMPAT_PYTHON),
                str(SCRIPT),
                inference.address,
                "churn",
                "plans",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen["live"] == {"answer": True} and seen["ready"] == {"answer": True}
    assert seen["model_ready"] == {"answer": True}
    assert seen["metadata"]["answer"]["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": ["-1", "4"]}
    ]
    rows = np.array([[0.5, -1.0, 0.25, 2.0], [-0.3, 0.1, 1.5, -0.7]], dtype=np.float32)
    booster = xgboost.Booster()
    booster.load_model(bytearray(xgboost_artifact(trees=5).data))
    infer = seen["infer"]["answer"]
    assert infer["version"] == "1"
    np.testing.assert_allclose(
        np.array(infer["probabilities"])[:, 1], booster.inplace_predict(rows), rtol=1e-6
    )
    assert seen["wrong_shape"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "features" in seen["wrong_shape"]["message"]
    frame = pd.DataFrame(
        {"plan": ["basic", "pro", PLANS[2]], "age": np.array([25.0, 40.0, 61.0], dtype=np.float32)}
    )
    assert seen["categorical"]["answer"] == {
        "label": plans_sklearn.predict(frame).tolist(),  # type: ignore[attr-defined]
        "outputs": ["label"],
    }
    assert seen["statistics"]["answer"]["name"] == "churn"
    assert seen["statistics"]["answer"]["inference_count"] >= 2
    assert ["churn", "1", "READY"] in seen["index"]["answer"]
    assert "answer" in seen["unload"] and "answer" in seen["load"]
    assert seen["after_reload"]["answer"]["version"] == "1"
    assert hashlib.sha256(plans.data).hexdigest() == plans.sha256
