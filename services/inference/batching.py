"""Dynamic batching for one loaded version: concurrent requests become one model call.

Like Triton's dynamic batcher with its default delay of 0, a batch is whatever is queued
when the worker is free: requests that arrive while the model is busy are coalesced
into the next call, in arrival order, up to ``max_batch_rows`` rows (a larger request
runs alone). The model call — concatenating inputs, predicting, splitting outputs —
runs in the executor, unless the batch has at most ``inline_rows`` rows: the version's
warm-up measured that so few rows predict within a small budget (``LoadedModel.
warm_up``), and handing a call to a thread and back (wake the thread, trade the GIL,
wake the loop) cost more CPU here than predicting them — 0.3 ms against 0.1 ms for one
row of a 100-tree XGBoost model. Such a call runs on the event loop, holding it for
less than the budget.

``max_delay_s`` is spent only when concurrency was just seen: if the previous batch
held k > 1 requests, the worker waits (measured from the oldest queued request) until k
requests or ``max_batch_rows`` rows are queued, or the delay runs out. A lone caller
(previous batch of 1) is never delayed. This avoids MLServer's adaptive batcher paying
``max_batch_time`` on every lone request (MLServer#1826), and keeps batches from
alternating 1, k-1, 1, k-1 under steady load.

Up to ``max_in_flight`` batches predict in the executor at once (the service passes its
number of predict threads), like Triton's model instances: the next batch forms and
starts while earlier ones are still in their threads, instead of every caller waiting for
one call at a time. A batch run on the loop holds the loop, so it is always alone.

Requests are split back by row counts and every tensor's first dimension is checked, so
a caller can only get its own rows (MLServer#1306, #1911 split wrongly). An error in
the model call fails exactly the requests of that batch.

A traced request (``tracer`` given, the caller's span recording at submit) gets two
spans in its own trace, made from recorded times once its batch is done:
``keel.inference.queue`` (submit to the batch's start) and ``keel.inference.predict``
(the batch's model call, with the batch's rows and requests). A batch serves requests of
several traces, so each trace gets its own pair instead of one span in one of them. An
untraced request costs one context lookup.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from opentelemetry.context import Context
from opentelemetry.trace import Tracer

from services.common.errors import InvalidArgument, ResourceExhausted, Unavailable
from services.common.tracing import finished_span, traced_context
from services.inference.records import Features, MatrixColumns, Outputs

Predict = Callable[[Features], Outputs]


@dataclass(frozen=True)
class Duration:
    """A cumulative count and total time, as Triton's ``StatisticDuration``."""

    count: int = 0
    ns: int = 0


@dataclass(frozen=True)
class BatchSizeStatistics:
    """Executions of one batch size (rows), as Triton's ``InferBatchStatistics``."""

    batch_size: int
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration


@dataclass(frozen=True)
class BatcherStatistics:
    """A snapshot for Triton's ModelStatistics.

    As in Triton: ``inference_count`` is rows and ``execution_count`` model calls, both
    of successful calls; ``success``/``fail`` time a request from submit to answer;
    ``queue`` and ``compute_*`` count each successful request once, a batch's compute
    time counting for every request in it; ``batch_stats`` count each execution once.
    ``fail`` includes ``rejected`` (queue full). ``pending`` is the queue depth now.
    """

    last_inference_ms: int
    inference_count: int
    execution_count: int
    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration
    batch_stats: tuple[BatchSizeStatistics, ...]
    pending: int
    rejected: int


@dataclass
class _Tally:
    count: int = 0
    ns: int = 0

    def add(self, count: int, ns: int) -> None:
        self.count += count
        self.ns += ns

    def frozen(self) -> Duration:
        return Duration(self.count, self.ns)


def _three() -> tuple[_Tally, _Tally, _Tally]:
    return _Tally(), _Tally(), _Tally()


