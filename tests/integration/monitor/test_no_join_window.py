"""A monitor with a join window of 0 (``KEEL_MONITOR_JOIN_WINDOW_S=0``, ADR 0015) keeps no
logged rows: batches add to the aggregates only, a re-sent batch is still recognised by its
producer's sequence, prediction ids are not remembered, and labels and GetPrediction say
why they cannot be served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from sqlalchemy import func, select

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp
from services.monitor.tables import IDS, SEGMENTS
from tests.support.monitor import (
    Monitor,
    feedback,
    log_classifier,
    log_rows,
    monitor_database,
    running_monitor,
)


@pytest.fixture
async def windowless(
    registry_address: str, database_urls: tuple[str, str], tmp_path: Path
) -> AsyncIterator[Monitor]:
    async with running_monitor(
        registry_address, database_urls[1], tmp_path / "monitor", join_window_s=0
    ) as found:
        yield found


async def _log(
    monitor: Monitor, version: int, ids: list[str], seed: int, sequence: int = 0
) -> ingest_pb2.BatchAck:
    return (await log_rows(monitor, version, ids, seed, sequence)).ack


def _kept(database_url: str) -> tuple[int, int]:
    with monitor_database(database_url) as connection:
        segments = connection.execute(select(func.count()).select_from(SEGMENTS)).scalar()
        ids = connection.execute(select(func.count()).select_from(IDS)).scalar()
        return int(segments or 0), int(ids or 0)


async def test_batches_count_and_leave_no_rows_behind(
    windowless: Monitor, registry_address: str, database_urls: tuple[str, str]
) -> None:
    version = await log_classifier(registry_address, "m")
    ids = [f"a{i}" for i in range(300)]
    first = await _log(windowless, version, ids, 1, sequence=1)
    assert (first.outcome, first.applied_rows) == (ingest_pb2.BATCH_OUTCOME_APPLIED, 300)
    # The producer's sequence still makes a re-sent batch change nothing...
    again = await _log(windowless, version, ids, 1, sequence=1)
    assert again.outcome == ingest_pb2.BATCH_OUTCOME_DUPLICATE
    assert (again.applied_rows, again.duplicate_rows) == (0, 300)
    # ...but ids are not remembered: the same ids in a new batch are new rows.
    unsequenced = await _log(windowless, version, ids[:100], 2)
    assert (unsequenced.applied_rows, unsequenced.duplicate_rows) == (100, 0)

    quality = await windowless.stub.ComputeDataQuality(
        pb.ComputeDataQualityRequest(scope=rp.ReportScope(model="models/m"))
    )
    assert quality.report.row_count == 400
    drift = await windowless.stub.ComputeDrift(
        pb.ComputeDriftRequest(scope=rp.ReportScope(model="models/m"))
    )
    assert drift.report.row_count == 400 and len(drift.report.features) >= 4
    assert _kept(database_urls[1]) == (0, 0)


async def test_labels_and_get_prediction_say_no_rows_are_kept(
    windowless: Monitor, registry_address: str
) -> None:
    version = await log_classifier(registry_address, "m")
    await _log(windowless, version, ["a0", "a1"], 1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await windowless.stub.LogFeedback(feedback("m", ["a0", "a1"], np.ones(2)))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "KEEL_MONITOR_JOIN_WINDOW_S=0" in (refused.value.details() or "")
    request = pb.GetPredictionRequest(model="models/m", prediction_id="a0")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await windowless.stub.GetPrediction(request)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "keeps no logged predictions" in (missing.value.details() or "")


async def test_the_default_window_keeps_what_a_windowless_monitor_does_not(
    monitor: Monitor, registry_address: str, database_urls: tuple[str, str]
) -> None:
    version = await log_classifier(registry_address, "m")
    await _log(monitor, version, [f"a{i}" for i in range(300)], 1)
    assert _kept(database_urls[1]) == (1, 300)
    again = await _log(monitor, version, ["a0", "b0"], 2)
    assert (again.applied_rows, again.duplicate_rows) == (1, 1)
