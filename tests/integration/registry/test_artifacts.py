"""Artifacts: verified, deduplicated, content-addressed uploads; resumable downloads;
unsafe formats refused and never loaded."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pickle
from pathlib import Path

import grpc

from keel.registry.v1 import registry_pb2 as pb
from tests.support.registry import Client, rpc_error, upload_requests, xgboost_artifact


async def test_upload_dedupe_and_download_with_offset(registry: Client) -> None:
    artifact = xgboost_artifact(trees=40)
    first = await registry.upload(artifact)
    again = await registry.upload(artifact)
    assert first.artifact.sha256 == artifact.sha256 and not first.already_existed
    assert again.already_existed and first.artifact.size_bytes == len(artifact.data)
    chunks = [
        r
        async for r in registry.stub.DownloadArtifact(
            pb.DownloadArtifactRequest(name=f"artifacts/{artifact.sha256}")
        )
    ]
    assert chunks[0].WhichOneof("content") == "artifact"
    body = b"".join(r.chunk for r in chunks[1:])
    assert hashlib.sha256(body).hexdigest() == artifact.sha256
    tail = [
        r.chunk
        async for r in registry.stub.DownloadArtifact(
            pb.DownloadArtifactRequest(name=f"artifacts/{artifact.sha256}", offset=100)
        )
        if r.WhichOneof("content") == "chunk"
    ]
    assert b"".join(tail) == artifact.data[100:]


async def test_the_same_new_artifact_uploaded_by_many_clients_at_once(registry: Client) -> None:
    """Every upload of bytes that are new succeeds and exactly one says it created them
    (on PostgreSQL the racing inserts used to end in a unique violation: INTERNAL)."""
    for trees in (7, 8, 9):  # a few rounds: the race needs the uploads to overlap
        artifact = xgboost_artifact(trees=trees)
        answers = await asyncio.gather(*(registry.upload(artifact) for _ in range(8)))
        assert {a.artifact.sha256 for a in answers} == {artifact.sha256}
        assert sum(not a.already_existed for a in answers) == 1


async def test_digest_and_size_mismatches_are_refused(registry: Client) -> None:
    data = xgboost_artifact().data
    wrong = await rpc_error(registry.stub.UploadArtifact(upload_requests(data, sha256="a" * 64)))
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT and "a" * 64 in (wrong.details() or "")
    short = await rpc_error(
        registry.stub.UploadArtifact(upload_requests(data, size=len(data) + 10))
    )
    assert short.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = await rpc_error(
        registry.stub.GetArtifact(pb.GetArtifactRequest(name="artifacts/" + "a" * 64))
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


class _CreatesFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


async def test_a_malicious_pickle_is_refused_and_never_loaded(
    registry: Client, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_CreatesFile(str(marker)))
    refused = await rpc_error(registry.stub.UploadArtifact(upload_requests(payload)))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pickle" in (refused.details() or "")
    assert not marker.exists()
    assert not os.path.exists(marker)
    absent = await rpc_error(
        registry.stub.GetArtifact(
            pb.GetArtifactRequest(name=f"artifacts/{hashlib.sha256(payload).hexdigest()}")
        )
    )
    assert absent.code() == grpc.StatusCode.NOT_FOUND


async def test_artifacts_on_an_fsspec_memory_filesystem(tmp_path: Path) -> None:
    import uuid

    import fsspec

    from tests.support.registry import running_registry

    root = f"memory://keel-{uuid.uuid4().hex}"
    artifact = xgboost_artifact()
    async with running_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path, root) as (client, _):
        await client.create_model("churn")
        version = await client.register("churn")
        assert version.artifact.sha256 == artifact.sha256
        fs = fsspec.filesystem("memory")
        stored = (
            f"{root.removeprefix('memory://')}/sha256/{artifact.sha256[:2]}/{artifact.sha256[2:]}"
        )
        assert fs.cat_file(stored) == artifact.data
        chunks = [
            r.chunk
            async for r in client.stub.DownloadArtifact(
                pb.DownloadArtifactRequest(name=f"artifacts/{artifact.sha256}")
            )
            if r.WhichOneof("content") == "chunk"
        ]
        assert b"".join(chunks) == artifact.data


async def test_a_broken_xgboost_file_is_refused_at_registration_and_removed(
    registry: Client,
) -> None:
    from keel.registry.v1 import model_pb2
    from tests.support.registry import signature

    truncated = xgboost_artifact().data[:-40]
    sha256 = hashlib.sha256(truncated).hexdigest()
    stored = await registry.stub.UploadArtifact(upload_requests(truncated))
    assert stored.artifact.format == model_pb2.ARTIFACT_FORMAT_XGBOOST_UBJSON  # loaded later
    await registry.create_model("churn")
    version = model_pb2.ModelVersion(
        flavor=model_pb2.FLAVOR_XGBOOST,
        artifact=model_pb2.Artifact(sha256=sha256),
        signature=signature(("f0", "f1", "f2", "f3")),
    )
    refused = await rpc_error(
        registry.stub.CreateModelVersion(
            pb.CreateModelVersionRequest(parent="models/churn", model_version=version)
        )
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Traceback" not in (refused.details() or "")
    gone = await rpc_error(
        registry.stub.GetArtifact(pb.GetArtifactRequest(name=f"artifacts/{sha256}"))
    )
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    listed = await registry.stub.ListModelVersions(
        pb.ListModelVersionsRequest(parent="models/churn")
    )
    assert list(listed.model_versions) == []
