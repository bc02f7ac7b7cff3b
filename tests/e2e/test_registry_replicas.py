"""Two registry processes on one PostgreSQL, 32 clients registering versions and moving
aliases at once: versions dense and unique, every alias move in the audit log and the
event stream, and an event sequence without gaps."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from keel.registry.v1 import event_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.postgres import SKIP_REASON, admin_url, fresh_database
from tests.support.processes import start_service
from tests.support.registry import Client, xgboost_artifact

CLIENTS = 32
ROUNDS = 6
MODELS = ("churn", "fraud", "upsell", "credit")


def start_registry(
    tmp: Path, name: str, database_url: str, artifacts: Path
) -> tuple[subprocess.Popen[str], str]:
    env = {
        "KEEL_REGISTRY_DATABASE_URL": database_url,
        "KEEL_REGISTRY_ARTIFACT_ROOT": str(artifacts),
    }
    return start_service("registry", tmp, name, env)


async def worker(
    client: Client, seed: int, moves: list[tuple[str, int]], registered: list[tuple[str, int]]
) -> None:
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        model = rng.choice(MODELS)
        version = await client.register(model)
        registered.append((model, version.version))
        while True:  # compare-and-set until this client's move lands
            try:
                current = await client.stub.GetAlias(
                    pb.GetAliasRequest(name=f"models/{model}/aliases/staging"), timeout=10
                )
                held = current.alias.version
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
                held = 0
            try:
                reply = await client.set_alias(model, "staging", version.version, expected=held)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.ABORTED, error.details()
                continue
            moves.append((model, reply.alias.version))
            break


async def test_two_replicas_under_concurrent_writers(tmp_path: Path) -> None:
    url = admin_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    with fresh_database(url) as database:
        artifacts = tmp_path / "artifacts"
        first, first_address = start_registry(tmp_path, "r1", database, artifacts)
        second, second_address = start_registry(tmp_path, "r2", database, artifacts)
        try:
            async with (
                grpc.aio.insecure_channel(first_address) as one,
                grpc.aio.insecure_channel(second_address) as two,
            ):
                clients = [Client(one if i % 2 else two, user=f"user{i}") for i in range(CLIENTS)]
                for model in MODELS:
                    await clients[0].create_model(model)
                await clients[0].upload(xgboost_artifact())
                moves: list[tuple[str, int]] = []
                registered: list[tuple[str, int]] = []
                await asyncio.gather(
                    *(worker(c, i, moves, registered) for i, c in enumerate(clients))
                )
                await check(clients[1], moves, registered)
        finally:
            for proc in (first, second):
                proc.send_signal(signal.SIGTERM)
            outputs = [proc.communicate(timeout=30)[0] for proc in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs


async def check(
    client: Client, moves: list[tuple[str, int]], registered: list[tuple[str, int]]
) -> None:
    assert len(registered) == CLIENTS * ROUNDS and len(moves) == CLIENTS * ROUNDS
    for model in MODELS:
        listed = await client.stub.ListModelVersions(
            pb.ListModelVersionsRequest(parent=f"models/{model}", page_size=1000)
        )
        numbers = sorted(v.version for v in listed.model_versions)
        assert numbers == list(range(1, len(numbers) + 1)), (
            f"{model}: versions not dense: {numbers}"
        )
        assert numbers == sorted(n for m, n in registered if m == model)
        history = await client.stub.ListAliasHistory(
            pb.ListAliasHistoryRequest(parent=f"models/{model}", alias="staging", page_size=1000)
        )
        landed = [v for m, v in moves if m == model]
        assert sorted(m.to_version for m in history.moves) == sorted(landed)
        # No lost update: each move starts from the version the previous one set.
        chain = list(reversed(history.moves))
        assert all(a.to_version == b.from_version for a, b in zip(chain, chain[1:], strict=False))
    audit = await client.stub.ListAuditEntries(
        pb.ListAuditEntriesRequest(filter='action = "ALIAS_SET"', page_size=1000)
    )
    assert len(audit.entries) == len(moves)
    events: list[event_pb2.Event] = []
    async for item in client.stub.WatchEvents(
        pb.WatchEventsRequest(after_sequence=0, heartbeat_interval=duration_pb2.Duration(seconds=1))
    ):
        if item.WhichOneof("kind") == "event":
            events.append(item.event)
        elif events and item.heartbeat.latest_sequence == events[-1].sequence:
            break
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # no gap, none twice
    alias_events = [e for e in events if e.type == event_pb2.CHANGE_TYPE_ALIAS_SET]
    assert sorted((e.alias.name.split("/")[1], e.alias.version) for e in alias_events) == sorted(
        moves
    )
