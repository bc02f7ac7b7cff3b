"""Where prediction batches are decoded and counted before their transaction: in a
worker process of their own (the default), or in a thread of the service's process.

Counting is numpy work of a few hundred microseconds a batch, most of it holding the
interpreter lock; in a thread it took that lock from the event loop and the writer, and
the three together were bound by it (ADR 0009). The worker receives the serialised batch
(which the transaction stores anyway) and the version's reference, and sends back the
counts as plain arrays (int32 where they fit, half the bytes through the pipe) and the
ids only when the monitor keeps them; the service rebuilds them on its own layout. A
worker knows each reference once: a batch names its reference by a digest of its pickle,
and the pickle itself travels only until the worker has it. Two calls are outstanding at
most; batches that arrive meanwhile go to the worker together in the next call (up to
eight), so that each does not pay its own trip through the pool's queue, threads and
pipes. The pool's pipes are widened to 1 MiB, so that a call and its answer each pass in
one write.

The worker is started with ``spawn`` (never ``fork``: the service runs gRPC's threads),
so it shares nothing with the service but what is sent, and exits when the service is
gone (even killed). If it dies, the batches it held fail as ``UNAVAILABLE`` (their
producers resend them) and the next batch starts another.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from keel.monitor.v1 import ingest_pb2
from services.common.errors import DomainError, Unavailable
from services.common.heap import settle_heap
from services.monitor.aggregates import State
from services.monitor.counted import Counted, count_batch
from services.monitor.reference import ModelReference

PARENT_CHECK_S = 0.5
KNOWN_REFERENCES = 64  # references a worker (or the service, for their pickles) keeps
Shipped = tuple[Any, ...]  # a Counted as plain data (``_ship``)


# Calls to the worker at a time, and batches per call: while a call is answered, the
# worker has the next one; batches that arrive meanwhile go together in the call after,
# which spares each its own trip through the pool's queues, threads and pipes.
CALLS_IN_FLIGHT = 2
BATCHES_PER_CALL = 8
# A call carries up to eight serialised batches (~100 KB each of 13 columns by 1,000 rows),
# and its answer their counts (~25 KB each). In pipes of Linux's default 64 KiB, the pool's
# feeder thread and the worker took turns a dozen times to pass one call; pipes of 1 MiB
# take a call or an answer at once.
PIPE_BYTES = 1 << 20


@dataclass
class _Job:
    payload: bytes  # the batch, serialised
    reference: ModelReference
    bucket_s: int
    spans: int
    done: asyncio.Future[Counted]


class Counting:
    """Counts batches off the event loop: ``count`` returns a future of the batch's
    ``Counted``. One worker process when ``in_process`` is false, else one thread."""

    def __init__(self, *, in_process: bool = False, ids: bool = True) -> None:
        self.in_process = in_process
        self._ids = ids  # whether a Counted carries the batch's ids (a join window keeps them)
        self._pool: Executor | None = None
        self._pickles: dict[int, tuple[ModelReference, str, bytes]] = {}
        self._sent: set[str] = set()  # reference digests the current worker was sent
        self._waiting: list[_Job] = []  # batches for the next call to the worker
        self._calls = 0  # calls to the worker not answered yet
        self._tasks: set[asyncio.Future[None]] = set()
        self._closed = False

    def start(self) -> None:
        """Start the worker now (otherwise the first batch starts it)."""
        self._closed = False
        pool = self._executor()
        if not self.in_process:
            pool.submit(_ready).result()

    def close(self) -> None:
        # Batches not sent yet are dropped (their callers are refused by then), so that a
        # call that ends or starts after this does not send them, and start another worker.
        self._closed = True
        for job in self._waiting:
            job.done.cancel()
        self._waiting.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=not self.in_process, cancel_futures=True)
            self._pool = None

    def count(
        self,
        batch: ingest_pb2.PredictionBatch,
        reference: ModelReference,
        bucket_s: int,
        spans: int,
    ) -> asyncio.Future[Counted]:
        loop = asyncio.get_running_loop()
        if self.in_process:
            return loop.run_in_executor(
                self._executor(), count_batch, batch, reference, bucket_s, spans
            )
        job = _Job(batch.SerializeToString(), reference, bucket_s, spans, loop.create_future())
        self._waiting.append(job)
        if self._calls < CALLS_IN_FLIGHT:
            self._call()
        return job.done

    def _call(self) -> None:
        """Send the waiting batches (up to ``BATCHES_PER_CALL``) to the worker in one call."""
        group = self._waiting[:BATCHES_PER_CALL]
        del self._waiting[:BATCHES_PER_CALL]
        self._calls += 1
        task = asyncio.ensure_future(self._in_worker(group))
        self._tasks.add(task)
        task.add_done_callback(self._called)

    def _called(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        self._calls -= 1
        if self._waiting and self._calls < CALLS_IN_FLIGHT:
            self._call()

    async def _in_worker(self, group: list[_Job]) -> None:
        """Count ``group`` in the worker and settle each job's future with its batch's
        ``Counted`` (or its error; if the worker stopped, ``Unavailable`` for them all)."""
        if self._closed:  # closed before this call began: its batches are dropped too
            for job in group:
                job.done.cancel()
            return
        try:
            shipped = await self._shipped(group)
        except asyncio.CancelledError:  # the pool was shut down with the call in it
            for job in group:
                job.done.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - each waiting batch learns why
            for job in group:
                if not job.done.done():
                    job.done.set_exception(error)
            return
        for job, one in zip(group, shipped, strict=True):
            if job.done.done():
                continue  # its stream ended meanwhile
            if isinstance(one, BaseException):
                job.done.set_exception(one)
            else:
                job.done.set_result(_unship(one, job.reference, job.payload))

    async def _shipped(self, group: list[_Job]) -> list[Shipped | BaseException]:
        pickles = [self._pickled(job.reference) for job in group]
        unknown = {digest for digest, _ in pickles if digest not in self._sent}
        loop = asyncio.get_running_loop()
        for _ in range(2):
            self._sent |= unknown
            calls = [
                (
                    job.payload,
                    digest,
                    pickled if digest in unknown else None,
                    job.bucket_s,
                    job.spans,
                    self._ids,
                )
                for job, (digest, pickled) in zip(group, pickles, strict=True)
            ]
            pool = self._executor()
            try:
                shipped = await loop.run_in_executor(pool, _count_all, calls)
            except BrokenProcessPool as error:
                self._discard(pool)
                stopped = "the monitor's counting process stopped; resend the batch"
                raise Unavailable(stopped) from error
            if all(one is not None for one in shipped):
                return cast(list[Shipped | BaseException], shipped)
            # The worker did not have these references (a new worker): send them.
            lost = zip(pickles, shipped, strict=True)
            unknown = {digest for (digest, _), one in lost if one is None}
        raise AssertionError("unreachable")  # pragma: no cover

    def _executor(self) -> Executor:
        if self._pool is None:
            if self._closed and not self.in_process:
                raise Unavailable("the monitor is stopping; resend the batch")
            if self.in_process:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="monitor-count")
            else:
                context = multiprocessing.get_context("spawn")
                pool = ProcessPoolExecutor(
                    1, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
                )
                widen_pipes(pool)
                self._pool = pool
                self._sent = set()
        return self._pool

    def _discard(self, pool: Executor) -> None:
        if self._pool is pool:
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _pickled(self, reference: ModelReference) -> tuple[str, bytes]:
        found = self._pickles.get(id(reference))
        if found is None or found[0] is not reference:
            if len(self._pickles) >= KNOWN_REFERENCES:
                self._pickles.clear()
            pickled = pickle.dumps(reference, protocol=pickle.HIGHEST_PROTOCOL)
            digest = hashlib.sha256(pickled).hexdigest()
            found = self._pickles[id(reference)] = (reference, digest, pickled)
        return found[1], found[2]


def widen_pipes(pool: ProcessPoolExecutor) -> None:
    """Make the pool's call and answer pipes ``PIPE_BYTES`` long (Linux's F_SETPIPE_SZ, up
    to ``/proc/sys/fs/pipe-max-size``, 1 MiB by default). They are CPython's
    ``_call_queue`` and ``_result_queue``: where they are named otherwise, or the size is
    refused, a pipe keeps its size and counting works as before, only slower."""
    for queue in (getattr(pool, "_call_queue", None), getattr(pool, "_result_queue", None)):
        end = getattr(queue, "_writer", None)
        with contextlib.suppress(AttributeError, OSError):
            fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[union-attr]


# In the worker process.
_references: dict[str, ModelReference] = {}


def _ready() -> bool:
    return True


def _start_worker(parent: int) -> None:
    _watch_parent(parent)
    settle_heap()


def _watch_parent(parent: int) -> None:
    """Exit when the service is gone: a worker blocked reading its call queue holds that
    queue's write end too, so it would never see the service die (SIGKILL)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="watch-service", daemon=True).start()


