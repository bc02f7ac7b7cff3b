"""A real registry server in-process for integration tests, on SQLite or PostgreSQL, and
real model artifacts trained on the spot."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import grpc
import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from keel.common.v1 import metric_pb2, schema_pb2
from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc
from services.common.server import build_server
from services.registry.service import open_registry
from services.registry.settings import RegistrySettings

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Artifact:
    data: bytes
    flavor: int
    features: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@cache
def training_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(np.int64)
    return x, y


@cache
def xgboost_artifact(trees: int = 5, seed: int = 0) -> Artifact:
    import xgboost

    x, y = training_data(seed)
    model = xgboost.XGBClassifier(n_estimators=trees, max_depth=3, random_state=seed)
    model.fit(x, y)
    return Artifact(
        bytes(model.get_booster().save_raw("ubj")),
        model_pb2.FLAVOR_XGBOOST,
        ("f0", "f1", "f2", "f3"),
    )


@cache
def sklearn_artifact() -> Artifact:
    import skops.io
    from sklearn.linear_model import LogisticRegression

    x, y = training_data()
    model = LogisticRegression().fit(x, y)
    return Artifact(skops.io.dumps(model), model_pb2.FLAVOR_SKLEARN, ("f0", "f1", "f2", "f3"))


def signature(features: tuple[str, ...], *, required: bool = True) -> schema_pb2.Signature:
    return schema_pb2.Signature(
        inputs=[
            schema_pb2.Feature(
                name=name,
                dtype=schema_pb2.DATA_TYPE_FLOAT32,
                kind=schema_pb2.FEATURE_KIND_NUMERIC,
                required=required,
            )
            for name in features
        ],
        class_labels=["0", "1"],
    )


def metrics(**values: float) -> list[metric_pb2.Metric]:
    return [
        metric_pb2.Metric(name=name, value=value, split=metric_pb2.METRIC_SPLIT_HOLDOUT)
        for name, value in values.items()
    ]


def objective(metric: str, comparator: int, threshold: float) -> metric_pb2.Objective:
    return metric_pb2.Objective(metric=metric, comparator=comparator, threshold=threshold)  # type: ignore[arg-type]


def upload_requests(
    data: bytes, sha256: str | None = None, size: int | None = None
) -> Iterator[pb.UploadArtifactRequest]:
    header = pb.UploadArtifactHeader(
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size_bytes=len(data) if size is None else size,
    )
    yield pb.UploadArtifactRequest(header=header)
    for start in range(0, len(data), CHUNK):
        yield pb.UploadArtifactRequest(chunk=data[start : start + CHUNK])


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error a call ends with (the test fails if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded; expected an error")


class Client:
    """Thin helpers over the generated aio stub, acting as one user."""

    def __init__(self, channel: grpc.aio.Channel, user: str = "alice") -> None:
        self.stub = pb_grpc.RegistryServiceStub(channel)
        self.user = user

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("x-keel-user", self.user),)

    def as_user(self, user: str) -> Client:
        other = Client.__new__(Client)
        other.stub, other.user = self.stub, user
        return other

    async def create_model(self, name: str, **fields: object) -> model_pb2.Model:
        model = model_pb2.Model(task=schema_pb2.TASK_BINARY_CLASSIFICATION, **fields)  # type: ignore[arg-type]
        reply = await self.stub.CreateModel(
            pb.CreateModelRequest(model=model, model_id=name), metadata=self.md, timeout=10
        )
        return reply.model

    async def upload(self, artifact: Artifact) -> pb.UploadArtifactResponse:
        return await self.stub.UploadArtifact(
            upload_requests(artifact.data), metadata=self.md, timeout=60
        )

    async def register(
        self,
        model: str,
        artifact: Artifact | None = None,
        *,
        evaluation: dict[str, float] | None = None,
        features: tuple[str, ...] | None = None,
        tags: dict[str, str] | None = None,
        request_id: str = "",
    ) -> model_pb2.ModelVersion:
        artifact = artifact or xgboost_artifact()
        await self.upload(artifact)
        version = model_pb2.ModelVersion(
            flavor=artifact.flavor,  # type: ignore[arg-type]
            artifact=model_pb2.Artifact(sha256=artifact.sha256),
            signature=signature(features or artifact.features),
            evaluation_metrics=metrics(**(evaluation or {})),
            tags=tags or {},
        )
        reply = await self.stub.CreateModelVersion(
            pb.CreateModelVersionRequest(
                parent=f"models/{model}", model_version=version, request_id=request_id
            ),
            metadata=self.md,
            timeout=30,
        )
        return reply.model_version

    async def set_alias(
        self, model: str, alias: str, version: int, expected: int | None = None
    ) -> pb.SetAliasResponse:
        request = pb.SetAliasRequest(name=f"models/{model}/aliases/{alias}", version=version)
        if expected is not None:
            request.expected_version = expected
        return await self.stub.SetAlias(request, metadata=self.md, timeout=10)


@asynccontextmanager
async def running_registry(
    database_url: str,
    data_dir: Path,
    artifact_root: str = "",
    provider: TracerProvider | None = None,
) -> AsyncIterator[tuple[Client, int]]:
    """A registry on port 0; ``provider`` records its spans (none by default)."""
    provider = provider or TracerProvider()
    settings = RegistrySettings(
        port=0,
        metrics_port=None,
        data_dir=data_dir,
        database_url=database_url,
        artifact_root=artifact_root,
        event_poll_s=0.05,
    )
    async with open_registry(settings, provider, CollectorRegistry()) as deps:
        server, port = build_server(settings, tracer_provider=provider, deps=deps)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield Client(channel), port
        finally:
            await server.stop(None)
