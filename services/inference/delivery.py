"""From the spool to the monitor: one ``LogPredictions`` stream, batches sent in sequence
order within the monitor's flow-control window, each discarded from the spool once its
acknowledgement (sent only after the monitor committed it) arrives.

When the stream cannot be opened or breaks, batches stay in the spool and the stream is
reopened with a growing pause (``retry_s`` doubling to ``max_retry_s``); the monitor's
``applied_through_sequence`` says where to resume, so a batch sent but not acknowledged
before the break is sent again and counted once. Nothing here is on a request's path.

The spooled bytes are sent as they are: a ``LogPredictionsRequest`` carrying a batch is
the batch's bytes behind a field header, with the spool's sequence number appended as one
more field, so nothing is parsed or re-encoded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from typing import Any

import grpc

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from services.inference.spool import Spool, Spooled

log = logging.getLogger(__name__)
SERVICE = "keel.monitor.v1.MonitorService"
METHOD = f"/{SERVICE}/LogPredictions"
STREAMS = (f"{SERVICE}/LogPredictions",)
Call = grpc.aio.StreamStreamCall[bytes, pb.LogPredictionsResponse]
_BATCH_FIELD = (2 << 3) | 2  # LogPredictionsRequest.batch, length-delimited
_SEQUENCE_FIELD = (2 << 3) | 0  # PredictionBatch.sequence, varint


def sequenced(payload: bytes, sequence: int) -> bytes:
    """A serialized batch with its ``sequence`` set (a field appended to a message
    overrides an earlier value)."""
    return payload + bytes([_SEQUENCE_FIELD]) + _varint(sequence)


def batch_request(payload: bytes, sequence: int) -> bytes:
    """The serialized ``LogPredictionsRequest(batch=…)`` for a serialized batch."""
    batch = sequenced(payload, sequence)
    return bytes([_BATCH_FIELD]) + _varint(len(batch)) + batch


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _identity(data: bytes) -> bytes:
    return data


class StreamEnded(Exception):
    """The monitor ended the stream, or answered out of turn."""


class Sender(ABC):
    """Sends the spool to the monitor until stopped, over one transport: reopens the
    transport with a growing pause when it fails, forgets each batch once it is safe."""

    def __init__(
        self,
        spool: Spool,
        producer_id: str,
        *,
        retry_s: float = 0.5,
        max_retry_s: float = 5.0,
    ) -> None:
        self.spool = spool
        self.producer_id = producer_id
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._more = asyncio.Event()
        self.connected = False
        self.delivered_rows = 0
        self.duplicate_rows = 0
        self.rejected_batches = 0
        self.rejected_rows = 0

    # Errors that mean "the other end is gone for now", worded by ``describe``.
    unreachable: tuple[type[BaseException], ...] = ()

    @abstractmethod
    async def _session(self) -> None:
        """Send until the transport fails (raise); never returns normally."""

    def describe(self, error: BaseException) -> str:
        return str(error) or type(error).__name__

    def wake(self) -> None:
        """New batches are in the spool."""
        self._more.set()

    async def run(self, stop: asyncio.Event) -> None:
        pause = self._retry_s
        failures = 0
        while not stop.is_set():
            try:
                await self._session()
                pause, failures = self._retry_s, 0
            except asyncio.CancelledError:
                raise
            except self.unreachable as error:
                failures += 1
                if self.connected or failures == 1:
                    log.warning(
                        "prediction log: monitor unreachable (%s); %d batches (%d predictions) "
                        "kept in the spool, retrying",
                        self.describe(error),
                        self.spool.pending_batches,
                        self.spool.pending_rows,
                    )
                self.connected = False
            except Exception:  # noqa: BLE001 - a local fault (spool I/O): keep trying
                failures += 1
                log.exception("prediction log: delivery failed; retrying")
                self.connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            pause = min(pause * 2, self._max_retry_s)

    async def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the spool to empty; whether it did."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.spool.pending_batches and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return not self.spool.pending_batches


class Delivery(Sender):
    """The monitor's ``LogPredictions`` stream."""

    unreachable = (grpc.aio.AioRpcError, StreamEnded, asyncio.InvalidStateError)

    def __init__(
        self,
        channel: grpc.aio.Channel,
        spool: Spool,
        producer_id: str,
        *,
        description: str = "",
        retry_s: float = 0.5,
        max_retry_s: float = 5.0,
    ) -> None:
        super().__init__(spool, producer_id, retry_s=retry_s, max_retry_s=max_retry_s)
        self._open: grpc.aio.StreamStreamMultiCallable[bytes, pb.LogPredictionsResponse] = (
            channel.stream_stream(
                METHOD,
                request_serializer=_identity,
                response_deserializer=pb.LogPredictionsResponse.FromString,
            )
        )
        self._description = description

    def describe(self, error: BaseException) -> str:
        if isinstance(error, grpc.aio.AioRpcError):
            return f"{error.code().name}: {error.details()}"
        return super().describe(error)

    async def _session(self) -> None:
        call: Call = self._open(None)
        try:
            opening = pb.LogPredictionsRequest(
                open=ingest_pb2.LogStreamOpen(
                    producer_id=self.producer_id, description=self._description
                )
            )
            await call.write(opening.SerializeToString())
            first = await call.read()
            if not isinstance(first, pb.LogPredictionsResponse) or not first.HasField("ready"):
                raise StreamEnded("the monitor did not answer the stream's opening")
            ready = first.ready
            await asyncio.to_thread(self.spool.acknowledge, ready.applied_through_sequence)
            self.connected = True
            log.info(
                "prediction log: delivering to the monitor from sequence %d (%d batches waiting)",
                ready.applied_through_sequence,
                self.spool.pending_batches,
            )
            window = _Window(ready.max_in_flight_batches)
            receiving = asyncio.create_task(self._receive(call, window))
            try:
                await self._send(call, window, ready.applied_through_sequence, receiving)
            finally:
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiving
        finally:
            call.cancel()

    async def _send(
        self,
        call: Call,
        window: _Window,
        sent_through: int,
        receiving: asyncio.Task[None],
    ) -> None:
        while True:
            if receiving.done():
                receiving.result()  # raises what ended the stream
                raise StreamEnded("the monitor ended the stream")
            room = window.room()
            if room <= 0:
                await _first(window.changed.wait(), receiving)
                window.changed.clear()
                continue
            self._more.clear()
            batches = await asyncio.to_thread(self.spool.read, sent_through, room)
            if not batches:
                await _first(self._more.wait(), receiving)
                continue
            for spooled in batches:
                window.sent(spooled)
                await call.write(batch_request(spooled.payload, spooled.sequence))
                sent_through = spooled.sequence

    async def _receive(
        self,
        call: Call,
        window: _Window,
    ) -> None:
        while True:
            response = await call.read()
            if not isinstance(response, pb.LogPredictionsResponse):  # grpc.aio.EOF
                raise StreamEnded("the monitor ended the stream")
            if not response.HasField("ack"):
                raise StreamEnded("the monitor sent a second 'ready'")
            ack = response.ack
            rows = window.acknowledged(ack.sequence, ack.max_in_flight_batches)
            if ack.outcome == ingest_pb2.BATCH_OUTCOME_REJECTED:
                self.rejected_batches += 1
                self.rejected_rows += rows
                log.warning(
                    "prediction log: the monitor refused batch %d (%d predictions): %s",
                    ack.sequence,
                    rows,
                    ack.error_message,
                )
            else:
                self.delivered_rows += ack.applied_rows
                self.duplicate_rows += ack.duplicate_rows
            await asyncio.to_thread(self.spool.acknowledge, ack.sequence)


class _Window:
    """Batches sent and not yet acknowledged, against the monitor's window."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.in_flight: collections.deque[tuple[int, int]] = collections.deque()
        self.changed = asyncio.Event()

    def room(self) -> int:
        return self.size - len(self.in_flight)

    def sent(self, spooled: Spooled) -> None:
        self.in_flight.append((spooled.sequence, spooled.rows))

    def acknowledged(self, sequence: int, size: int) -> int:
        """Forget batches up to ``sequence`` (acks come in order); the rows of the
        acknowledged one."""
        rows = 0
        while self.in_flight and self.in_flight[0][0] <= sequence:
            acked, count = self.in_flight.popleft()
            if acked == sequence:
                rows = count
        if size > 0:
            self.size = size
        self.changed.set()
        return rows


async def _first(waited: Coroutine[Any, Any, object], receiving: asyncio.Task[None]) -> None:
    """Wait for ``waited`` or the receiver ending, whichever comes first."""
    task = asyncio.ensure_future(waited)
    await asyncio.wait({task, receiving}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
