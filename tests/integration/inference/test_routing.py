"""Deployments: weighted routes, sticky assignment by a request parameter, shadows whose
answers are logged and never returned."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from keel.oip.v2 import open_inference_pb2 as oip
from keel.registry.v1 import deployment_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.inference import raw_request, running_inference
from tests.support.registry import running_registry, training_data, xgboost_artifact


def sticky_request(key: str) -> oip.ModelInferRequest:
    request = raw_request("churn-api", training_data()[0][:2])
    request.parameters["customer"].string_param = key
    return request


async def test_weighted_sticky_routes_and_shadows(tmp_path: Path) -> None:
    async with running_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "registry") as (
        registry,
        port,
    ):
        await registry.create_model("churn")
        for trees, seed in ((5, 0), (9, 1), (13, 2)):
            await registry.register("churn", xgboost_artifact(trees=trees, seed=seed))
        deployment = deployment_pb2.Deployment(
            model="models/churn",
            routes=[
                deployment_pb2.Route(
                    target="models/churn/versions/1", weight=50, variant="control"
                ),
                deployment_pb2.Route(
                    target="models/churn/versions/2", weight=50, variant="treatment"
                ),
            ],
            shadows=[deployment_pb2.Shadow(target="models/churn/versions/3", variant="shadow")],
            sticky_key_parameter="customer",
        )
        await registry.stub.CreateDeployment(
            pb.CreateDeploymentRequest(deployment=deployment, deployment_id="churn-api")
        )
        async with running_inference(port, tmp_path / "inference") as served:
            versions: Counter[str] = Counter()
            for i in range(60):
                reply = await served.stub.ModelInfer(sticky_request(f"customer-{i}"))
                versions[reply.model_version] += 1
            repeats = {
                (await served.stub.ModelInfer(sticky_request("customer-7"))).model_version
                for _ in range(10)
            }
            await asyncio.sleep(0.2)  # shadows run after the answer
            log = list(served.predictions.records)
    assert set(versions) == {"1", "2"} and min(versions.values()) >= 15  # about half each
    assert len(repeats) == 1  # the same key always gets the same variant
    live = [r for r in log if r.variant != "shadow"]
    shadow = [r for r in log if r.variant == "shadow"]
    assert {(r.version, r.variant, r.deployment) for r in live} == {
        (1, "control", "churn-api"),
        (2, "treatment", "churn-api"),
    }
    assert len(shadow) == len(live) == 70 and {r.version for r in shadow} == {3}
    # a shadow's answer is logged beside the live one, under the live id + its variant
    assert sorted(r.prediction_id for r in shadow) == sorted(
        f"{r.prediction_id}@shadow" for r in live
    )
    assert all(set(r.outputs) == {"label", "probabilities"} for r in shadow)
