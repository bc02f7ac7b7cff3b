"""The monitor benchmark's clients: producers on the ``LogPredictions`` stream, an RSS
sampler, and ``ComputeDrift`` timings. They run as coroutines in the benchmark's process.

A producer opens its stream (``open`` with its producer id, answered by ``ready``), then
a sender writes the pre-serialised batches (``bench.monitor_batches``) while an ack
reader takes the acks; the sender never has more than ``max_in_flight_batches``
unacknowledged (the window from ``ready``, then from each ack). A REJECTED ack, a
duplicate, a sequence out of order or a stream that ends early stops the benchmark with
what the monitor said. Each producer has its own channel (its own TCP connection).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.monitor_batches import open_request
from bench.stats import process_tree
from keel.monitor.v1 import ingest_pb2, monitor_pb2, monitor_pb2_grpc, reports_pb2

METHOD = "/keel.monitor.v1.MonitorService/LogPredictions"
USER = (("x-keel-user", "bench"),)
CALL_TIMEOUT_S = 30
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]

Response = monitor_pb2.LogPredictionsResponse


class MonitorRefused(Exception):
    """The monitor answered something the contract does not allow for this load."""


@dataclass
class Progress:
    """Rows acknowledged so far, across the producers of one ingestion."""

    acked_rows: int = 0


@dataclass
class ProducerFigures:
    producer: str
    batches: int = 0
    applied_rows: int = 0
    duplicate_rows: int = 0
    first_send: float = 0.0
    last_ack: float = 0.0
    windows: set[int] = field(default_factory=set)
    max_batch_rows: int = 0


def _check_ack(ack: ingest_pb2.BatchAck, producer: str, expected: int) -> None:
    where = f"producer {producer!r}, batch {expected}"
    if ack.outcome == ingest_pb2.BATCH_OUTCOME_REJECTED:
        raise MonitorRefused(
            f"{where} REJECTED (code {ack.error_code}): {ack.error_message or 'no message'}"
        )
    if ack.sequence != expected or ack.producer_id != producer:
        raise MonitorRefused(
            f"{where}: ack for {ack.producer_id!r} sequence {ack.sequence} (acks out of order)"
        )
    if ack.outcome != ingest_pb2.BATCH_OUTCOME_APPLIED:
        outcome = ingest_pb2.BatchOutcome.Name(ack.outcome)
        raise MonitorRefused(f"{where}: outcome {outcome} on a fresh producer, expected APPLIED")


async def _read(call: grpc.aio.StreamStreamCall[bytes, Response], what: str) -> Response:
    message = await call.read()
    if not isinstance(message, Response):  # grpc.aio.EOF
        raise MonitorRefused(f"the stream ended before {what} (status {await call.code()})")
    return message


async def produce(
    address: str, producer: str, requests: Iterable[bytes], batches: int, progress: Progress
) -> ProducerFigures:
    """Sends ``batches`` requests (already serialised, sequences 1…batches) on one stream
    and waits for every ack."""
    figures = ProducerFigures(producer)
    timeout = CALL_TIMEOUT_S + batches * 0.05  # at least 20,000 rows/s, or the call fails
    async with grpc.aio.insecure_channel(address, options=OWN_CONNECTION) as channel:
        method: grpc.aio.StreamStreamMultiCallable[bytes, Response] = channel.stream_stream(
            METHOD, request_serializer=None, response_deserializer=Response.FromString
        )
        call = method(None, timeout=timeout, metadata=USER)
        await call.write(open_request(producer))
        ready = (await _read(call, "ready")).ready
        if ready.applied_through_sequence != 0:
            raise MonitorRefused(f"{producer!r}: a fresh producer resumes after 0, not {ready}")
        window = ready.max_in_flight_batches
        figures.windows.add(window)
        figures.max_batch_rows = ready.max_batch_rows
        acked = 0
        changed = asyncio.Event()

        async def read_acks() -> None:
            nonlocal acked, window
            try:
                while acked < batches:
                    ack = (await _read(call, f"the ack of batch {acked + 1}")).ack
                    _check_ack(ack, producer, acked + 1)
                    figures.applied_rows += ack.applied_rows
                    figures.duplicate_rows += ack.duplicate_rows
                    progress.acked_rows += ack.applied_rows
                    if ack.max_in_flight_batches > 0:
                        window = ack.max_in_flight_batches
                        figures.windows.add(window)
                    acked += 1
                    changed.set()
                figures.last_ack = time.perf_counter()
            finally:
                changed.set()  # wakes the sender when the stream fails too

        reader = asyncio.create_task(read_acks())
        figures.first_send = time.perf_counter()
        try:
            for sent, serialised in enumerate(requests):
                while sent - acked >= window and not reader.done():
                    changed.clear()
                    await changed.wait()
                if reader.done():
                    break
                await call.write(serialised)
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the stream ended: the reader says how
        await reader
        if acked < batches:
            raise MonitorRefused(f"{producer!r}: the stream ended after {acked} of {batches} acks")
        figures.batches = acked
    return figures


@dataclass(frozen=True)
class Ingestion:
    producers: list[ProducerFigures]
    seconds: float  # first send of any producer to last ack of any

    @property
    def rows(self) -> int:
        return sum(p.applied_rows for p in self.producers)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


async def ingest(
    address: str, streams: Sequence[tuple[str, Iterable[bytes], int]], progress: Progress
) -> Ingestion:
    """Runs one producer per ``(producer, requests, batches)``, all at once."""
    try:
        producers = await asyncio.gather(
            *(produce(address, name, requests, n, progress) for name, requests, n in streams)
        )
    except grpc.aio.AioRpcError as error:
        raise MonitorRefused(
            f"LogPredictions failed: {error.code().name}: {error.details()}"
        ) from error
    start = min(p.first_send for p in producers)
    end = max(p.last_ack for p in producers)
    return Ingestion(list(producers), end - start)


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` and its children (the monitor's counting process):
    VmRSS summed, in MiB; NaN once ``pid`` is gone."""
    total = 0.0
    for member in sorted(process_tree(pid)):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            if member == pid:
                return float("nan")
            continue
        total += next((int(x.split()[1]) for x in lines if x.startswith("VmRSS:")), 0) / 1024
    return total


