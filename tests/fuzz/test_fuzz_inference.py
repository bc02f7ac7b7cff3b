"""Every RPC of inference.GRPCInferenceService (Open Inference Protocol) and
keel.inference.v1.InferenceService, fuzzed against a real inference server.

The server follows a real registry (SQLite): model ``churn`` (XGBoost, version 1 in
``production``, version 2), ``risk`` (scikit-learn, ``production``) and deployment
``churn-api`` routing 70/30 over churn's versions with a sticky ``customer`` parameter.
Requests are random messages, plausible ones (real model names, datatypes, shapes, raw
contents with bytes cut or flipped) and valid requests with a field or two broken. Model
``sentinel``, which no request names, must still answer correctly after.

``KEEL_FUZZ_EXAMPLES=10000 .venv/bin/pytest tests/fuzz/test_fuzz_inference.py`` runs the
slow suite (see tests/fuzz/harness.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import xgboost
from hypothesis import strategies as st

from keel.common.v1 import schema_pb2
from keel.inference.v1 import inference_pb2 as kpb
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import deployment_pb2
from keel.registry.v1 import registry_pb2 as rpb
from tests.fuzz.harness import (
    TIMEOUT_S,
    Rpc,
    Tally,
    call,
    calls,
    examples_per_rpc,
    fuzz,
    rpcs,
)
from tests.fuzz.servers import SERVING, ServerThread, channel_to, health, tracer_provider
from tests.support.fuzzing import Hints, broken_bytes, broken_names, requests
from tests.support.inference import raw_output, raw_request, running_inference
from tests.support.registry import (
    running_registry,
    sklearn_artifact,
    training_data,
    xgboost_artifact,
)

pytestmark = pytest.mark.timeout(TIMEOUT_S)
OIP = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"]
KEEL = kpb.DESCRIPTOR.services_by_name["InferenceService"]
RPCS = rpcs(OIP, last=("RepositoryModelUnload",)) + rpcs(KEEL)
ROWS = training_data()[0][:3]
MODELS = ["churn", "churn-api", "risk"]
SENTINEL = xgboost_artifact(trees=4, seed=2)


def _typed(model: str, datatype: str = "FP64") -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=model, id="r-1")
    tensor = request.inputs.add(name="features", datatype=datatype, shape=list(ROWS.shape))
    tensor.contents.fp64_contents.extend(ROWS.astype(np.float64).ravel().tolist())
    request.outputs.add(name="label")
    return request


def _per_feature(model: str) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=model, model_version="1")
    for j in range(ROWS.shape[1]):
        tensor = request.inputs.add(name=f"f{j}", datatype="FP32", shape=[len(ROWS)])
        tensor.contents.fp32_contents.extend(ROWS[:, j].tolist())
    request.parameters["customer"].string_param = "customer-7"
    return request


def _explain(model: str) -> kpb.ExplainRequest:
    tensor = kpb.Tensor(
        name="features",
        data_type=schema_pb2.DATA_TYPE_FLOAT32,
        shape=list(ROWS.shape),
        float_values=kpb.FloatValues(values=ROWS.ravel().tolist()),
    )
    return kpb.ExplainRequest(model_name=model, inputs=[tensor])


def seeds() -> dict[str, list[Any]]:
    """Valid requests of every RPC, to send as they are or with a field or two broken."""
    load = oip.RepositoryModelLoadRequest(model_name="churn")
    load.parameters["version"].string_param = "2"
    return {
        "ServerLive": [oip.ServerLiveRequest()],
        "ServerReady": [oip.ServerReadyRequest()],
        "ModelReady": [oip.ModelReadyRequest(name="churn", version="1")],
        "ServerMetadata": [oip.ServerMetadataRequest()],
        "ModelMetadata": [oip.ModelMetadataRequest(name="risk")],
        "ModelInfer": [
            raw_request("churn", ROWS, request_id="r-1"),
            raw_request("churn-api", ROWS),
            _typed("risk"),
            _per_feature("churn"),
        ],
        "ModelStatistics": [oip.ModelStatisticsRequest(name="churn", version="1")],
        "RepositoryIndex": [oip.RepositoryIndexRequest(ready=True)],
        "RepositoryModelLoad": [load],
        "RepositoryModelUnload": [oip.RepositoryModelUnloadRequest(model_name="risk")],
        "Explain": [_explain("churn"), _explain("risk")],
        "GetServedModel": [kpb.GetServedModelRequest(name="churn-api")],
        "ListServedModels": [kpb.ListServedModelsRequest(page_size=1, page_token="churn")],
    }


SEEDS = seeds()
assert set(SEEDS) == {rpc.name for rpc in RPCS}, "a seed list for every RPC"
DIMENSIONS = [-1, 0, 1, 3, 4, 2**31, 2**32, 2**62, 2**63 - 1]
VERSIONS = ["", "1", "2", "3", "0", "-1", "production", "²", "١", "99999999999999999999"]

HINTS: Hints = {
    "name": broken_names(MODELS),
    "model_name": broken_names(MODELS),
    "InferInputTensor.name": st.sampled_from(["features", "f0", "f1", "f2", "f3", "nope"]),
    "Tensor.name": st.sampled_from(["features", "f0", "nope"]),
    "InferRequestedOutputTensor.name": st.sampled_from(["label", "probabilities", "nope"]),
    "version": st.sampled_from(VERSIONS),
    "model_version": st.sampled_from(VERSIONS),
    "string_param": st.sampled_from(VERSIONS + ["customer-7"]),
    "key": st.sampled_from(["version", "customer", "binary_data_output", ""]),
    "datatype": st.sampled_from(
        ["FP32", "FP64", "INT64", "INT32", "BOOL", "BYTES", "UINT8", "FP16", "fp32", ""]
    ),
    "shape": st.sampled_from(DIMENSIONS),
    "raw_input_contents": broken_bytes([ROWS.tobytes(), ROWS[:, 0].tobytes()]),
    "raw_values": broken_bytes([ROWS.tobytes()]),
    "page_token": st.sampled_from(["", "churn", "zzz"]),
    "sticky_key": st.sampled_from(["customer-7", ""]),
    "variant": st.sampled_from(["a", "b", "nope", ""]),
}


def _versioned(version: str) -> oip.ModelInferRequest:
    request = raw_request("churn", ROWS)
    request.model_version = version
    return request


REGRESSIONS = {  # what the fuzzer found once, sent on every run
    "ModelInfer": [call(_versioned("²")), call(_versioned("9223372036854775808"))],
    "ModelMetadata": [call(oip.ModelMetadataRequest(name="churn", version="9" * 5000))],
}


def strategy(rpc: Rpc) -> st.SearchStrategy[Any]:
    return calls(rpc, requests(rpc.method.input_type, HINTS, SEEDS[rpc.name]))


async def _wait_until_served(address: str, model: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(300):
            try:
                await stub.ModelInfer(raw_request(model, ROWS), timeout=10)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
    raise TimeoutError(f"inference does not serve {model}")


@asynccontextmanager
async def inference_stack(root: Path) -> AsyncIterator[str]:
    url, traced = f"sqlite:///{root / 'r.db'}", tracer_provider()
    async with running_registry(url, root / "registry", provider=traced) as (registry, port):
        for name, artifacts in (
            ("churn", [xgboost_artifact(trees=5), xgboost_artifact(trees=3, seed=1)]),
            ("risk", [sklearn_artifact()]),
            ("sentinel", [SENTINEL]),
        ):
            await registry.create_model(name)
            for artifact in artifacts:
                await registry.register(name, artifact)
            await registry.set_alias(name, "production", 1)
        routes = [
            deployment_pb2.Route(target="models/churn/versions/1", weight=70, variant="a"),
            deployment_pb2.Route(target="models/churn/versions/2", weight=30, variant="b"),
        ]
        deployment = deployment_pb2.Deployment(
            model="models/churn", routes=routes, sticky_key_parameter="customer"
        )
        await registry.stub.CreateDeployment(
            rpb.CreateDeploymentRequest(deployment=deployment, deployment_id="churn-api"),
            metadata=registry.md,
        )
        async with running_inference(port, root / "inference", provider=traced) as served:
            for model in ("churn-api", "sentinel"):
                await _wait_until_served(served.address, model)
            yield served.address


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    root = tmp_path_factory.mktemp("fuzz-inference")
    with ServerThread(lambda: inference_stack(root)) as address, channel_to(address) as found:
        yield found


@pytest.fixture(scope="module")
def tally(tallies: dict[str, Tally]) -> Tally:
    return tallies.setdefault("inference", Tally("inference"))


@pytest.mark.parametrize("rpc", RPCS, ids=[rpc.name for rpc in RPCS])
def test_every_answer_is_deliberate(
    channel: grpc.Channel, tally: Tally, rpc: Rpc, request: pytest.FixtureRequest
) -> None:
    nodeid, found = request.node.nodeid, REGRESSIONS.get(rpc.name, [])
    fuzz(channel, rpc, strategy(rpc), examples_per_rpc(RPCS), tally, nodeid, found)
    service = rpc.method.containing_service.full_name
    assert health(channel, service) == SERVING


def test_inference_is_healthy_and_correct_after(channel: grpc.Channel) -> None:
    assert health(channel) == SERVING
    stub = oip_grpc.GRPCInferenceServiceStub(channel)
    assert stub.ModelReady(oip.ModelReadyRequest(name="sentinel"), timeout=10).ready
    reply = stub.ModelInfer(raw_request("sentinel", ROWS), timeout=30)
    booster = xgboost.Booster()
    booster.load_model(bytearray(SENTINEL.data))
    expected = np.asarray(booster.inplace_predict(ROWS))
    np.testing.assert_allclose(raw_output(reply, "probabilities")[:, 1], expected, rtol=1e-6)
