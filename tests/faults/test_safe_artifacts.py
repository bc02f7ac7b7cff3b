"""Hostile and damaged artifacts sent to the registry and inference as processes, the way
an attacker with a writer's access would: pickles (plain, joblib, cloudpickle) that run
code when loaded, a skops file naming a type nobody trusts, a legacy binary XGBoost file,
truncated files, a digest that does not match, artifacts over the size limit. Each is
refused with a clear status, its code never runs, nothing of it is kept, and the
registry serves on. Inference never serves bytes whose digest does not match: a tampered
copy in the registry's store is refused, one in inference's own cache is replaced."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib
import pickle
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from keel.inference.v1 import inference_pb2, inference_pb2_grpc
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc
from tests.support.faults import LEAKS, ServiceProcess, services
from tests.support.inference import raw_request
from tests.support.registry import (
    Artifact,
    Client,
    rpc_error,
    signature,
    training_data,
    upload_requests,
    xgboost_artifact,
)
from tests.support.suite import wait_model_ready

MODEL = "churn"
LIMIT = 256 * 1024  # the registry's artifact size limit in this test
INVALID, TOO_BIG = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED


class Exploit:
    """Unpickling this creates ``target``: code runs on load."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (pathlib.Path.touch, (self.target,))


def by_value_exploit(target: Path) -> object:
    """The same, with the function shipped by value, as cloudpickle does for a lambda."""
    touch = lambda path: pathlib.Path(path).touch()  # noqa: E731 - pickled by value

    class Reducer:
        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return (touch, (str(target),))

    return Reducer()


class Custom:
    """A class skops has never heard of."""

    def __init__(self) -> None:
        self.weights = [1.0, 2.0]


