"""A traced prediction batch: its commit is a ``keel.monitor.db`` span under the call that
sent it, and each distinct request its rows came from gets a ``keel.monitor.record``
span in that request's own trace, the child of the span that made the prediction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from tests.support.monitor import Monitor, batch, frame, log_classifier, running_monitor
from tests.support.tracing import (
    Recorded,
    parent_id,
    recorded,
    span_id,
    trace_of,
    traceparent,
)

CALLER_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
CALLER = 0xB7AD6B7169203331
# The requests whose predictions the batch carries: (trace id, span id of the prediction).
FIRST = (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7)
SECOND = (0x5CE0E9A56015FEC5AADFA328AE398115, 0x1E223FF1D0B5D1A4)
LOG_BATCH = "/keel.monitor.v1.MonitorService/LogPredictionBatch"
LOG_STREAM = "/keel.monitor.v1.MonitorService/LogPredictions"


@pytest.fixture
async def traced(
    registry_address: str, database_urls: tuple[str, str], tmp_path: Path
) -> AsyncIterator[tuple[Monitor, Recorded, int]]:
    version = await log_classifier(registry_address, "churn")
    spans = recorded("keel-monitor")
    async with running_monitor(
        registry_address, database_urls[1], tmp_path / "monitor", spans.provider
    ) as monitor:
        yield monitor, spans, version


def traced_batch(
    version: int, rows: list[tuple[int, int]], sequence: int
) -> ingest_pb2.PredictionBatch:
    """A batch whose row i came from request ``rows[i]`` ((0, 0): untraced)."""
    x = frame(len(rows), sequence).to_numpy()
    ids = [f"p{sequence}-{i}" for i in range(len(rows))]
    message = batch("churn", version, x, ids, producer="inference-0", sequence=sequence)
    message.trace_ids = b"".join(t.to_bytes(16, "big") for t, _ in rows)
    message.span_ids = b"".join(s.to_bytes(8, "big") for _, s in rows)
    return message


def linked(span: ReadableSpan) -> set[tuple[int, int]]:
    return {(link.context.trace_id, link.context.span_id) for link in span.links}


def ids(span: ReadableSpan) -> tuple[int, int]:
    return trace_of(span), span_id(span)


async def test_each_request_of_a_batch_gets_a_record_span_in_its_own_trace(
    traced: tuple[Monitor, Recorded, int],
) -> None:
    monitor, spans, version = traced
    message = traced_batch(version, [FIRST, FIRST, SECOND, (0, 0)], sequence=1)
    reply = await monitor.stub.LogPredictionBatch(
        pb.LogPredictionBatchRequest(batch=message),
        metadata=traceparent(CALLER_TRACE, CALLER),
        timeout=30,
    )
    assert reply.ack.outcome == ingest_pb2.BATCH_OUTCOME_APPLIED
    await spans.wait_for(LOG_BATCH)
    call = spans.one(LOG_BATCH, CALLER_TRACE)
    assert parent_id(call) == CALLER
    db = spans.one("keel.monitor.db", CALLER_TRACE)
    assert parent_id(db) == span_id(call)
    assert db.attributes is not None and db.attributes["keel.rows"] == 4
    records = spans.spans("keel.monitor.record")
    assert sorted((trace_of(s), parent_id(s)) for s in records) == sorted([FIRST, SECOND])
    for record in records:
        assert record.parent is not None and record.parent.is_remote
        assert linked(record) == {ids(call), ids(db)}
        assert dict(record.attributes or {}) == {
            "keel.model": "churn",
            "keel.version": version,
            "keel.variant": "",
            "keel.rows": 4,
            "keel.producer": "inference-0",
            "keel.sequence": 1,
        }
        assert record.start_time is not None and record.end_time is not None
        assert call.start_time is not None and db.end_time is not None
        assert call.start_time <= record.start_time <= record.end_time
        assert db.end_time <= record.end_time  # ends at the commit


async def test_a_stream_records_traced_batches_only_and_a_resent_batch_once(
    traced: tuple[Monitor, Recorded, int],
) -> None:
    monitor, spans, version = traced
    untraced = traced_batch(version, [(0, 0)] * 3, sequence=1)
    untraced.ClearField("trace_ids")
    untraced.ClearField("span_ids")
    sent = [untraced, traced_batch(version, [SECOND] * 2, sequence=2)]

    async def requests() -> AsyncIterator[pb.LogPredictionsRequest]:
        yield pb.LogPredictionsRequest(open=ingest_pb2.LogStreamOpen(producer_id="inference-0"))
        for message in [*sent, sent[1]]:  # the last one again: a duplicate
            yield pb.LogPredictionsRequest(batch=message)

    replies = [r async for r in monitor.stub.LogPredictions(requests(), timeout=30)]
    assert [r.ack.outcome for r in replies[1:]] == [
        ingest_pb2.BATCH_OUTCOME_APPLIED,
        ingest_pb2.BATCH_OUTCOME_APPLIED,
        ingest_pb2.BATCH_OUTCOME_DUPLICATE,
    ]
    await spans.wait_for(LOG_STREAM)
    [stream] = spans.spans(LOG_STREAM)  # a root span: the stream carried no traceparent
    [record] = spans.spans("keel.monitor.record")
    assert (trace_of(record), parent_id(record)) == SECOND
    assert record.attributes is not None and record.attributes["keel.sequence"] == 2
    assert ids(stream) in linked(record)
