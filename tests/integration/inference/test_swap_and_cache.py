"""Hot swaps under load lose no call; a restart with the registry down serves the cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from tests.support.inference import churn_in_production, raw_output, raw_request, running_inference
from tests.support.registry import running_registry, training_data, xgboost_artifact

CLIENTS = 32


async def test_alias_moves_under_32_clients_fail_no_call_and_never_go_back(tmp_path: Path) -> None:
    rows = training_data()[0][:4]
    async with running_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "registry") as (
        registry,
        port,
    ):
        await registry.create_model("churn")
        for trees, seed in ((5, 0), (9, 1), (13, 2)):
            await registry.register("churn", xgboost_artifact(trees=trees, seed=seed))
        await registry.set_alias("churn", "production", 1)
        async with running_inference(port, tmp_path / "inference") as served:
            inference = served.stub
            stop = asyncio.Event()
            failures: list[BaseException] = []
            seen: list[list[int]] = [[] for _ in range(CLIENTS)]

            async def client(index: int) -> None:
                while not stop.is_set():
                    try:
                        reply = await inference.ModelInfer(raw_request("churn", rows), timeout=10)
                    except Exception as error:  # noqa: BLE001 - counted, asserted below
                        failures.append(error)
                        continue
                    seen[index].append(int(reply.model_version))

            tasks = [asyncio.create_task(client(i)) for i in range(CLIENTS)]
            await asyncio.sleep(0.5)
            for version in (2, 3):
                await registry.set_alias("churn", "production", version)
                while not any(s and s[-1] == version for s in seen):
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*tasks)
    assert failures == []
    for answers in seen:
        assert answers == sorted(answers), "a client went back to an older version after a swap"
    assert {v for answers in seen for v in answers} == {1, 2, 3}
    assert all(answers[-1] == 3 for answers in seen)


async def test_a_restart_with_the_registry_down_serves_the_cached_versions(tmp_path: Path) -> None:
    rows = training_data()[0][:3]
    async with churn_in_production(tmp_path) as (registry, port):
        async with running_inference(port, tmp_path / "inference") as served:
            inference = served.stub
            before = await inference.ModelInfer(raw_request("churn", rows))
    # The registry is gone; the inference service starts again on its cache.
    async with running_inference(port, tmp_path / "inference") as served:
        inference = served.stub
        assert (await inference.ServerReady(oip.ServerReadyRequest())).ready
        after = await inference.ModelInfer(raw_request("churn", rows))
        index = await inference.RepositoryIndex(oip.RepositoryIndexRequest(ready=True))
    assert after.model_version == before.model_version == "1"
    np.testing.assert_array_equal(
        raw_output(after, "probabilities"), raw_output(before, "probabilities")
    )
    assert [(m.name, m.version, m.state) for m in index.models] == [("churn", "1", "READY")]


__all__ = ["oip_grpc"]


async def test_a_move_to_a_version_that_cannot_load_keeps_serving_the_previous_one(
    tmp_path: Path,
) -> None:
    rows = training_data()[0][:4]
    broken = xgboost_artifact(trees=9, seed=1)
    async with running_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "registry") as (
        registry,
        port,
    ):
        await registry.create_model("churn")
        await registry.register("churn", xgboost_artifact(trees=5, seed=0))
        await registry.register("churn", broken)
        await registry.set_alias("churn", "production", 1)
        [stored] = (tmp_path / "registry").rglob(broken.sha256[2:])  # sha256/ab/cdef…
        stored.write_bytes(b"tampered" + broken.data[8:])  # the digest no longer matches
        async with running_inference(port, tmp_path / "inference") as served:
            answers: list[str] = []
            failures: list[BaseException] = []
            stop = asyncio.Event()

            async def client() -> None:
                while not stop.is_set():
                    try:
                        reply = await served.stub.ModelInfer(raw_request("churn", rows), timeout=10)
                    except Exception as error:  # noqa: BLE001 - counted, asserted below
                        failures.append(error)
                        continue
                    answers.append(reply.model_version)

            tasks = [asyncio.create_task(client()) for _ in range(4)]
            await asyncio.sleep(0.3)
            await registry.set_alias("churn", "production", 2)
            await asyncio.sleep(1.0)  # the load of version 2 fails meanwhile
            kept = list(answers)
            stored.write_bytes(broken.data)  # repaired: the next attempt loads it
            for _ in range(200):
                if answers and answers[-1] == "2":
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
    assert failures == []
    assert set(kept) == {"1"}  # the broken version never answered, nor failed a call
    assert answers[-1] == "2"  # and once it could be loaded, it took over
