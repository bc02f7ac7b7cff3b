"""The registry SIGKILLed under inference load: inference keeps answering from the
versions it holds with no failed call; restarted while the registry is still down,
inference serves from its local cache; and when the registry is back (same port, same
data) an alias moved at once is followed, again with no failed call."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc

from keel.inference.v1 import inference_pb2, inference_pb2_grpc
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from tests.support.faults import InferenceLoad, ServiceProcess, services
from tests.support.registry import Client, training_data, xgboost_artifact
from tests.support.suite import wait_model_ready

MODEL = "churn"
CLIENTS = 8
WARM_S, OUTAGE_S, CACHED_S = 1.0, 3.0, 2.0


async def served_route(address: str) -> inference_pb2.Route:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        reply = await stub.GetServedModel(
            inference_pb2.GetServedModelRequest(name=MODEL), timeout=10
        )
    (route,) = reply.served_model.routes
    return route


async def registry_connected(address: str) -> bool:
    """Whether inference says it is following the registry's event stream."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        reply = await stub.ListServedModels(inference_pb2.ListServedModelsRequest(), timeout=10)
    return reply.replica.registry_connected


async def until_answered_by(load: InferenceLoad, version: str, since: float) -> float:
    """Seconds from ``since`` to the first answer by ``version``."""
    async with asyncio.timeout(60):
        while True:
            later = [ended for ended, v in load.versions if v == version and ended >= since]
            if later:
                return min(later) - since
            await asyncio.sleep(0.05)


async def test_registry_killed_inference_serves_on_and_catches_up(
    tmp_path: Path, figures: list[str]
) -> None:
    rows = training_data()[0][:64]
    with services(tmp_path) as started:
        registry = started["registry"] = ServiceProcess(
            "registry", tmp_path, "registry", {"KEEL_REGISTRY_EVENT_POLL_S": "0.05"}
        )
        registry_address = registry.start()
        async with grpc.aio.insecure_channel(registry_address) as channel:
            client = Client(channel)
            await client.create_model(MODEL)
            await client.register(MODEL, xgboost_artifact(trees=5, seed=0))
            await client.register(MODEL, xgboost_artifact(trees=9, seed=1))
            await client.set_alias(MODEL, "production", 1)
        inference = started["inference"] = ServiceProcess(
            "inference",
            tmp_path,
            "inference",
            {
                "KEEL_INFERENCE_REGISTRY_ADDRESS": registry_address,
                "KEEL_INFERENCE_MONITOR_ADDRESS": "",
                "KEEL_INFERENCE_REGISTRY_RETRY_S": "0.2",
            },
        )
        address = inference.start()
        async with grpc.aio.insecure_channel(address) as channel:
            await wait_model_ready(oip_grpc.GRPCInferenceServiceStub(channel), MODEL)

        # 1. The registry dies under load: inference answers on.
        outage = InferenceLoad(address, MODEL, rows, CLIENTS)
        outage.start()
        await asyncio.sleep(WARM_S)
        killed_at = time.monotonic()
        registry.kill()
        await asyncio.sleep(OUTAGE_S)
        await outage.stop()

        # 2. Inference restarted while the registry is still down: served from its cache.
        inference.stop()
        assert inference.proc is not None and inference.proc.returncode == 0, inference.output()
        inference.start()
        cached_route = await served_route(address)
        cached = InferenceLoad(address, MODEL, rows, CLIENTS)
        cached.start()
        await asyncio.sleep(CACHED_S)

        # 3. The registry is back on its port and data; the alias moves at once, before
        # inference has reconnected: inference catches up and serves version 2.
        registry.start()
        async with grpc.aio.insecure_channel(registry_address) as channel:
            await Client(channel).set_alias(MODEL, "production", 2)
        moved_at = time.monotonic()
        connected_at_move = await registry_connected(address)
        delay = await until_answered_by(cached, "2", moved_at)
        await asyncio.sleep(1.0)
        await cached.stop()
        route = await served_route(address)

    during = [c for c in outage.outcomes.calls if c.started >= killed_at]
    figures.append(
        f"registry down: {len(during)} calls answered by {CLIENTS} clients, "
        f"{len(outage.outcomes.failed())} failed; inference restarted on its cache: "
        f"{len(cached.outcomes.calls)} calls, {len(cached.outcomes.failed())} failed; "
        f"alias moved with inference {'' if connected_at_move else 'not yet '}reconnected, "
        f"followed {delay * 1000:.0f} ms later"
    )
    assert outage.outcomes.failed() == [] and len(during) > 10 * CLIENTS
    assert outage.answered_by() == {"1"}
    assert cached_route.model_version == 1
    assert cached_route.artifact_source == inference_pb2.ARTIFACT_SOURCE_CACHE
    assert cached_route.state == inference_pb2.LOAD_STATE_READY
    assert cached.outcomes.failed() == []
    assert cached.answered_by(until=moved_at) == {"1"}
    assert cached.answered_by(since=moved_at + delay + 0.5) == {"2"}
    assert route.model_version == 2 and route.state == inference_pb2.LOAD_STATE_READY