@dataclass
class RssSamples:
    """(seconds since start, RSS MiB, rows acknowledged) every ``interval`` seconds."""

    samples: list[tuple[float, float, int]] = field(default_factory=list)


async def sample_rss(
    pid: int, progress: Progress, stop: asyncio.Event, into: RssSamples, interval: float = 0.5
) -> None:
    started = time.perf_counter()
    while True:
        into.samples.append((time.perf_counter() - started, rss_mb(pid), progress.acked_rows))
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            continue
        into.samples.append((time.perf_counter() - started, rss_mb(pid), progress.acked_rows))
        return


@dataclass(frozen=True)
class DriftTimings:
    """Seconds of the first ``ComputeDrift`` call and of each later one; the last answer."""

    first: float
    seconds: list[float]
    answer: monitor_pb2.ComputeDriftResponse


async def drift_calls(address: str, model: str, version: int, calls: int) -> DriftTimings:
    """``1 + calls`` calls of ``ComputeDrift`` (default options) in a row."""
    request = monitor_pb2.ComputeDriftRequest(
        scope=reports_pb2.ReportScope(model=model, version=version)
    )
    seconds: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        try:
            for _ in range(calls + 1):
                started = time.perf_counter()
                answer = await stub.ComputeDrift(request, timeout=CALL_TIMEOUT_S, metadata=USER)
                seconds.append(time.perf_counter() - started)
        except grpc.aio.AioRpcError as error:
            raise MonitorRefused(
                f"ComputeDrift failed: {error.code().name}: {error.details()}"
            ) from error
    return DriftTimings(seconds[0], seconds[1:], answer)