@dataclass
class _Counters:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    rejected: int = 0
    success: _Tally = field(default_factory=_Tally)
    fail: _Tally = field(default_factory=_Tally)
    queue: _Tally = field(default_factory=_Tally)
    # compute_input, compute_infer, compute_output: in total and per batch size (rows)
    compute: tuple[_Tally, _Tally, _Tally] = field(default_factory=_three)
    by_size: dict[int, tuple[_Tally, _Tally, _Tally]] = field(default_factory=dict)


@dataclass(eq=False)
class _Request:
    features: Features
    future: asyncio.Future[Outputs]
    enqueued_ns: int
    trace: Context | None = None  # the caller's context, when its span records
    submitted_ns: int = 0  # wall clock (time.time_ns) at submit, when traced


# What one model call took: (outputs per request, input ns, infer ns, output ns).
_Result = tuple[list[Outputs], int, int, int]


class Batcher:
    """Coalesces concurrent ``submit`` calls for one version into model calls."""

    def __init__(
        self,
        predict: Predict,
        *,
        max_batch_rows: int = 64,
        max_delay_s: float = 0.002,
        executor: Executor,
        max_queue: int = 1024,
        name: str = "model",
        tracer: Tracer | None = None,
        inline_rows: int = 0,
        max_in_flight: int = 1,
    ) -> None:
        if (
            max_batch_rows < 1
            or max_queue < 1
            or max_delay_s < 0
            or inline_rows < 0
            or max_in_flight < 1
        ):
            raise InvalidArgument(
                f"batcher {name!r}: expected max_batch_rows >= 1, max_queue >= 1, "
                f"max_delay_s >= 0, inline_rows >= 0 and max_in_flight >= 1, got "
                f"{max_batch_rows}, {max_queue}, {max_delay_s}, {inline_rows}, {max_in_flight}"
            )
        self._predict = predict
        self._executor = executor
        self._max_rows = max_batch_rows
        self._max_delay_ns = int(max_delay_s * 1e9)
        self._max_queue = max_queue
        self._inline_rows = inline_rows
        self._name = name
        self._tracer = tracer
        self._queue: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._max_in_flight = max_in_flight
        # batches predicting in threads, by the task that awaits each
        self._in_flight: dict[asyncio.Task[None], list[_Request]] = {}
        self._slot_freed = asyncio.Event()
        self._closing = False
        self._last_batch_requests = 1
        self._counters = _Counters()

    async def submit(self, features: Features) -> Outputs:
        """The model's outputs for exactly the rows of ``features``."""
        if self._closing:
            raise Unavailable(f"{self._name}: the version is being unloaded; retry")
        if len(self._queue) >= self._max_queue:
            self._counters.rejected += 1
            self._counters.fail.add(1, 0)
            raise ResourceExhausted(
                f"{self._name}: {len(self._queue)} requests are queued, the limit; retry later"
            )
        loop = asyncio.get_running_loop()
        request = _Request(features, loop.create_future(), time.perf_counter_ns())
        if self._tracer is not None:
            request.trace = traced_context()
            if request.trace is not None:
                request.submitted_ns = time.time_ns()
        self._queue.append(request)
        self._wakeup.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name=f"batcher {self._name}")
        return await request.future

    async def close(self) -> None:
        """Refuse new requests and return once every queued one is answered."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))

    def statistics(self) -> BatcherStatistics:
        c = self._counters
        return BatcherStatistics(
            last_inference_ms=c.last_inference_ms,
            inference_count=c.inference_count,
            execution_count=c.execution_count,
            success=c.success.frozen(),
            fail=c.fail.frozen(),
            queue=c.queue.frozen(),
            compute_input=c.compute[0].frozen(),
            compute_infer=c.compute[1].frozen(),
            compute_output=c.compute[2].frozen(),
            batch_stats=tuple(
                BatchSizeStatistics(size, *(t.frozen() for t in tallies))
                for size, tallies in sorted(c.by_size.items())
            ),
            pending=len(self._queue),
            rejected=c.rejected,
        )

    # --- the worker ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                await self._free_slot()
                await self._fill()
                batch = self._take()
                if not batch:
                    continue
                if sum(request.features.rows for request in batch) <= self._inline_rows:
                    self._execute_inline(batch)
                else:
                    task = asyncio.get_running_loop().create_task(self._execute(batch))
                    self._in_flight[task] = batch
                    task.add_done_callback(self._finished)
        except asyncio.CancelledError:
            for task in self._in_flight:  # their batches fail as stopped (_finished)
                task.cancel()
            raise
        finally:
            if self._queue:  # only if the worker itself was cancelled
                self._fail_stopped(list(self._queue))
                self._queue.clear()

    async def _free_slot(self) -> None:
        """Wait until fewer than ``max_in_flight`` batches are predicting in threads."""
        while len(self._in_flight) >= self._max_in_flight:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def _finished(self, task: asyncio.Task[None]) -> None:
        batch = self._in_flight.pop(task)
        self._slot_freed.set()
        if task.cancelled():  # before or while predicting: no caller may hang
            self._fail_stopped(batch)

    async def _fill(self) -> None:
        """Wait for as many requests as the last batch had, within the delay."""
        target = self._last_batch_requests
        while (
            self._max_delay_ns
            and not self._closing
            and len(self._queue) < target
            and sum(r.features.rows for r in self._queue) < self._max_rows
        ):
            remaining = self._queue[0].enqueued_ns + self._max_delay_ns - time.perf_counter_ns()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining / 1e9):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _take(self) -> list[_Request]:
        """The next batch, in arrival order; a request above the row limit goes alone."""
        batch: list[_Request] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # its caller gave up (cancelled) before it ran
                self._queue.popleft()
                continue
            n = head.features.rows
            if batch and (rows + n > self._max_rows or not _compatible(batch[0], head)):
                break
            batch.append(self._queue.popleft())
            rows += n
            if rows >= self._max_rows:
                break
        return batch

    def _execute_inline(self, batch: list[_Request]) -> None:
        """Predict ``batch`` on the event loop (it holds at most ``inline_rows`` rows)."""
        started, wall = self._starting(batch)
        try:
            result = self._call([request.features for request in batch])
        except Exception as error:
            self._failed(batch, wall, error)
            return
        except BaseException:  # the process is going down: no caller may hang
            self._fail_stopped(batch)
            raise
        self._answer(batch, started, wall, result)

    async def _execute(self, batch: list[_Request]) -> None:
        """Predict ``batch`` in the executor (a task of its own; several may run)."""
        started, wall = self._starting(batch)
        parts = [request.features for request in batch]
        try:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, self._call, parts)
        except Exception as error:
            self._failed(batch, wall, error)
            return
        self._answer(batch, started, wall, result)

    def _starting(self, batch: list[_Request]) -> tuple[int, int]:
        """The batch's start (monotonic ns) and, when a request is traced, wall-clock ns."""
        traced = any(request.trace is not None for request in batch)
        return time.perf_counter_ns(), time.time_ns() if traced else 0

    def _failed(self, batch: list[_Request], wall: int, error: Exception) -> None:
        self._fail(batch, error)
        if wall:
            self._spans(batch, wall, error)

    def _answer(self, batch: list[_Request], started: int, wall: int, result: _Result) -> None:
        self._last_batch_requests = len(batch)
        self._record(batch, started, result)
        for request, outputs in zip(batch, result[0], strict=True):
            if not request.future.done():
                request.future.set_result(outputs)
        if wall:
            self._spans(batch, wall)

    def _spans(
        self, batch: list[_Request], started_ns: int, error: Exception | None = None
    ) -> None:
        """Each traced request's queue and predict spans, in its own trace."""
        assert self._tracer is not None
        ended_ns = time.time_ns()
        shared = {
            "keel.batch.rows": sum(request.features.rows for request in batch),
            "keel.batch.requests": len(batch),
        }
        for request in batch:
            if request.trace is None:
                continue
            rows = {"keel.rows": request.features.rows}
            finished_span(
                self._tracer,
                "keel.inference.queue",
                parent=request.trace,
                start_ns=request.submitted_ns,
                end_ns=started_ns,
                attributes=rows,
            )
            finished_span(
                self._tracer,
                "keel.inference.predict",
                parent=request.trace,
                start_ns=started_ns,
                end_ns=ended_ns,
                attributes={**shared, **rows},
                error=error,
            )

    def _fail_stopped(self, batch: list[_Request]) -> None:
        """Fail ``batch`` because the batcher stopped under it (its callers may retry)."""
        self._fail(batch, Unavailable(f"{self._name}: stopped; retry"))

    def _fail(self, batch: list[_Request], error: Exception) -> None:
        ended = time.perf_counter_ns()
        for request in batch:
            self._counters.fail.add(1, ended - request.enqueued_ns)
            if not request.future.done():
                request.future.set_exception(error)

    def _call(self, parts: list[Features]) -> _Result:
        """Concatenate, predict once, split by row counts (in the executor, or on the loop
        for a batch of at most ``inline_rows`` rows)."""
        t0 = time.perf_counter_ns()
        merged = parts[0] if len(parts) == 1 else _concatenate(parts)
        t1 = time.perf_counter_ns()
        outputs = self._predict(merged)
        t2 = time.perf_counter_ns()
        split = _split(outputs, [part.rows for part in parts])
        return split, t1 - t0, t2 - t1, time.perf_counter_ns() - t2

    def _record(self, batch: list[_Request], started: int, result: _Result) -> None:
        c = self._counters
        ended = time.perf_counter_ns()
        rows = sum(request.features.rows for request in batch)
        c.last_inference_ms = time.time_ns() // 1_000_000
        c.inference_count += rows
        c.execution_count += 1
        count, enqueued = len(batch), sum(request.enqueued_ns for request in batch)
        c.success.add(count, count * ended - enqueued)  # each request's submit to answer
        c.queue.add(count, count * started - enqueued)  # and submit to the batch's start
        by_size = c.by_size.setdefault(rows, _three())
        for phase, ns in enumerate(result[1:]):
            c.compute[phase].add(count, ns * count)
            by_size[phase].add(1, ns)


