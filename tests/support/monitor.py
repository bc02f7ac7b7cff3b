"""A real monitor server in-process for integration tests, next to a real registry, and
models registered the way a data scientist does (``Keel.log_model``) so that each version
carries a signature and a reference profile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import monitor_pb2_grpc as pb_grpc
from services.common.db import make_engine
from services.common.server import build_server
from services.monitor.service import open_monitor
from services.monitor.settings import MonitorSettings
from tests.support.monitor_batches import column_raw, column_strings

NS = 1_000_000_000


@dataclass
class Monitor:
    stub: pb_grpc.MonitorServiceAsyncStub
    address: str


@asynccontextmanager
async def running_monitor(
    registry_address: str,
    database_url: str,
    data_dir: Path,
    provider: TracerProvider | None = None,
    **overrides: Any,
) -> AsyncIterator[Monitor]:
    defaults: dict[str, Any] = {"port": 0, "event_poll_s": 0.05, "guard_refresh_s": 0.2}
    settings = MonitorSettings(
        metrics_port=None,
        data_dir=data_dir,
        database_url=database_url,
        registry_address=registry_address,
        **{**defaults, **overrides},
    )
    provider = provider or TracerProvider()
    async with open_monitor(settings, provider, CollectorRegistry()) as deps:
        server, port = build_server(settings, tracer_provider=provider, deps=deps)
        await server.start()
        try:
            address = f"127.0.0.1:{port}"
            async with grpc.aio.insecure_channel(address) as channel:
                yield Monitor(pb_grpc.MonitorServiceStub(channel), address)
        finally:
            await server.stop(None)


@contextmanager
def monitor_database(database_url: str) -> Iterator[Connection]:
    """A transaction on a running monitor's database, from the test's side (committed when
    the block ends)."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


async def log_rows(
    monitor: Monitor, version: int, ids: Sequence[str], seed: int, sequence: int = 0
) -> pb.LogPredictionBatchResponse:
    """Log a seeded batch of model ``m``'s predictions, one row per id."""
    message = batch("m", version, frame(len(ids), seed).to_numpy(), ids, sequence=sequence)
    return await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))


def frame(rows: int, seed: int, shift: float = 0.0, columns: int = 4) -> Any:
    """A seeded numeric frame with columns x0..x{n-1} (x0 shifted by ``shift``)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    data = rng.normal(size=(rows, columns))
    data[:, 0] += shift
    return pd.DataFrame(data, columns=[f"x{i}" for i in range(columns)])


def labels_for(x: Any) -> npt.NDArray[np.int64]:
    values = np.asarray(x, dtype=np.float64)
    return (values[:, 0] + 0.5 * values[:, 1] > 0).astype(np.int64)


async def log_classifier(registry_address: str, name: str, **extra: Any) -> int:
    """Register a logistic regression on 4 numeric features; returns the version."""
    from sklearn.linear_model import LogisticRegression

    from keel.client import Keel

    train, test = frame(2000, 1), frame(500, 2)
    model = LogisticRegression().fit(train, labels_for(train))

    def register() -> int:
        client = Keel(registry=registry_address)
        try:
            version = client.log_model(
                model, name, train, labels_for(train), test, labels_for(test), cv=None, **extra
            )
            return int(version.version)
        finally:
            client.close()

    return await asyncio.to_thread(register)


def batch(
    name: str,
    version: int,
    x: npt.NDArray[np.float64],
    ids: Sequence[str],
    *,
    producer: str = "test-producer",
    sequence: int = 0,
    scores: npt.NDArray[np.float64] | None = None,
    variant: str = "",
    deployment: str = "",
    when_ns: int | None = None,
) -> ingest_pb2.PredictionBatch:
    """A batch of a binary classifier's predictions on ``x`` (columns x0..)."""
    n = len(x)
    score = scores if scores is not None else 1 / (1 + np.exp(-(x[:, 0] + 0.5 * x[:, 1])))
    message = ingest_pb2.PredictionBatch(
        producer_id=producer,
        sequence=sequence,
        model=f"models/{name}",
        version=version,
        deployment=deployment,
        variant=variant,
        row_count=n,
        prediction_ids=column_strings("", list(ids)),
        time_unix_nanos=[when_ns or time.time_ns()] * n,
        features=[column_raw(f"x{i}", x[:, i].astype(np.float64)) for i in range(x.shape[1])],
    )
    message.outputs.score.CopyFrom(column_raw("", score.astype(np.float64)))
    message.outputs.label.CopyFrom(column_raw("", (score >= 0.5).astype(np.int64)))
    return message


def feedback(name: str, ids: Sequence[str], labels: npt.ArrayLike) -> pb.LogFeedbackRequest:
    request = pb.LogFeedbackRequest(model=f"models/{name}", row_count=len(ids))
    request.prediction_ids.CopyFrom(column_strings("", list(ids)))
    request.labels.CopyFrom(column_raw("", np.asarray(labels, dtype=np.int64)))
    return request
