"""The registry's PostgreSQL (a cluster of the test's own, made with ``initdb``) stopped
and started again under a load of writers and readers: every call either succeeds or
fails as UNAVAILABLE with a clean message; after the restart every call succeeds, every
registration acknowledged is there and whole, and a registration retried with its
``request_id`` is never registered twice."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import grpc

from keel.registry.v1 import model_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.faults import Outcomes, ServiceProcess, own_postgres, services
from tests.support.registry import Artifact, Client, signature, xgboost_artifact

WRITERS, READERS = 4, 4
BEFORE_S, OUTAGE_S, AFTER_S = 2.0, 2.0, 3.0
SETTLE_S = 1.0  # after the restart, the pool's stale connections are found and replaced
MODEL = "churn"
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def version_message(artifact: Artifact, writer: int, n: int) -> model_pb2.ModelVersion:
    return model_pb2.ModelVersion(
        flavor=artifact.flavor,  # type: ignore[arg-type]
        artifact=model_pb2.Artifact(sha256=artifact.sha256),
        signature=signature(artifact.features),
        tags={"writer": str(writer), "n": str(n)},
        description=f"writer {writer} registration {n}",
    )


class Load:
    """Writers register versions (by ``request_id``) and move ``staging`` to them;
    readers get, list and resolve. Every call is recorded with its outcome."""

    def __init__(self, client: Client, artifacts: list[Artifact]) -> None:
        self.client = client
        self.artifacts = artifacts
        self.outcomes = Outcomes()
        self.registered: dict[str, model_pb2.ModelVersion] = {}  # request_id -> answer
        self.unanswered: dict[str, tuple[int, int]] = {}  # request_id -> (writer, n)
        self.aliases_set: list[int] = []
        self.running = True

    async def register(self, writer: int, n: int) -> model_pb2.ModelVersion | None:
        artifact = self.artifacts[(writer + n) % len(self.artifacts)]
        request_id = f"w{writer}-{n}"
        stub, md = self.client.stub, self.client.md
        request = pb.CreateModelVersionRequest(
            parent=f"models/{MODEL}",
            model_version=version_message(artifact, writer, n),
            request_id=request_id,
        )
        reply = await self.outcomes.record(
            "CreateModelVersion", stub.CreateModelVersion(request, metadata=md, timeout=10)
        )
        if reply is None:
            self.unanswered[request_id] = (writer, n)
            return None
        self.unanswered.pop(request_id, None)
        self.registered[request_id] = reply.model_version
        return reply.model_version

    async def writer(self, writer: int) -> None:
        n = 0
        while self.running:
            n += 1
            artifact = self.artifacts[(writer + n) % len(self.artifacts)]
            await self.outcomes.record("UploadArtifact", self.client.upload(artifact))
            version = await self.register(writer, n)
            if version is None:
                continue
            request = pb.SetAliasRequest(
                name=f"models/{MODEL}/aliases/staging", version=version.version
            )
            reply = await self.outcomes.record(
                "SetAlias", self.client.stub.SetAlias(request, metadata=self.client.md, timeout=10)
            )
            if reply is not None:
                self.aliases_set.append(version.version)

    async def reader(self) -> None:
        stub = self.client.stub
        while self.running:
            await self.outcomes.record(
                "GetModelVersion",
                stub.GetModelVersion(
                    pb.GetModelVersionRequest(name=f"models/{MODEL}/versions/1"), timeout=10
                ),
            )
            await self.outcomes.record(
                "ListModelVersions",
                stub.ListModelVersions(
                    pb.ListModelVersionsRequest(parent=f"models/{MODEL}", page_size=20),
                    timeout=10,
                ),
            )
            await self.outcomes.record(
                "ResolveAlias",
                stub.ResolveAlias(pb.ResolveAliasRequest(reference=f"{MODEL}@staging"), timeout=10),
            )


async def all_versions(client: Client) -> list[model_pb2.ModelVersion]:
    versions: list[model_pb2.ModelVersion] = []
    token = ""
    while True:
        page = await client.stub.ListModelVersions(
            pb.ListModelVersionsRequest(
                parent=f"models/{MODEL}",
                page_size=200,
                page_token=token,
                view=model_pb2.MODEL_VERSION_VIEW_FULL,
            ),
            timeout=30,
        )
        versions.extend(page.model_versions)
        token = page.next_page_token
        if not token:
            return versions


async def staging_moves(client: Client) -> list[int]:
    """The versions ``staging`` was moved to, oldest first."""
    moves: list[int] = []
    token = ""
    while True:
        page = await client.stub.ListAliasHistory(
            pb.ListAliasHistoryRequest(
                parent=f"models/{MODEL}", alias="staging", page_size=500, page_token=token
            ),
            timeout=30,
        )
        moves.extend(move.to_version for move in page.moves)
        token = page.next_page_token
        if not token:
            return moves


async def downloaded_sha256(client: Client, sha256: str) -> str:
    digest = hashlib.sha256()
    async for part in client.stub.DownloadArtifact(
        pb.DownloadArtifactRequest(name=f"artifacts/{sha256}"), timeout=30
    ):
        if part.WhichOneof("content") == "chunk":
            digest.update(part.chunk)
    return digest.hexdigest()


async def test_postgres_restart_under_load_fails_cleanly_and_loses_nothing(
    tmp_path: Path, figures: list[str]
) -> None:
    artifacts = [xgboost_artifact(trees=3 + i, seed=i) for i in range(3)]
    with own_postgres() as postgres, services(tmp_path) as started:
        env = {"KEEL_REGISTRY_DATABASE_URL": postgres.url}
        registry = started["registry"] = ServiceProcess("registry", tmp_path, "registry", env)
        async with grpc.aio.insecure_channel(registry.start()) as channel:
            client = Client(channel)
            await client.create_model(MODEL)
            await client.register(MODEL, artifacts[0])
            await client.set_alias(MODEL, "staging", 1)
            load = Load(client, artifacts)
            tasks = [asyncio.create_task(load.writer(w)) for w in range(WRITERS)]
            tasks += [asyncio.create_task(load.reader()) for _ in range(READERS)]
            await asyncio.sleep(BEFORE_S)
            stopped_at = time.monotonic()
            await asyncio.to_thread(postgres.stop, "fast")
            await asyncio.sleep(OUTAGE_S)
            await asyncio.to_thread(postgres.start)
            restarted_at = time.monotonic()
            await asyncio.sleep(AFTER_S)
            load.running = False
            await asyncio.gather(*tasks)

            # Registrations not answered during the outage, retried with their request_id.
            for request_id, (writer, n) in sorted(load.unanswered.items()):
                assert await load.register(writer, n) is not None, request_id
            versions = await all_versions(client)
            digests = {a.sha256: await downloaded_sha256(client, a.sha256) for a in artifacts}
            staging = await client.stub.GetAlias(
                pb.GetAliasRequest(name=f"models/{MODEL}/aliases/staging"), timeout=10
            )
            moves = await staging_moves(client)
        assert registry.proc is not None and registry.proc.poll() is None, registry.output()

    calls = load.outcomes.calls
    during = [c for c in calls if stopped_at <= c.ended and c.started <= restarted_at]
    settled = [c for c in calls if c.started >= restarted_at + SETTLE_S]
    last_failure = max((c.ended for c in load.outcomes.failed()), default=restarted_at)
    figures.append(
        f"PostgreSQL restarted: {len(calls)} registry calls by {WRITERS} writers and "
        f"{READERS} readers: "
        f"{load.outcomes.codes()}; {len(during)} overlapped the {OUTAGE_S:.0f} s outage "
        f"({sum(c.code == UNAVAILABLE for c in during)} UNAVAILABLE), {len(settled)} after "
        f"it settled; last failure {(last_failure - restarted_at) * 1000:.0f} ms after the "
        f"restart; {len(load.registered)} versions registered"
    )
    # Failures are clean: UNAVAILABLE only, while the database was away, no leaked detail.
    assert {c.code for c in calls} <= {grpc.StatusCode.OK, UNAVAILABLE}, (
        load.outcomes.failed(),
        registry.errors(),
    )
    assert load.outcomes.leaks() == []
    assert any(c.code == UNAVAILABLE for c in during), "the outage was not felt"
    assert all(c.started <= restarted_at + SETTLE_S for c in load.outcomes.failed()), [
        str(c) for c in load.outcomes.failed() if c.started > restarted_at
    ]
    kinds = {c.kind for c in calls}
    assert {c.kind for c in settled if c.code == grpc.StatusCode.OK} == kinds
    assert "unhandled error" not in registry.output(), registry.errors()

    # Nothing half-written: one version per registration (retries included), each whole.
    by_number = {v.version: v for v in versions}
    assert sorted(by_number) == list(range(1, len(versions) + 1))
    assert len(versions) == 1 + len(load.registered)
    for request_id, answer in load.registered.items():
        stored = by_number[answer.version]
        writer_tag, n_tag = request_id[1:].split("-")
        assert dict(stored.tags) == {"writer": writer_tag, "n": n_tag}, request_id
        assert stored.artifact.sha256 == answer.artifact.sha256
    known = {a.sha256: a for a in artifacts}
    for version in versions:
        assert version.status == model_pb2.MODEL_VERSION_STATUS_READY, version.name
        artifact = known[version.artifact.sha256]
        assert version.artifact.size_bytes == len(artifact.data)
        assert [f.name for f in version.signature.inputs] == list(artifact.features)
    assert digests == {sha: sha for sha in digests}
    # Every alias move acknowledged is in the history, and the alias names a version.
    assert staging.alias.version in by_number
    assert set(load.aliases_set) <= set(moves)
