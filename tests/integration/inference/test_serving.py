"""The inference service follows a real registry and serves over the Open Inference
Protocol: metadata, raw and typed inference, validation errors, alias moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import xgboost

from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from tests.support.inference import churn_in_production, raw_output, raw_request, running_inference
from tests.support.registry import (
    Client,
    rpc_error,
    training_data,
    xgboost_artifact,
)


@pytest.fixture
async def stack(
    tmp_path: Path,
) -> AsyncIterator[tuple[Client, oip_grpc.GRPCInferenceServiceAsyncStub]]:
    async with churn_in_production(tmp_path) as (registry, port):
        async with running_inference(port, tmp_path / "inference") as served:
            yield registry, served.stub


def expected(rows: np.ndarray, trees: int = 5, seed: int = 0) -> np.ndarray:
    booster = xgboost.Booster()
    booster.load_model(bytearray(xgboost_artifact(trees=trees, seed=seed).data))
    return np.asarray(booster.inplace_predict(rows))


async def test_metadata_and_raw_inference_match_the_model(
    stack: tuple[Client, oip_grpc.GRPCInferenceServiceAsyncStub],
) -> None:
    _, inference = stack
    assert (await inference.ServerReady(oip.ServerReadyRequest())).ready
    assert (await inference.ModelReady(oip.ModelReadyRequest(name="churn"))).ready
    meta = await inference.ModelMetadata(oip.ModelMetadataRequest(name="churn"))
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("features", "FP32", [-1, 4])
    ]
    assert [(t.name, t.datatype) for t in meta.outputs] == [
        ("label", "INT64"),
        ("probabilities", "FP32"),
    ]
    rows = training_data()[0][:7]
    reply = await inference.ModelInfer(raw_request("churn", rows, request_id="r1"))
    assert (reply.model_name, reply.model_version, reply.id) == ("churn", "1", "r1")
    probabilities = raw_output(reply, "probabilities")
    np.testing.assert_allclose(probabilities[:, 1], expected(rows), rtol=1e-6)
    np.testing.assert_array_equal(
        raw_output(reply, "label"), (expected(rows) > 0.5).astype(np.int64)
    )


async def test_typed_request_gets_a_typed_answer_with_only_the_named_output(
    stack: tuple[Client, oip_grpc.GRPCInferenceServiceAsyncStub],
) -> None:
    _, inference = stack
    rows = training_data()[0][:3]
    request = oip.ModelInferRequest(model_name="churn")
    tensor = request.inputs.add(name="features", datatype="FP64", shape=[3, 4])
    tensor.contents.fp64_contents.extend(rows.astype(np.float64).ravel().tolist())
    request.outputs.add(name="label")
    reply = await inference.ModelInfer(request)
    assert [o.name for o in reply.outputs] == ["label"] and not reply.raw_output_contents
    assert (
        list(reply.outputs[0].contents.int64_contents)
        == (expected(rows) > 0.5).astype(int).tolist()
    )


async def test_bad_requests_are_invalid_argument_naming_the_input(
    stack: tuple[Client, oip_grpc.GRPCInferenceServiceAsyncStub],
) -> None:
    _, inference = stack
    wrong = await rpc_error(inference.ModelInfer(raw_request("churn", np.zeros((2, 3)))))
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT and "features" in (
        wrong.details() or ""
    )
    unknown = await rpc_error(inference.ModelInfer(raw_request("nope", np.zeros((1, 4)))))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND


async def test_an_alias_move_swaps_the_served_version(
    stack: tuple[Client, oip_grpc.GRPCInferenceServiceAsyncStub],
) -> None:
    registry, inference = stack
    await registry.register("churn", xgboost_artifact(trees=9, seed=1))
    rows = training_data()[0][:5]
    await registry.set_alias("churn", "production", 2)
    for _ in range(100):
        reply = await inference.ModelInfer(raw_request("churn", rows))
        if reply.model_version == "2":
            break
        await asyncio.sleep(0.05)
    assert reply.model_version == "2"
    np.testing.assert_allclose(
        raw_output(reply, "probabilities")[:, 1], expected(rows, 9, 1), rtol=1e-6
    )
    pinned = await inference.ModelInfer(raw_request("churn", rows, version="1"))
    assert pinned.model_version == "1"


async def test_explain_adds_up_and_the_routing_state_is_reported(tmp_path: Path) -> None:
    from keel.common.v1 import schema_pb2
    from keel.inference.v1 import inference_pb2 as kpb
    from keel.inference.v1 import inference_pb2_grpc as kpb_grpc

    rows = training_data()[0][:3]
    async with churn_in_production(tmp_path) as (registry, port):
        async with running_inference(port, tmp_path / "inference") as served:
            async with grpc.aio.insecure_channel(served.address) as channel:
                keel = kpb_grpc.InferenceServiceStub(channel)
                tensor = kpb.Tensor(
                    name="features", data_type=schema_pb2.DATA_TYPE_FLOAT32, shape=[3, 4]
                )
                tensor.float_values.values.extend(rows.ravel().tolist())
                explained = await keel.Explain(
                    kpb.ExplainRequest(model_name="churn", inputs=[tensor])
                )
                state = await keel.GetServedModel(kpb.GetServedModelRequest(name="churn"))
                missing = await rpc_error(
                    keel.GetServedModel(kpb.GetServedModelRequest(name="nope"))
                )
    assert explained.method == kpb.EXPLANATION_METHOD_TREE_SHAP and explained.model_version == "1"
    assert list(explained.feature_names) == ["f0", "f1", "f2", "f3"] and explained.row_count == 3
    [output] = explained.explanations
    contributions = np.array(output.contributions).reshape(3, 4)
    margin = contributions.sum(axis=1) + output.expected_value
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), expected(rows), rtol=1e-5)
    assert state.served_model.ready and state.served_model.routes[0].model_version == 1
    assert state.served_model.routes[0].artifact_sha256 == xgboost_artifact(trees=5).sha256
    assert state.replica.registry_connected
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_prometheus_counts_rows_and_calls(tmp_path: Path) -> None:
    rows = training_data()[0][:5]
    async with churn_in_production(tmp_path) as (registry, port):
        async with running_inference(port, tmp_path / "inference") as served:
            for _ in range(3):
                await served.stub.ModelInfer(raw_request("churn", rows))
            labels = {"model": "churn", "version": "1"}
            sample = served.metrics.get_sample_value
            assert sample("keel_inference_rows_total", labels) == 15
            calls = sample("keel_inference_model_calls_total", labels)
            assert calls is not None and 1 <= calls <= 3
            assert sample("keel_inference_queue_depth", labels) == 0


async def test_a_request_over_the_row_limit_is_resource_exhausted(tmp_path: Path) -> None:
    async with churn_in_production(tmp_path) as (_, port):
        async with running_inference(port, tmp_path / "inference", max_request_rows=10) as served:
            fits = await served.stub.ModelInfer(raw_request("churn", training_data()[0][:10]))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await served.stub.ModelInfer(raw_request("churn", training_data()[0][:11]))
    assert fits.outputs[0].shape == [10]
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == (
        "input 'features': 11 rows is over this server's limit of 10 rows per request; "
        "send fewer rows per request"
    )
