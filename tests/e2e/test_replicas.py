"""Replicas as processes: two registries on one PostgreSQL behind gRPC's client-side
`round_robin` both report an alias move (and one going away leaves the channel
working); two inference processes under load both swap to the new `production`
version with no failed call (the delay of each is printed). Two monitors merging to the
answer of one is in test_monitor_processes.py."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import event_pb2
from keel.registry.v1 import registry_pb2 as pb
from keel.registry.v1 import registry_pb2_grpc as pb_grpc
from tests.support.inference import raw_request
from tests.support.postgres import SKIP_REASON, admin_url, fresh_database
from tests.support.processes import processes, start_service, stop
from tests.support.registry import Client, training_data, xgboost_artifact

ROUND_ROBIN = [("grpc.lb_policy_name", "round_robin")]


def registries(tmp: Path, database_url: str, procs: list[subprocess.Popen[str]]) -> list[str]:
    env = {
        "KEEL_REGISTRY_DATABASE_URL": database_url,
        "KEEL_REGISTRY_ARTIFACT_ROOT": str(tmp / "artifacts"),
    }
    addresses = []
    for name in ("registry-a", "registry-b"):
        proc, address = start_service("registry", tmp, name, env)
        procs.append(proc)
        addresses.append(address)
    return addresses


async def first_alias_move(address: str, after: int) -> event_pb2.Event:
    async with grpc.aio.insecure_channel(address) as channel:
        stream = pb_grpc.RegistryServiceStub(channel).WatchEvents(
            pb.WatchEventsRequest(
                after_sequence=after, heartbeat_interval=duration_pb2.Duration(seconds=1)
            ),
            timeout=30,
        )
        async for item in stream:
            if item.WhichOneof("kind") == "event" and item.event.type in (
                event_pb2.CHANGE_TYPE_ALIAS_SET,
            ):
                stream.cancel()
                return item.event
    raise AssertionError(f"no alias move reported by {address}")


async def latest_sequence(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stream = pb_grpc.RegistryServiceStub(channel).WatchEvents(pb.WatchEventsRequest())
        first = await anext(aiter(stream))
        stream.cancel()
        return int(first.heartbeat.latest_sequence)


@pytest.mark.skipif(admin_url() is None, reason=SKIP_REASON)
async def test_two_registries_behind_round_robin_both_report_an_alias_move(
    tmp_path: Path,
) -> None:
    url = admin_url()
    assert url is not None
    with fresh_database(url) as database, processes() as procs:
        a, b = registries(tmp_path, database, procs)
        target = f"ipv4:{a},{b}"
        async with grpc.aio.insecure_channel(target, options=ROUND_ROBIN) as channel:
            client = Client(channel)
            await client.create_model("churn")
            await client.register("churn", xgboost_artifact(trees=5))
            after = await latest_sequence(a)
            watchers = [asyncio.create_task(first_alias_move(x, after)) for x in (a, b)]
            await asyncio.sleep(0.3)
            await client.set_alias("churn", "production", 1)
            seen = await asyncio.gather(*watchers)
            # every read through the balanced channel succeeds, whichever replica serves it
            for _ in range(20):
                held = await client.stub.GetAlias(
                    pb.GetAliasRequest(name="models/churn/aliases/production"), timeout=10
                )
                assert held.alias.version == 1
            stop(procs[0])  # replica a goes away: the channel keeps to b
            for _ in range(10):
                held = await client.stub.GetAlias(
                    pb.GetAliasRequest(name="models/churn/aliases/production"), timeout=10
                )
                assert held.alias.version == 1
    assert [(e.alias.name, e.alias.version) for e in seen] == [
        ("models/churn/aliases/production", 1)
    ] * 2
    assert seen[0].sequence == seen[1].sequence


async def test_two_inference_replicas_swap_with_no_failed_call(tmp_path: Path) -> None:
    rows = training_data()[0][:2]
    with processes() as procs:
        registry, registry_address = start_service("registry", tmp_path, "registry")
        procs.append(registry)
        async with grpc.aio.insecure_channel(registry_address) as channel:
            client = Client(channel)
            await client.create_model("churn")
            await client.register("churn", xgboost_artifact(trees=5, seed=0))
            await client.register("churn", xgboost_artifact(trees=9, seed=1))
            await client.set_alias("churn", "production", 1)
            env = {
                "KEEL_INFERENCE_REGISTRY_ADDRESS": registry_address,
                "KEEL_INFERENCE_MONITOR_ADDRESS": "",
            }
            replicas = {}
            for name in ("inference-a", "inference-b"):
                proc, address = start_service("inference", tmp_path, name, env)
                procs.append(proc)
                replicas[name] = address
            failures: list[str] = []
            first_v2: dict[str, float] = {}
            calls = {name: 0 for name in replicas}
            moved_at = 0.0
            running = True

            async def caller(name: str, address: str) -> None:
                async with grpc.aio.insecure_channel(address) as inference:
                    stub = oip_grpc.GRPCInferenceServiceStub(inference)
                    while running:
                        try:
                            reply = await stub.ModelInfer(raw_request("churn", rows), timeout=10)
                        except grpc.aio.AioRpcError as error:
                            failures.append(f"{name}: {error.code().name} {error.details()}")
                            continue
                        calls[name] += 1
                        if reply.model_version == "2" and moved_at and name not in first_v2:
                            first_v2[name] = time.perf_counter() - moved_at

            tasks = [
                asyncio.create_task(caller(name, address))
                for name, address in replicas.items()
                for _ in range(4)
            ]
            await asyncio.sleep(2.0)
            await client.set_alias("churn", "production", 2)
            moved_at = time.perf_counter()
            deadline = moved_at + 20
            while len(first_v2) < len(replicas) and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            running = False
            await asyncio.gather(*tasks)
    print(
        "\nswap delay from SetAlias to the first answer of version 2: "
        + ", ".join(f"{name} {delay * 1000:.0f} ms" for name, delay in sorted(first_v2.items()))
        + f"; calls {calls}"
    )
    assert failures == []
    assert set(first_v2) == set(replicas)
    assert all(count > 50 for count in calls.values())