def _compatible(first: _Request, other: _Request) -> bool:
    a, b = first.features, other.features
    if a.numeric.shape[1:] != b.numeric.shape[1:]:
        return False
    if isinstance(a.columns, MatrixColumns) and isinstance(b.columns, MatrixColumns):
        return a.columns.index is b.columns.index or a.columns.index == b.columns.index
    return a.columns.keys() == b.columns.keys()


def _concatenate(parts: list[Features]) -> Features:
    numeric = np.concatenate([part.numeric for part in parts])
    first = parts[0].columns
    if isinstance(first, MatrixColumns) and all(
        isinstance(part.columns, MatrixColumns) and part.columns.index is first.index
        for part in parts
    ):
        matrices = [part.columns.matrix for part in parts]  # type: ignore[attr-defined]
        return Features(numeric, MatrixColumns(np.concatenate(matrices), first.index))
    columns = {name: np.concatenate([part.columns[name] for part in parts]) for name in first}
    return Features(numeric=numeric, columns=columns)


def _split(outputs: Outputs, rows: list[int]) -> list[Outputs]:
    total = sum(rows)
    for name, tensor in outputs.tensors.items():
        if tensor.ndim == 0 or tensor.shape[0] != total:
            raise RuntimeError(
                f"predict answered output {name!r} with shape {list(tensor.shape)} for {total} rows"
            )
    if len(rows) == 1:
        return [outputs]
    parts: list[Outputs] = []
    start = 0
    for n in rows:  # views by slicing: np.split costs ~3 us a piece in Python
        end = start + n
        parts.append(Outputs({name: t[start:end] for name, t in outputs.tensors.items()}))
        start = end
    return parts