def _count_all(calls: list[tuple[Any, ...]]) -> list[Shipped | BaseException | None]:
    """``_count_shipped`` for each batch of a call; a batch whose counting failed
    unexpectedly gets its exception, so that it alone fails."""
    shipped: list[Shipped | BaseException | None] = []
    for call in calls:
        try:
            shipped.append(_count_shipped(*call))
        except Exception as error:  # noqa: BLE001 - sent back to the batch's caller
            shipped.append(error)
    return shipped


def _count_shipped(
    payload: bytes, digest: str, pickled: bytes | None, bucket_s: int, spans: int, ids: bool
) -> Shipped | None:
    """Count one serialised batch (with its ids when ``ids``); None when this worker does
    not know the reference."""
    reference = _references.get(digest)
    if reference is None:
        if pickled is None:
            return None
        if len(_references) >= KNOWN_REFERENCES:
            _references.clear()
        reference = _references[digest] = pickle.loads(pickled)  # noqa: S301 - our own pickle
    batch = ingest_pb2.PredictionBatch.FromString(payload)
    return _ship(count_batch(batch, reference, bucket_s, spans, payload=payload), ids)


def _ship(counted: Counted, ids: bool = True) -> Shipped:
    """``counted`` as plain data: states as their buffers (the layout is the service's;
    the counts as int32 when they fit), the ids only when ``ids``, an error as its class
    and attributes (a DomainError's keyword arguments do not survive pickling as an
    exception)."""
    error = None
    if counted.error is not None:
        error = (type(counted.error), counted.error.message, vars(counted.error))
    deltas = {
        start: ((_narrow(state.buffers[0]), *state.buffers[1:]), state.unseen, rows)
        for start, (state, rows) in counted.deltas.items()
    }
    return (
        error,
        counted.row_count,
        deltas,
        counted.spans,
        counted.ids_json if ids else "[]",
        counted.ignored_columns,
        counted.unseen,
    )


INT32 = np.iinfo(np.int32)


def _narrow(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64] | npt.NDArray[np.int32]:
    """A batch's counts as int32 when every one fits (they count its rows), else as they are."""
    if counts.size and INT32.min <= counts.min() and counts.max() <= INT32.max:
        return counts.astype(np.int32)
    return counts


def _widen(counts: npt.NDArray[np.int64] | npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    return counts.astype(np.int64, copy=False)  # no copy when it came as int64


def _unship(shipped: Shipped, reference: ModelReference, payload: bytes) -> Counted:
    error_data, row_count, deltas, spans, ids_json, ignored, unseen = shipped
    error = None
    if error_data is not None:
        kind, message, attributes = error_data
        error = kind.__new__(kind)
        DomainError.__init__(error, message)
        vars(error).update(attributes)
    states = {
        start: (State(reference.layout, (_widen(buffers[0]), *buffers[1:]), seen), rows)
        for start, (buffers, seen, rows) in deltas.items()
    }
    return Counted(
        error,
        row_count,
        states,
        spans,
        payload if row_count else b"",
        ids_json,
        ignored,
        unseen,
    )
