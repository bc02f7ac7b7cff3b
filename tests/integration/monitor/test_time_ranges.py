"""A range given with an end inside a bucket holds that bucket, in reports and exports
alike (the end is exclusive and rounded up to whole buckets, nanoseconds included)."""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp

from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp
from tests.support.monitor import NS, Monitor, batch, frame, log_classifier

BASE_S = 300  # the monitor's default base bucket


async def rows_reported(monitor: Monitor, end: Timestamp) -> int:
    scope = rp.ReportScope(model="models/churn", end_time=end)
    reply = await monitor.stub.ComputeDataQuality(pb.ComputeDataQualityRequest(scope=scope))
    return reply.report.row_count


async def buckets_exported(monitor: Monitor, end: Timestamp) -> int:
    request = pb.ExportAggregatesRequest(model="models/churn", end_time=end)
    return sum(
        [
            bucket.row_count
            async for page in monitor.stub.ExportAggregates(request)
            for bucket in page.buckets
        ]
    )


async def test_an_end_half_a_second_into_a_bucket_holds_that_bucket(
    monitor: Monitor, registry_address: str
) -> None:
    version = await log_classifier(registry_address, "churn")
    boundary_s = (int(time.time()) // BASE_S - 2) * BASE_S  # a bucket that started 10-15 min ago
    x = frame(120, 5).to_numpy()
    message = batch(
        "churn", version, x, [f"p{i}" for i in range(len(x))], when_ns=boundary_s * NS + NS // 5
    )
    await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message), timeout=30)

    inside = Timestamp(seconds=boundary_s, nanos=NS // 2)
    assert await rows_reported(monitor, inside) == 120
    assert await buckets_exported(monitor, inside) == 120
    # Ending exactly where the bucket starts leaves it out: the end is exclusive.
    at_start = Timestamp(seconds=boundary_s)
    assert await buckets_exported(monitor, at_start) == 0
