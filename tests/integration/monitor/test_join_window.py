"""The join window ends: a logged batch and the prediction ids it brought are forgotten
(GetPrediction, label joins and re-sent ids no longer find them), the counts stay, and a
label still waiting for its prediction is dropped."""

from __future__ import annotations

import time

import grpc
import numpy as np

from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp
from services.monitor.ingest import expire
from services.monitor.settings import MonitorSettings
from tests.support.monitor import (
    Monitor,
    feedback,
    log_classifier,
    log_rows,
    monitor_database,
)

WINDOW_NS = MonitorSettings().join_window_s * 1_000_000_000


async def _found(monitor: Monitor, prediction_id: str) -> bool:
    request = pb.GetPredictionRequest(model="models/m", prediction_id=prediction_id)
    try:
        await monitor.stub.GetPrediction(request)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
        return False
    return True


def _expire(database_url: str, now: int, limit: int = 256) -> int:
    with monitor_database(database_url) as connection:
        return expire(connection, now, limit)


async def test_expiry_forgets_each_segment_with_exactly_its_own_ids(
    monitor: Monitor, registry_address: str, database_urls: tuple[str, str]
) -> None:
    version = await log_classifier(registry_address, "m")
    first = [f"a{i}" for i in range(100)]
    await log_rows(monitor, version, first, 1)
    # Re-sent unsequenced within the window, a0..a9 are duplicates and stay a's ids.
    second = first[:10] + [f"b{i}" for i in range(40)]
    ack = (await log_rows(monitor, version, second, 2)).ack
    assert (ack.applied_rows, ack.duplicate_rows) == (40, 10)
    between = time.time_ns()
    third = [f"c{i}" for i in range(30)]
    await log_rows(monitor, version, third, 3)
    before = await monitor.stub.ComputeDataQuality(
        pb.ComputeDataQualityRequest(scope=rp.ReportScope(model="models/m"))
    )
    assert before.report.row_count == 170

    # The first two batches' windows end at `between + window`; the third's later.
    assert _expire(database_urls[1], between + WINDOW_NS, limit=1) == 1
    assert not await _found(monitor, "a0") and not await _found(monitor, "a99")
    assert await _found(monitor, "b0") and await _found(monitor, "c0")
    assert _expire(database_urls[1], between + WINDOW_NS) == 1
    assert not await _found(monitor, "b0") and await _found(monitor, "c29")
    assert _expire(database_urls[1], between + WINDOW_NS) == 0

    # Labels join only what the window still holds; the others wait as unmatched.
    reply = await monitor.stub.LogFeedback(feedback("m", ["a1", "b1", "c1"], np.ones(3)))
    assert (reply.matched_count, reply.unmatched_count) == (1, 2)
    # A forgotten id sent again is a new prediction; a kept one is still a duplicate.
    ack = (await log_rows(monitor, version, ["a0", "c0"], 4)).ack
    assert (ack.applied_rows, ack.duplicate_rows) == (1, 1)
    after = await monitor.stub.ComputeDataQuality(
        pb.ComputeDataQualityRequest(scope=rp.ReportScope(model="models/m"))
    )
    assert after.report.row_count == 171  # counts outlive the window


async def test_a_label_still_waiting_for_its_prediction_is_dropped_with_the_window(
    monitor: Monitor, registry_address: str, database_urls: tuple[str, str]
) -> None:
    version = await log_classifier(registry_address, "m")
    reply = await monitor.stub.LogFeedback(feedback("m", ["z1"], [1]))
    assert reply.unmatched_count == 1
    _expire(database_urls[1], time.time_ns() + WINDOW_NS + 1)
    reply = await monitor.stub.LogFeedback(feedback("m", ["z2"], [1]))
    assert reply.unmatched_count == 1
    await log_rows(monitor, version, ["z1", "z2"], 5)
    labels = {}
    for prediction_id in ("z1", "z2"):
        request = pb.GetPredictionRequest(model="models/m", prediction_id=prediction_id)
        got = (await monitor.stub.GetPrediction(request)).prediction
        labels[prediction_id] = list(got.label.strings.values)
    assert labels == {"z1": [], "z2": ["1"]}