def hostile_uploads(target: Path, folder: Path) -> dict[str, tuple[bytes, str]]:
    """Name -> (bytes, what the refusal must say): each refused at upload, as
    INVALID_ARGUMENT; the pickles would create ``target`` if ever loaded."""
    joblib: Any = pytest.importorskip("joblib")
    cloudpickle: Any = pytest.importorskip("cloudpickle")
    skops_io: Any = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer

    joblib.dump(Exploit(target), folder / "model.joblib", compress=("zlib", 3))
    x, y = training_data()
    skops_model = skops_io.dumps(LogisticRegression().fit(x, y))
    return {
        "pickle": (pickle.dumps(Exploit(target)), "pickle stream is refused"),
        "joblib": ((folder / "model.joblib").read_bytes(), "compressed pickle stream"),
        "cloudpickle": (cloudpickle.dumps(by_value_exploit(target)), "cloudpickle stream"),
        "skops-custom-type": (skops_io.dumps(Custom()), "not on the server's allowlist"),
        "skops-os-system": (
            skops_io.dumps(FunctionTransformer(os.system)),
            "not on the server's allowlist",
        ),
        "xgboost-legacy-binary": (b"binf" + bytes(64), "legacy binary XGBoost model"),
        "skops-truncated": (skops_model[: len(skops_model) // 2], "truncated or corrupt"),
    }


def version_of(artifact_sha256: str) -> model_pb2.ModelVersion:
    return model_pb2.ModelVersion(
        flavor=model_pb2.FLAVOR_XGBOOST,
        artifact=model_pb2.Artifact(sha256=artifact_sha256),
        signature=signature(("f0", "f1", "f2", "f3")),
    )


async def refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    error = await rpc_error(call)
    return error.code(), str(error.details() or "")


def refusal_of_early_end(address: str, requests: Any) -> tuple[grpc.StatusCode, str]:
    """A client-streaming call the server ends before the client has sent everything,
    made with the synchronous client: grpc.aio's client sometimes reports its own failed
    write ("INTERNAL: Internal error from Core") instead of the status the server sent
    (grpc/grpc#36066); the synchronous client, like other gRPC implementations, reports
    the server's."""
    with grpc.insecure_channel(address) as channel:
        try:
            pb_grpc.RegistryServiceStub(channel).UploadArtifact(requests, timeout=10)
        except grpc.RpcError as error:
            return error.code(), str(error.details() or "")
    raise AssertionError("the call succeeded")


async def artifact_absent(client: Client, sha256: str) -> bool:
    error = await rpc_error(
        client.stub.GetArtifact(pb.GetArtifactRequest(name=f"artifacts/{sha256}"), timeout=10)
    )
    return error.code() == grpc.StatusCode.NOT_FOUND


async def serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def test_hostile_and_damaged_artifacts_are_refused_end_to_end(
    tmp_path: Path, figures: list[str]
) -> None:
    target = tmp_path / "pwned"
    uploads = hostile_uploads(target, tmp_path)
    good = xgboost_artifact(trees=5)
    store = tmp_path / "registry" / "artifacts"
    env = {"KEEL_REGISTRY_MAX_ARTIFACT_BYTES": str(LIMIT)}
    with services(tmp_path) as started:
        registry = started["registry"] = ServiceProcess("registry", tmp_path, "registry", env)
        async with grpc.aio.insecure_channel(registry.start()) as channel:
            client = Client(channel)
            await client.create_model(MODEL)
            refused: dict[str, tuple[grpc.StatusCode, str]] = {}
            for name, (data, _) in uploads.items():
                refused[name] = await refusal(client.stub.UploadArtifact(upload_requests(data)))
            # A digest that is not the bytes', and sizes over the limit, declared or not.
            refused["digest-mismatch"] = await refusal(
                client.stub.UploadArtifact(upload_requests(good.data, sha256="ab" * 32))
            )
            big = bytes(LIMIT + 1)
            refused["declared-too-big"] = await refusal(
                client.stub.UploadArtifact(upload_requests(big))
            )
            refused["sent-too-big"] = await asyncio.to_thread(
                refusal_of_early_end, registry.address, upload_requests(big, size=1000)
            )
            # A truncated XGBoost file looks like UBJSON: kept until its first registration
            # loads it (safely), then refused and removed.
            truncated = good.data[: len(good.data) // 2]
            truncated_sha256 = hashlib.sha256(truncated).hexdigest()
            await client.stub.UploadArtifact(upload_requests(truncated), timeout=10)
            refused["xgboost-truncated"] = await refusal(
                client.stub.CreateModelVersion(
                    pb.CreateModelVersionRequest(
                        parent=f"models/{MODEL}", model_version=version_of(truncated_sha256)
                    ),
                    timeout=30,
                )
            )
            sent = [data for data, _ in uploads.values()] + [big, truncated]
            absent = [await artifact_absent(client, hashlib.sha256(d).hexdigest()) for d in sent]
            healthy = await serving(registry.address)
            version = await client.register(MODEL, good)
        figures.extend(f"hostile artifact {n}: {c.name} {d}" for n, (c, d) in refused.items())

    for name, (_, says) in uploads.items():
        assert refused[name][0] == INVALID and says in refused[name][1], (name, refused[name])
    assert refused["digest-mismatch"][0] == INVALID and "sha256" in refused["digest-mismatch"][1]
    assert (
        refused["declared-too-big"][0] == TOO_BIG and str(LIMIT) in refused["declared-too-big"][1]
    )
    assert refused["sent-too-big"][0] == TOO_BIG
    assert refused["xgboost-truncated"][0] == INVALID, refused["xgboost-truncated"]
    assert not [n for n, (_, d) in refused.items() if any(word in d for word in LEAKS)]
    assert not target.exists(), "a pickle ran in the registry"
    assert all(absent)
    assert sorted(p.name for p in (store / "tmp").iterdir()) == []
    assert healthy and version.version == 1
    assert "Traceback" not in registry.output()


def tamper(path: Path) -> None:
    """Flip one byte in the middle: same size, another digest."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def stored(folder: Path, artifact: Artifact) -> Path:
    return folder / "sha256" / artifact.sha256[:2] / artifact.sha256[2:]


async def served_model(address: str) -> inference_pb2.ServedModel:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await inference_pb2_grpc.InferenceServiceStub(channel).GetServedModel(
            inference_pb2.GetServedModelRequest(name=MODEL), timeout=10
        )
    return reply.served_model


async def served_route(address: str) -> inference_pb2.Route:
    (route,) = (await served_model(address)).routes
    return route


async def answered_by(address: str) -> str:
    """The version that answers a request, once the model is ready."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        await wait_model_ready(stub, MODEL)
        reply = await stub.ModelInfer(raw_request(MODEL, training_data()[0][:4]), timeout=10)
    return reply.model_version


async def outcome(address: str) -> str:
    """How inference handles one request: 'answered by <version>' or the status code."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        try:
            reply = await stub.ModelInfer(raw_request(MODEL, training_data()[0][:4]), timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code().name
    return f"answered by {reply.model_version}"


async def test_inference_never_serves_bytes_whose_digest_does_not_match(
    tmp_path: Path, figures: list[str]
) -> None:
    first, second = xgboost_artifact(trees=5, seed=0), xgboost_artifact(trees=9, seed=1)
    with services(tmp_path) as started:
        registry = started["registry"] = ServiceProcess("registry", tmp_path, "registry", {})
        async with grpc.aio.insecure_channel(registry.start()) as channel:
            client = Client(channel)
            await client.create_model(MODEL)
            await client.register(MODEL, first)
            await client.register(MODEL, second)
            await client.set_alias(MODEL, "production", 1)
            env = {
                "KEEL_INFERENCE_REGISTRY_ADDRESS": registry.address,
                "KEEL_INFERENCE_MONITOR_ADDRESS": "",
                "KEEL_INFERENCE_REGISTRY_RETRY_S": "0.2",
            }
            inference = started["inference"] = ServiceProcess(
                "inference", tmp_path, "inference", env
            )
            address = inference.start()
            served_first = await answered_by(address)

            # Its own cache tampered with while it was stopped: fetched again, not served.
            inference.stop()
            tamper(stored(inference.data_dir / "cache", first))
            inference.start()
            served_again = await answered_by(address)
            refetched = await served_route(address)

            # The registry's stored copy of version 2 tampered with, then promoted.
            tamper(stored(registry.data_dir / "artifacts", second))
            await client.set_alias(MODEL, "production", 2)
            served = await served_model(address)
            async with asyncio.timeout(30):
                while not served.pending_routes or (
                    served.pending_routes[0].state != inference_pb2.LOAD_STATE_FAILED
                ):
                    served = await served_model(address)
            route = served.pending_routes[0]
            after = await outcome(address)
    figures.append(f"tampered artifact promoted: {route.state_reason}; a request then: {after}")
    assert served_first == served_again == "1"
    assert refetched.artifact_source == inference_pb2.ARTIFACT_SOURCE_REGISTRY
    assert route.model_version == 2 and "digest" in route.state_reason, route.state_reason
    # The route stays on the last good version: answered by version 1, nothing refused.
    assert [r.model_version for r in served.routes] == [1] and served.ready
    assert after == "answered by 1", after
    assert "Traceback" not in inference.output()
