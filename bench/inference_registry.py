"""Registering the benchmark's model with Keel's registry, through its gRPC API as a user
would: CreateModel, UploadArtifact, CreateModelVersion (then wait for READY), SetAlias."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import grpc

from bench.inference_models import FEATURES, MODEL
from keel.common.v1 import schema_pb2
from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc

USER = (("x-keel-user", "bench"),)
CHUNK = 64 * 1024
TIMEOUT = 30


def _upload(data: bytes) -> Iterator[pb.UploadArtifactRequest]:
    header = pb.UploadArtifactHeader(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    yield pb.UploadArtifactRequest(header=header)
    for start in range(0, len(data), CHUNK):
        yield pb.UploadArtifactRequest(chunk=data[start : start + CHUNK])


def _signature() -> schema_pb2.Signature:
    return schema_pb2.Signature(
        inputs=[
            schema_pb2.Feature(
                name=f"f{i}",
                dtype=schema_pb2.DATA_TYPE_FLOAT32,
                kind=schema_pb2.FEATURE_KIND_NUMERIC,
                required=True,
            )
            for i in range(FEATURES)
        ],
        class_labels=["0", "1"],
    )


class Registry:
    """A blocking client for the few calls the benchmark makes."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.RegistryServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def create_model(self) -> None:
        model = model_pb2.Model(task=schema_pb2.TASK_BINARY_CLASSIFICATION)
        request = pb.CreateModelRequest(model=model, model_id=MODEL)
        self.stub.CreateModel(request, metadata=USER, timeout=TIMEOUT)

    def register(self, artifact: bytes) -> int:
        """A new READY version holding ``artifact``; its number."""
        self.stub.UploadArtifact(_upload(artifact), metadata=USER, timeout=TIMEOUT)
        version = model_pb2.ModelVersion(
            flavor=model_pb2.FLAVOR_XGBOOST,
            artifact=model_pb2.Artifact(sha256=hashlib.sha256(artifact).hexdigest()),
            signature=_signature(),
        )
        request = pb.CreateModelVersionRequest(parent=f"models/{MODEL}", model_version=version)
        reply = self.stub.CreateModelVersion(request, metadata=USER, timeout=TIMEOUT)
        number = reply.model_version.version
        deadline = time.monotonic() + TIMEOUT
        while True:
            got = self.stub.GetModelVersion(
                pb.GetModelVersionRequest(name=f"models/{MODEL}/versions/{number}"),
                metadata=USER,
                timeout=TIMEOUT,
            ).model_version
            if got.status == model_pb2.MODEL_VERSION_STATUS_READY:
                return number
            if got.status == model_pb2.MODEL_VERSION_STATUS_FAILED or time.monotonic() > deadline:
                raise SystemExit(f"version {number} did not become READY: {got.status_message}")
            time.sleep(0.05)

    def promote(self, version: int) -> None:
        request = pb.SetAliasRequest(name=f"models/{MODEL}/aliases/production", version=version)
        self.stub.SetAlias(request, metadata=USER, timeout=TIMEOUT)
