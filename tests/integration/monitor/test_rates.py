"""A producer over the monitor's rows-per-second limit: a LogPredictionBatch call is
refused with RESOURCE_EXHAUSTED saying when to retry, a LogPredictions stream is paced
(slower, nothing refused, everything counted)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from tests.integration.monitor.test_log_stream import batches, rows_counted, stream
from tests.support.monitor import log_classifier, running_monitor

RATE = 1000  # rows per second per producer
ROWS = 500  # per batch; also the monitor's largest batch, so the burst is one second's worth


async def test_a_call_over_the_rate_is_refused_and_a_stream_is_paced(
    registry_address: str, database_urls: tuple[str, str], tmp_path: Path
) -> None:
    version = await log_classifier(registry_address, "churn")
    sent = batches(version, 8, rows=ROWS)
    async with running_monitor(
        registry_address,
        database_urls[1],
        tmp_path / "monitor",
        max_rows_per_s=RATE,
        max_batch_rows=ROWS,
    ) as monitor:
        for message in sent[:2]:  # one second's worth at once: accepted
            unsequenced = ingest_pb2.PredictionBatch()
            unsequenced.CopyFrom(message)
            unsequenced.sequence = 0
            await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=unsequenced))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=sent[2]))
        await asyncio.sleep(1.0)  # the bucket refills
        started = time.perf_counter()
        replies = await stream(monitor, sent[2:])  # 3,000 rows at 1,000 rows/s
        took = time.perf_counter() - started
        counted = await rows_counted(monitor)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (
        "producer 'inference-0': over this monitor's limit of 1000 rows per second; retry in"
        in (refused.value.details() or "")
    )
    acks = [r.ack for r in replies if r.HasField("ack")]
    assert [a.outcome for a in acks] == [ingest_pb2.BATCH_OUTCOME_APPLIED] * 6
    assert took >= 1.8  # 2,000 rows past the first second's worth, at 1,000 rows/s
    assert counted == 8 * ROWS
