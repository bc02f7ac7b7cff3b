"""What the registry benchmark sends: one client (this process, ``grpc.aio``) acting as
one user, and a closed loop that runs an operation from N concurrent clients."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import grpc

from bench.artifacts import Model
from keel.common.v1 import metric_pb2, schema_pb2
from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc

USER = (("x-keel-user", "bench"),)
MODELS = tuple(f"m{i}" for i in range(10))
TEAMS = ("risk", "growth", "fraud", "ops")
CHUNK = 1 << 20
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]


@dataclass
class Loop:
    """What a closed loop did: completed calls, their latencies, failures, wall time."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def closed_loop(
    clients: int, seconds: float, limit: int, call: Callable[[int], Awaitable[object]]
) -> Loop:
    """``clients`` callers each run ``call(n)`` back to back (n counts up across all of
    them) until ``seconds`` have passed or ``limit`` calls were started."""
    loop = Loop()
    started = time.perf_counter()
    end = started + seconds
    issued = 0

    async def client() -> None:
        nonlocal issued
        while issued < limit and time.perf_counter() < end:
            n, issued = issued, issued + 1
            begun = time.perf_counter()
            try:
                await call(n)
            except grpc.aio.AioRpcError as error:
                loop.errors += 1
                loop.first_error = loop.first_error or f"{error.code().name}: {error.details()}"
                continue
            loop.latencies.append(time.perf_counter() - begun)

    await asyncio.gather(*(client() for _ in range(clients)))
    loop.seconds = time.perf_counter() - started
    return loop


def _metrics(**values: float) -> list[metric_pb2.Metric]:
    split = metric_pb2.METRIC_SPLIT_HOLDOUT
    return [metric_pb2.Metric(name=k, value=v, split=split) for k, v in values.items()]


def _signature(features: tuple[str, ...]) -> schema_pb2.Signature:
    inputs = [
        schema_pb2.Feature(
            name=name,
            dtype=schema_pb2.DATA_TYPE_FLOAT32,
            kind=schema_pb2.FEATURE_KIND_NUMERIC,
            required=True,
        )
        for name in features
    ]
    return schema_pb2.Signature(inputs=inputs, class_labels=["0", "1"])


def upload_messages(data: bytes, sha256: str) -> list[pb.UploadArtifactRequest]:
    """The whole upload stream, built ahead so that timing it measures the transfer."""
    header = pb.UploadArtifactHeader(sha256=sha256, size_bytes=len(data))
    messages = [pb.UploadArtifactRequest(header=header)]
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        messages.append(pb.UploadArtifactRequest(chunk=bytes(view[start : start + CHUNK])))
    return messages


class Client:
    """The calls the benchmark makes, each with a deadline."""

    def __init__(self, channel: grpc.aio.Channel, seed: int = 0) -> None:
        self.stub = pb_grpc.RegistryServiceStub(channel)
        self.random = random.Random(seed)

    async def create_models(self) -> None:
        task = schema_pb2.TASK_BINARY_CLASSIFICATION
        for name in MODELS:
            request = pb.CreateModelRequest(model=model_pb2.Model(task=task), model_id=name)
            await self.stub.CreateModel(request, metadata=USER, timeout=10)

    async def upload(self, model: Model) -> None:
        await self.upload_stream(iter(upload_messages(model.data, model.sha256)))

    async def upload_stream(self, messages: Iterator[pb.UploadArtifactRequest]) -> None:
        await self.stub.UploadArtifact(messages, metadata=USER, timeout=120)

    def version(self, model: Model) -> model_pb2.ModelVersion:
        """A version as a training pipeline would register it: metrics, tags, lineage."""
        pick = self.random
        f1 = pick.uniform(0.6, 0.95)
        return model_pb2.ModelVersion(
            flavor=model_pb2.FLAVOR_XGBOOST,
            artifact=model_pb2.Artifact(sha256=model.sha256),
            signature=_signature(model.features),
            evaluation_metrics=_metrics(f1=f1, accuracy=f1 + 0.03, roc_auc=f1 + 0.05),
            training_metrics=_metrics(f1=f1 + 0.02, log_loss=pick.uniform(0.2, 0.5)),
            lineage=model_pb2.Lineage(code_revision=f"{pick.getrandbits(40):010x}"),
            tags={"team": pick.choice(TEAMS), "pipeline": "nightly"},
        )

    async def register(self, model_name: str, model: Model) -> int:
        request = pb.CreateModelVersionRequest(
            parent=f"models/{model_name}", model_version=self.version(model)
        )
        reply = await self.stub.CreateModelVersion(request, metadata=USER, timeout=30)
        return reply.model_version.version

    async def set_alias(self, model_name: str, alias: str, version: int) -> None:
        name = f"models/{model_name}/aliases/{alias}"
        request = pb.SetAliasRequest(name=name, version=version)
        await self.stub.SetAlias(request, metadata=USER, timeout=10)

    async def resolve(self, reference: str) -> None:
        view = model_pb2.MODEL_VERSION_VIEW_BASIC
        request = pb.ResolveAliasRequest(reference=reference, view=view)
        await self.stub.ResolveAlias(request, metadata=USER, timeout=10)

    async def search(self, filter: str, page_size: int) -> int:
        request = pb.SearchModelVersionsRequest(filter=filter, page_size=page_size)
        reply = await self.stub.SearchModelVersions(request, metadata=USER, timeout=10)
        return len(reply.model_versions)
