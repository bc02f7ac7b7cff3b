"""The monitor as a user runs it, as processes: killed with SIGKILL mid-stream and
restarted, every acknowledged batch survives and a producer's resends count once (and
no process it started outlives it); and
the same rows through two monitors, merged, answer like one monitor that saw them all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import monitor_pb2_grpc as pb_grpc
from keel.monitor.v1 import reports_pb2 as rp
from tests.support.monitor import batch, feedback, frame, labels_for, log_classifier
from tests.support.processes import children, running, start_service, stop

ROWS = 200


@contextmanager
def registry(tmp: Path) -> Iterator[str]:
    proc, address = start_service("registry", tmp, "registry")
    try:
        yield address
    finally:
        stop(proc, grace_s=15)


def batches(version: int, count: int) -> list[ingest_pb2.PredictionBatch]:
    x = frame(ROWS * count, 21, shift=0.3).to_numpy()
    return [
        batch(
            "churn",
            version,
            x[i * ROWS : (i + 1) * ROWS],
            [f"r{i}-{j}" for j in range(ROWS)],
            producer="inference-7",
            sequence=i + 1,
        )
        for i in range(count)
    ]


async def rows_counted(stub: pb_grpc.MonitorServiceAsyncStub) -> int:
    reply = await stub.ComputeDataQuality(
        pb.ComputeDataQualityRequest(scope=rp.ReportScope(model="models/churn")), timeout=30
    )
    return reply.report.row_count


async def send_until_killed(
    address: str,
    sent: list[ingest_pb2.PredictionBatch],
    proc: subprocess.Popen[str],
    kill_after: int,
) -> int:
    """Stream every batch; SIGKILL the monitor after ``kill_after`` acks. Returns the
    highest sequence acknowledged before the kill."""
    acked = 0

    async def requests() -> AsyncIterator[pb.LogPredictionsRequest]:
        yield pb.LogPredictionsRequest(open=ingest_pb2.LogStreamOpen(producer_id="inference-7"))
        for message in sent:
            yield pb.LogPredictionsRequest(batch=message)

    async with grpc.aio.insecure_channel(address) as channel:
        call = pb_grpc.MonitorServiceStub(channel).LogPredictions(requests(), timeout=60)
        try:
            async for reply in call:
                if reply.HasField("ack"):
                    acked = reply.ack.applied_through_sequence
                    if reply.ack.sequence == kill_after:
                        proc.kill()
        except grpc.aio.AioRpcError as error:
            assert error.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.INTERNAL,
            )
    return acked


async def test_sigkill_loses_nothing_acknowledged_and_resends_count_once(tmp_path: Path) -> None:
    with registry(tmp_path) as registry_address:
        version = await log_classifier(registry_address, "churn")
        env = {"KEEL_MONITOR_REGISTRY_ADDRESS": registry_address}
        proc, address = start_service("monitor", tmp_path, "monitor", env)
        sent = batches(version, 60)
        try:
            # The counting process (and multiprocessing's resource tracker) start with it.
            helpers = children(proc.pid)
            assert helpers
            acked = await send_until_killed(address, sent, proc, kill_after=25)
            proc.wait(timeout=15)
            assert acked >= 25
            deadline = time.monotonic() + 10
            while any(map(running, helpers)) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            left = [pid for pid in helpers if running(pid)]
            for pid in left:  # they hold the monitor's output pipe: stop() would wait forever
                os.kill(pid, signal.SIGKILL)
            assert not left, "a process the monitor started outlived it"
            stop(proc, grace_s=15)
            proc, address = start_service("monitor", tmp_path, "monitor", env)
            async with grpc.aio.insecure_channel(address) as channel:
                stub = pb_grpc.MonitorServiceStub(channel)
                # What was acknowledged survived the kill.
                assert await rows_counted(stub) >= acked * ROWS

                async def resume() -> AsyncIterator[pb.LogPredictionsRequest]:
                    yield pb.LogPredictionsRequest(
                        open=ingest_pb2.LogStreamOpen(producer_id="inference-7")
                    )
                    # A careful producer resends everything not acknowledged — and, to
                    # make the point, the last few that were.
                    for message in sent[max(acked - 5, 0) :]:
                        yield pb.LogPredictionsRequest(batch=message)

                replies = [r async for r in stub.LogPredictions(resume(), timeout=60)]
                assert replies[0].ready.applied_through_sequence >= acked
                assert replies[-1].ack.applied_through_sequence == 60
                assert await rows_counted(stub) == 60 * ROWS
        finally:
            stop(proc, grace_s=15)


async def report(stub: pb_grpc.MonitorServiceAsyncStub) -> tuple[object, ...]:
    scope = rp.ReportScope(model="models/churn")
    drift = await stub.ComputeDrift(
        pb.ComputeDriftRequest(scope=scope, options=rp.DriftOptions(include_bins=True))
    )
    quality = await stub.ComputeDataQuality(pb.ComputeDataQualityRequest(scope=scope))
    perf = await stub.ComputePerformance(pb.ComputePerformanceRequest(scope=scope))
    return (
        [
            (f.feature, f.current_count, list(f.bins.current_counts), round(f.statistic, 9))
            for f in drift.report.features
        ],
        quality.report.row_count,
        [(m.name, round(m.value, 12), m.sample_count) for m in perf.report.metrics],
        list(perf.report.confusion.counts),
    )


async def test_two_monitors_merged_answer_like_one(tmp_path: Path) -> None:
    with registry(tmp_path) as registry_address:
        version = await log_classifier(registry_address, "churn")
        env = {"KEEL_MONITOR_REGISTRY_ADDRESS": registry_address}
        procs = []
        try:
            addresses = []
            for name in ("a", "b", "whole"):
                proc, address = start_service("monitor", tmp_path, name, env)
                procs.append(proc)
                addresses.append(address)
            channels = [grpc.aio.insecure_channel(a) for a in addresses]
            a, b, whole = (pb_grpc.MonitorServiceStub(c) for c in channels)
            sent = batches(version, 10)
            rng = np.random.default_rng(3)
            for i, message in enumerate(sent):
                for stub in ((a if i % 2 else b), whole):
                    await stub.LogPredictionBatch(
                        pb.LogPredictionBatchRequest(batch=message), timeout=30
                    )
                x = np.column_stack([np.frombuffer(c.raw.data) for c in message.features])
                truth = np.where(rng.random(ROWS) < 0.2, 1 - labels_for(x), labels_for(x))
                ids = [f"r{i}-{j}" for j in range(ROWS)]
                for stub in ((a if i % 2 else b), whole):
                    await stub.LogFeedback(feedback("churn", ids, truth), timeout=30)
            exported = [
                bucket
                async for page in b.ExportAggregates(
                    pb.ExportAggregatesRequest(model="models/churn")
                )
                for bucket in page.buckets
            ]
            merged = await a.MergeAggregates(pb.MergeAggregatesRequest(buckets=exported))
            assert merged.merged_count == len(exported) > 0
            again = await a.MergeAggregates(pb.MergeAggregatesRequest(buckets=exported))
            assert again.ignored_count == len(exported)
            assert await report(a) == await report(whole)
            assert (await report(a))[1] == 10 * ROWS
            for channel in channels:
                await channel.close(None)
        finally:
            for proc in procs:
                stop(proc, grace_s=15)
