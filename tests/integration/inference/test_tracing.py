"""A traced request through inference: its server span is the caller's span's child, with
the request's own queue and predict spans inside — also when its batch served requests
of other traces — and, on a cold load, the load and the registry's artifact download in
the same trace; an explanation is a span of its request too."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.trace import SpanKind

from keel.common.v1 import schema_pb2
from keel.inference.v1 import inference_pb2 as kpb
from keel.inference.v1 import inference_pb2_grpc as kpb_grpc
from tests.support.inference import Inference, raw_request, running_inference
from tests.support.registry import Client, running_registry, training_data, xgboost_artifact
from tests.support.tracing import (
    Recorded,
    ancestors,
    parent_id,
    recorded,
    span_id,
    trace_of,
    traceparent,
)

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER = 0x00F067AA0BA902B7
INFER = "/inference.GRPCInferenceService/ModelInfer"
DOWNLOAD = "/keel.registry.v1.RegistryService/DownloadArtifact"
GET_VERSION = "/keel.registry.v1.RegistryService/GetModelVersion"
EXPLAIN = "/keel.inference.v1.InferenceService/Explain"


@dataclass(frozen=True)
class Traced:
    registry: Client
    inference: Inference
    registry_spans: Recorded
    inference_spans: Recorded


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[Traced]:
    """Registry and inference, each on a provider of its own keeping spans in memory;
    ``churn`` version 1 in production (loaded at start), version 2 registered only;
    model calls run in the executor."""
    registry_spans, inference_spans = recorded("keel-registry"), recorded("keel-inference")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    async with running_registry(url, tmp_path / "registry", provider=registry_spans.provider) as (
        registry,
        port,
    ):
        await registry.create_model("churn")
        await registry.register("churn", xgboost_artifact(trees=5))
        await registry.register("churn", xgboost_artifact(trees=7))
        await registry.set_alias("churn", "production", 1)
        # Every model call in the executor (budget 0): requests arriving while one runs
        # are batched, whereas calls on the event loop leave coalescing to chance.
        async with running_inference(
            port,
            tmp_path / "inference",
            provider=inference_spans.provider,
            inline_predict_budget_s=0,
        ) as served:
            yield Traced(registry, served, registry_spans, inference_spans)


async def test_a_request_has_its_queue_and_predict_spans_under_its_server_span(
    traced: Traced,
) -> None:
    spans = traced.inference_spans
    rows = training_data()[0][:3]
    await traced.inference.stub.ModelInfer(
        raw_request("churn", rows), metadata=traceparent(TRACE, CALLER), timeout=10
    )
    await spans.wait_for(INFER)
    server = spans.one(INFER, TRACE)
    assert parent_id(server) == CALLER
    queue = spans.one("keel.inference.queue", TRACE)
    predict = spans.one("keel.inference.predict", TRACE)
    assert parent_id(queue) == parent_id(predict) == span_id(server)
    assert server.start_time is not None and server.end_time is not None
    assert queue.start_time is not None and queue.end_time is not None
    assert predict.end_time is not None
    assert server.start_time <= queue.start_time <= queue.end_time == predict.start_time
    assert predict.end_time <= server.end_time
    assert predict.attributes is not None
    assert predict.attributes["keel.rows"] == 3
    assert predict.attributes["keel.batch.requests"] == 1
    assert predict.attributes["keel.batch.rows"] == 3
    [load] = spans.spans("keel.inference.load")  # version 1, loaded at start: a root span
    assert load.parent is None and trace_of(load) != TRACE


async def test_requests_of_several_traces_in_one_batch_each_get_spans_in_their_own_trace(
    traced: Traced,
) -> None:
    """Concurrent requests coalesce while the model is busy; a round is repeated until
    one batch held requests of two traces at least (the first round nearly always)."""
    spans = traced.inference_spans
    rows = training_data()[0][:2]
    for round_ in range(20):
        traces = [TRACE + 1000 * round_ + i for i in range(8)]
        await asyncio.gather(
            *(
                traced.inference.stub.ModelInfer(
                    raw_request("churn", rows), metadata=traceparent(t, CALLER), timeout=10
                )
                for t in traces
            )
        )
        await spans.wait_for(INFER, count=8 * (round_ + 1))
        batches = defaultdict(list)  # spans of one model call share their times
        for t in traces:
            server = spans.one(INFER, t)
            queue = spans.one("keel.inference.queue", t)
            predict = spans.one("keel.inference.predict", t)
            assert parent_id(queue) == parent_id(predict) == span_id(server)
            batches[predict.start_time, predict.end_time].append(predict)
        shared = [group for group in batches.values() if len(group) > 1]
        if shared:
            break
    else:
        pytest.fail("no two concurrent requests were batched together in 20 rounds")
    for group in shared:
        assert len({trace_of(p) for p in group}) == len(group)  # one per trace
        for predict in group:
            assert predict.attributes is not None
            assert predict.attributes["keel.batch.requests"] == len(group)
            assert predict.attributes["keel.batch.rows"] == 2 * len(group)
            assert predict.attributes["keel.rows"] == 2


async def test_a_cold_load_downloads_the_artifact_inside_the_request_trace(
    traced: Traced,
) -> None:
    inference, registry = traced.inference_spans, traced.registry_spans
    rows = training_data()[0][:2]
    reply = await traced.inference.stub.ModelInfer(
        raw_request("churn", rows, version="2"), metadata=traceparent(TRACE, CALLER), timeout=30
    )
    assert reply.model_version == "2"
    await inference.wait_for(INFER)
    await registry.wait_for(DOWNLOAD)
    server = inference.one(INFER, TRACE)
    load = inference.one("keel.inference.load", TRACE)
    assert parent_id(load) == span_id(server)
    assert load.attributes is not None
    assert (load.attributes["keel.model"], load.attributes["keel.version"]) == ("churn", 2)
    assert load.attributes["keel.source"] == "registry"
    [client] = [
        s for s in inference.spans(DOWNLOAD) if s.kind == SpanKind.CLIENT and trace_of(s) == TRACE
    ]
    assert parent_id(client) == span_id(load)
    download = registry.one(DOWNLOAD, TRACE)
    assert download.kind == SpanKind.SERVER
    assert parent_id(download) == span_id(client)
    everything = inference.spans() + registry.spans()
    assert span_id(server) in ancestors(download, everything)
    # The registry's database work for the version's lookup, once per unit of work.
    get_version = registry.one(GET_VERSION, TRACE)
    [db] = [s for s in registry.spans("keel.registry.db") if parent_id(s) == span_id(get_version)]
    assert db.attributes is not None
    assert db.attributes["db.system"] == "sqlite"
    assert db.attributes["db.operation"] == "Models.get_version"


async def test_an_explanation_is_a_span_of_its_request(traced: Traced) -> None:
    spans = traced.inference_spans
    rows = training_data()[0][:3]
    tensor = kpb.Tensor(name="features", data_type=schema_pb2.DATA_TYPE_FLOAT32, shape=[3, 4])
    tensor.float_values.values.extend(rows.ravel().tolist())
    async with grpc.aio.insecure_channel(traced.inference.address) as channel:
        await kpb_grpc.InferenceServiceStub(channel).Explain(
            kpb.ExplainRequest(model_name="churn", inputs=[tensor]),
            metadata=traceparent(TRACE, CALLER),
            timeout=10,
        )
    await spans.wait_for(EXPLAIN)
    explain = spans.one("keel.inference.explain", TRACE)
    assert parent_id(explain) == span_id(spans.one(EXPLAIN, TRACE))
    assert explain.attributes is not None
    assert explain.attributes["keel.rows"] == 3
    assert explain.attributes["keel.explain.method"] == "TREE_SHAP"
