"""A real inference server in-process, following a real registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from services.common.server import build_server
from services.inference.predictions import PredictionRecord
from services.inference.service import serving_stack
from services.inference.settings import InferenceSettings
from tests.support.registry import Client, running_registry, xgboost_artifact


class Recorder:
    """A prediction sink that keeps every record, for tests without a monitor."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []

    def put(self, record: PredictionRecord) -> None:
        self.records.append(record)


@dataclass(frozen=True)
class Inference:
    """A running inference server: an aio stub and the address for other clients.
    ``predictions`` holds what was logged, unless logs go to a monitor."""

    stub: oip_grpc.GRPCInferenceServiceAsyncStub
    address: str
    predictions: Recorder
    metrics: CollectorRegistry


@asynccontextmanager
async def churn_in_production(tmp_path: Path) -> AsyncIterator[tuple[Client, int]]:
    """A registry (SQLite under ``tmp_path``) whose model ``churn`` has version 1, a
    5-tree XGBoost classifier, as ``production``; yields the client and the port."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    async with running_registry(url, tmp_path / "registry") as (registry, port):
        await registry.create_model("churn")
        await registry.register("churn", xgboost_artifact(trees=5))
        await registry.set_alias("churn", "production", 1)
        yield registry, port


@asynccontextmanager
async def running_inference(
    registry_port: int,
    data_dir: Path,
    *,
    monitor_address: str = "",
    provider: TracerProvider | None = None,
    **settings_overrides: Any,
) -> AsyncIterator[Inference]:
    """Inference following the registry on ``registry_port``; prediction logs go to the
    monitor at ``monitor_address`` when given, else to ``Inference.predictions``."""
    settings = InferenceSettings(
        port=0,
        metrics_port=None,
        data_dir=data_dir,
        registry_address=f"127.0.0.1:{registry_port}",
        registry_retry_s=0.2,
        monitor_address=monitor_address,
        **settings_overrides,
    )
    predictions = Recorder()
    metrics = CollectorRegistry()
    provider = provider or TracerProvider()
    sink = None if monitor_address else predictions
    async with serving_stack(settings, provider, metrics, sink) as deps:
        server, port = build_server(settings, tracer_provider=provider, deps=deps)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield Inference(
                    oip_grpc.GRPCInferenceServiceStub(channel),
                    f"127.0.0.1:{port}",
                    predictions,
                    metrics,
                )
        finally:
            await server.stop(None)


def raw_request(
    model: str, rows: np.ndarray, version: str = "", request_id: str = ""
) -> oip.ModelInferRequest:
    """A request as tritonclient sends it: one FP32 `features` tensor, raw bytes."""
    matrix = np.ascontiguousarray(rows, dtype=np.float32)
    request = oip.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    request.inputs.add(name="features", datatype="FP32", shape=list(matrix.shape))
    request.raw_input_contents.append(matrix.tobytes())
    return request


def raw_output(response: oip.ModelInferResponse, name: str) -> np.ndarray:
    index = [o.name for o in response.outputs].index(name)
    tensor = response.outputs[index]
    dtype = {"FP32": np.float32, "INT64": np.int64}[tensor.datatype]
    return np.frombuffer(response.raw_output_contents[index], dtype=dtype).reshape(
        tuple(tensor.shape)
    )
