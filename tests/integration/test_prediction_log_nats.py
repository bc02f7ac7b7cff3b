"""The prediction log through NATS JetStream (the server this machine runs at
127.0.0.1:4222; `.ci/run` starts it when absent): inference publishes, the monitor
consumes with a durable consumer and explicit acks. The monitor stopped and started
again in the middle of the traffic still counts every prediction once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest

from services.common.jetstream import StreamNames
from tests.integration.test_prediction_log import (
    CHURN,
    Suite,
    churn_classifier,
    eventually,
    sample,
    send,
)
from tests.support.inference import running_inference
from tests.support.monitor import Monitor, running_monitor
from tests.support.suite import rows_counted

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
async def names() -> AsyncIterator[StreamNames]:
    """A stream of this test's own, deleted afterwards."""
    token = uuid.uuid4().hex[:10]
    yield StreamNames(f"KEEL_TEST_{token}", f"keel.test.{token}")
    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().delete_stream(f"KEEL_TEST_{token}")
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await client.close()


def monitor_on(suite: Suite, names: StreamNames) -> Any:
    return running_monitor(
        suite.registry_address,
        f"sqlite:///{suite.tmp / 'm.db'}",
        suite.tmp / "monitor",
        nats_url=NATS_URL,
        nats_stream=names.stream,
        nats_subject=names.subject,
    )


async def counted(monitor: Monitor, rows: int) -> None:
    async def reached() -> bool:
        return await rows_counted(monitor.stub, CHURN) >= rows

    await eventually(reached, timeout_s=30)
    await asyncio.sleep(0.5)  # a message applied twice would show by now
    assert await rows_counted(monitor.stub, CHURN) == rows


async def test_monitor_restarted_mid_traffic_counts_every_prediction_once(
    tmp_path: Path, names: StreamNames
) -> None:
    async with churn_classifier(tmp_path) as suite:
        port = int(suite.registry_address.rsplit(":", 1)[1])
        async with running_inference(
            port,
            tmp_path / "inference",
            monitor_address="unused:1",
            prediction_log_transport="nats",
            nats_url=NATS_URL,
            nats_stream=names.stream,
            nats_subject=names.subject,
            prediction_log_flush_s=0.05,
            prediction_log_batch_rows=20,
        ) as served:
            async with monitor_on(suite, names) as monitor:
                await send(served, 30, 4)
                await counted(monitor, 120)
            # the monitor is gone: predictions go on, into the stream
            await send(served, 25, 2, seed=1)

            async def published() -> bool:
                return sample(served, "keel_prediction_log_delivered_rows_total") >= 170

            await eventually(published)
            async with monitor_on(suite, names) as monitor:
                await send(served, 10, 1, seed=2)
                await counted(monitor, 180)
            assert sample(served, "keel_prediction_log_spooled_rows") == 0
