"""The registry's artifact store failing while an upload streams in: the store's
filesystem fills up, or its folder turns read-only. The upload is refused with a clear
RESOURCE_EXHAUSTED or UNAVAILABLE (never INTERNAL), nothing of it is left (no temporary
file, no stored object, no database row), and once the store is healthy again uploads
and registrations work."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import numpy as np

from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc
from tests.support.faults import LEAKS, ServiceProcess, read_only, services, tiny_filesystem
from tests.support.registry import CHUNK, Client, rpc_error, xgboost_artifact

MODEL = "churn"


def stored_path(store: Path, sha256: str) -> Path:
    return store / "sha256" / sha256[:2] / sha256[2:]


def temporary_files(store: Path) -> list[Path]:
    folder = store / "tmp"
    return sorted(folder.iterdir()) if folder.exists() else []


def artifact_rows(data_dir: Path) -> set[str]:
    """The digests the registry's database (SQLite in its data folder) has rows for."""
    uri = f"file:{data_dir / 'registry.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        return {sha for (sha,) in db.execute("SELECT sha256 FROM registry_artifacts")}


def bytes_used(folder: Path) -> int:
    stat = os.statvfs(folder)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


async def upload_interrupted(
    address: str, client: Client, data: bytes, store: Path, fault: Callable[[], object]
) -> grpc.Call:
    """Upload ``data``; once the registry has its temporary file open (the header and
    the first chunk are in), call ``fault`` and send the rest. The error it ends with.

    Sent with gRPC's synchronous API, as the Keel client sends uploads. grpc.aio's client
    reports INTERNAL ("Internal error from Core") instead of the server's status when one
    of its writes races the server ending the call (grpc/grpc#36066), which a refused
    multi-megabyte upload does."""
    resume = threading.Event()

    def requests() -> Iterator[pb.UploadArtifactRequest]:
        header = pb.UploadArtifactHeader(
            sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)
        )
        yield pb.UploadArtifactRequest(header=header)
        yield pb.UploadArtifactRequest(chunk=data[:CHUNK])
        resume.wait(timeout=30)
        for start in range(CHUNK, len(data), CHUNK):
            yield pb.UploadArtifactRequest(chunk=data[start : start + CHUNK])

    def upload() -> grpc.Call:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.RegistryServiceStub(channel)
            try:
                stub.UploadArtifact(requests(), metadata=client.md, timeout=30)
            except grpc.RpcError as error:
                assert isinstance(error, grpc.Call)
                return error
        raise AssertionError("the upload was accepted; it should have been refused")

    waiting = asyncio.ensure_future(asyncio.to_thread(upload))
    async with asyncio.timeout(10):
        while not temporary_files(store):
            await asyncio.sleep(0.01)
    fault()
    resume.set()
    return await waiting


def clean(error: grpc.Call | grpc.aio.AioRpcError) -> bool:
    details = str(error.details() or "")
    return (
        "artifact store" in details
        and "discarded" in details
        and not any(word in details for word in LEAKS)
    )


@contextmanager
def registry_on(tmp: Path, store: Path) -> Iterator[ServiceProcess]:
    with services(tmp) as started:
        env = {"KEEL_REGISTRY_ARTIFACT_ROOT": str(store)}
        registry = started["registry"] = ServiceProcess("registry", tmp, "registry", env)
        registry.start()
        yield registry


async def test_store_filling_up_mid_upload_refuses_it_and_keeps_nothing(
    tmp_path: Path, figures: list[str]
) -> None:
    store = tmp_path / "store"
    big = np.random.default_rng(7).bytes(6 << 20)  # twice what the store can hold
    big_sha256 = hashlib.sha256(big).hexdigest()
    with tiny_filesystem(store, "3m"), registry_on(tmp_path, store) as registry:
        async with grpc.aio.insecure_channel(registry.address) as channel:
            client = Client(channel)
            await client.create_model(MODEL)
            first = await client.register(MODEL, xgboost_artifact(trees=3))
            used = bytes_used(store)
            # No fault to inject: 6 MiB sent to 3 MiB of room fills the store by itself.
            error = await upload_interrupted(registry.address, client, big, store, lambda: None)
            missing = await rpc_error(
                client.stub.GetArtifact(pb.GetArtifactRequest(name=f"artifacts/{big_sha256}"))
            )
            leftovers, used_after = temporary_files(store), bytes_used(store)
            second = await client.register(MODEL, xgboost_artifact(trees=4, seed=1))
        rows = artifact_rows(registry.data_dir)
    figures.append(f"artifact store full mid-upload: {error.code().name} '{error.details()}'")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert clean(error), error.details()
    assert leftovers == [] and used_after == used
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert not stored_path(store, big_sha256).exists()
    assert big_sha256 not in rows
    assert (first.version, second.version) == (1, 2)
    assert rows == {first.artifact.sha256, second.artifact.sha256}
    assert "Traceback" not in registry.output()


async def test_store_turning_read_only_mid_upload_refuses_it_and_keeps_nothing(
    tmp_path: Path, figures: list[str]
) -> None:
    store = tmp_path / "store"
    artifact = xgboost_artifact(trees=6, seed=2)
    with registry_on(tmp_path, store) as registry:
        async with grpc.aio.insecure_channel(registry.address) as channel:
            client = Client(channel)
            await client.create_model(MODEL)
            first = await client.register(MODEL, xgboost_artifact(trees=3))
            with ExitStack() as fault:
                error = await upload_interrupted(
                    registry.address,
                    client,
                    artifact.data,
                    store,
                    lambda: fault.enter_context(read_only(store / "sha256")),
                )
                leftovers = temporary_files(store)
                refused = await rpc_error(client.register(MODEL, artifact))
            stored = stored_path(store, artifact.sha256).exists()
            rows = artifact_rows(registry.data_dir)
            with read_only(store):  # read-only from the start: refused before any byte
                at_once = await rpc_error(client.upload(artifact))
            second = await client.register(MODEL, artifact)
    figures.append(f"artifact store read-only mid-upload: {error.code().name} '{error.details()}'")
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert clean(error), error.details()
    assert leftovers == [] and not stored
    assert artifact.sha256 not in rows
    assert refused.code() == grpc.StatusCode.UNAVAILABLE, refused.details()
    assert at_once.code() == grpc.StatusCode.UNAVAILABLE and clean(at_once), at_once.details()
    assert (first.version, second.version) == (1, 2)
    assert second.artifact.sha256 == artifact.sha256
    assert "Traceback" not in registry.output()
