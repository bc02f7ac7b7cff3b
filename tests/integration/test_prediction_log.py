"""The prediction log from inference to the monitor, all in-process on real servers: every
answered row is counted once by the monitor with its id and trace; while the monitor is
down rows wait in the spool and are replayed when it returns; a full spool drops its
oldest batches and says so; PII features never leave inference in clear."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keel.monitor.v1 import monitor_pb2 as pb
from keel.oip.v2 import open_inference_pb2 as oip
from services.inference.shipping import pii_digest
from tests.support.inference import Inference, raw_request, running_inference
from tests.support.monitor import frame, log_classifier, running_monitor
from tests.support.registry import Client, running_registry
from tests.support.suite import rows_counted, scope

pytestmark = pytest.mark.integration
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CHURN = scope("churn")


@dataclass
class Suite:
    registry: Client
    registry_address: str
    tmp: Path


@asynccontextmanager
async def churn_classifier(tmp: Path, **log_model: Any) -> AsyncIterator[Suite]:
    """A registry whose model ``churn`` (4 numeric features x0..x3, a reference profile)
    has version 1 in production."""
    async with running_registry(f"sqlite:///{tmp / 'r.db'}", tmp / "registry") as (client, port):
        address = f"127.0.0.1:{port}"
        version = await log_classifier(address, "churn", **log_model)
        await client.set_alias("churn", "production", version)
        yield Suite(client, address, tmp)


def monitor_of(suite: Suite, **overrides: Any) -> Any:
    return running_monitor(
        suite.registry_address,
        f"sqlite:///{suite.tmp / 'm.db'}",
        suite.tmp / "monitor",
        **overrides,
    )


def inference_of(suite: Suite, monitor_address: str, **overrides: Any) -> Any:
    port = int(suite.registry_address.rsplit(":", 1)[1])
    return running_inference(
        port,
        suite.tmp / "inference",
        monitor_address=monitor_address,
        prediction_log_flush_s=0.05,
        prediction_log_retry_s=0.1,
        **overrides,
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def sample(served: Inference, name: str) -> float:
    value = served.metrics.get_sample_value(name, {})
    assert value is not None, name
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def send(served: Inference, requests: int, rows: int, seed: int = 0) -> list[str]:
    """``requests`` requests of ``rows`` rows each; the prediction ids answered."""
    x = frame(requests * rows, seed).to_numpy()
    ids = []
    for i in range(requests):
        reply = await served.stub.ModelInfer(raw_request("churn", x[i * rows : (i + 1) * rows]))
        ids.append(reply.id)
    return ids


async def test_every_answered_row_is_counted_once_with_its_id_and_trace(tmp_path: Path) -> None:
    async with churn_classifier(tmp_path) as suite, monitor_of(suite) as monitor:
        async with inference_of(suite, monitor.address) as served:
            x = frame(30, 5).to_numpy()
            named = raw_request("churn", x[:3], request_id="order-17")
            traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
            reply = await served.stub.ModelInfer(named, metadata=(("traceparent", traceparent),))
            ids = [reply.id, *await send(served, 20, 1), *await send(served, 5, 7, seed=1)]
            total = 3 + 20 + 35

            async def all_counted() -> bool:
                return await rows_counted(monitor.stub, CHURN) >= total

            await eventually(all_counted)
            await asyncio.sleep(0.3)  # anything counted twice would show by now
            assert await rows_counted(monitor.stub, CHURN) == total
            assert sample(served, "keel_prediction_log_delivered_rows_total") == total
            assert sample(served, "keel_prediction_log_dropped_rows_total") == 0
            assert sample(served, "keel_prediction_log_spooled_rows") == 0  # all acknowledged
            found = await monitor.stub.GetPrediction(
                pb.GetPredictionRequest(model="models/churn", prediction_id="order-17/2")
            )
    assert ids[0] == "order-17" and len(set(ids)) == len(ids)
    assert all(len(i) == 32 for i in ids[1:])  # generated ids for requests without one
    row = found.prediction.row
    assert row.version == 1 and row.trace_ids.hex() == TRACE_ID
    logged = {c.name: c.doubles.values[0] for c in row.features}
    assert logged == pytest.approx({f"x{j}": x[2, j] for j in range(4)}, rel=1e-6)


async def test_rows_wait_in_the_spool_while_the_monitor_is_down(tmp_path: Path) -> None:
    port = free_port()
    async with churn_classifier(tmp_path) as suite:
        async with inference_of(suite, f"127.0.0.1:{port}") as served:
            started = time.perf_counter()
            await send(served, 40, 5)
            answered_in = time.perf_counter() - started

            async def all_spooled() -> bool:
                return sample(served, "keel_prediction_log_spooled_rows") == 200

            await eventually(all_spooled)
            assert sample(served, "keel_prediction_log_connected") == 0
            async with monitor_of(suite, port=port) as monitor:

                async def all_counted() -> bool:
                    return await rows_counted(monitor.stub, CHURN) >= 200

                await eventually(all_counted)
                await send(served, 10, 1, seed=3)

                async def later_too() -> bool:
                    return await rows_counted(monitor.stub, CHURN) >= 210

                await eventually(later_too)
                assert await rows_counted(monitor.stub, CHURN) == 210
                assert sample(served, "keel_prediction_log_spooled_rows") == 0
    assert answered_in < 5  # requests never waited for the monitor


async def test_a_full_spool_drops_its_oldest_batches_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    limit = 64 * 1024
    async with churn_classifier(tmp_path) as suite:
        async with inference_of(
            suite,
            f"127.0.0.1:{port}",
            prediction_log_spool_bytes=limit,
            prediction_log_batch_rows=50,
        ) as served:
            await send(served, 60, 50)

            def kept_and_lost() -> tuple[float, float]:
                return (
                    sample(served, "keel_prediction_log_spooled_rows"),
                    sample(served, "keel_prediction_log_dropped_rows_total"),
                )

            async def all_sealed() -> bool:
                return sum(kept_and_lost()) == 3000

            await eventually(all_sealed)
            kept, lost = kept_and_lost()
            spool = next((tmp_path / "inference" / "spool").iterdir())
            on_disk = sum(f.stat().st_size for f in spool.glob("*.seg"))
            assert on_disk <= limit and lost > 0
            async with monitor_of(suite, port=port) as monitor:

                async def replayed() -> bool:
                    return await rows_counted(monitor.stub, CHURN) >= kept

                await eventually(replayed)
                assert await rows_counted(monitor.stub, CHURN) == kept
    assert "prediction-log spool full: dropped" in caplog.text


async def test_pii_features_are_hashed_or_dropped_before_leaving_inference(
    tmp_path: Path,
) -> None:
    async with churn_classifier(tmp_path, pii={"x0": "hash", "x1": "drop"}) as suite:
        async with monitor_of(suite) as monitor:
            async with inference_of(
                suite,
                monitor.address,
                pii_hash_key="k" * 32,  # noqa: S106 - a test key
            ) as served:
                x = frame(4, 9).to_numpy()
                await served.stub.ModelInfer(raw_request("churn", x, request_id="p"))

                async def counted() -> bool:
                    return await rows_counted(monitor.stub, CHURN) >= 4

                await eventually(counted)
                found = await monitor.stub.GetPrediction(
                    pb.GetPredictionRequest(model="models/churn", prediction_id="p/1")
                )
    columns = {c.name: c for c in found.prediction.row.features}
    assert set(columns) == {"x0", "x2", "x3"}  # x1 dropped
    hashed = columns["x0"]
    [value] = hashed.strings.values or hashed.dictionary.dictionary
    assert value == pii_digest(b"k" * 32, repr(float(np.float32(x[1, 0]))))
    assert str(x[1, 0])[:6] not in value


async def test_a_request_gets_its_id_back(tmp_path: Path) -> None:
    async with churn_classifier(tmp_path) as suite:
        async with inference_of(suite, "") as served:
            reply = await served.stub.ModelInfer(
                raw_request("churn", frame(2, 1).to_numpy(), request_id="abc")
            )
            plain = await served.stub.ModelInfer(oip_request())
    assert reply.id == "abc" and len(plain.id) == 32 and plain.id[12] == "7"  # UUIDv7


def oip_request() -> oip.ModelInferRequest:
    return raw_request("churn", frame(1, 2).to_numpy())
