"""The batcher: concurrent requests share model calls, and each caller gets its own rows."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from services.common.errors import InvalidArgument, ResourceExhausted, Unavailable
from services.inference.batching import Batcher
from services.inference.records import Features, MatrixColumns, Outputs

WIDTH = 3


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    yield pool
    pool.shutdown(wait=True)


def request(first: int, rows: int) -> Features:
    """``rows`` rows whose values start at ``first`` × 1000: no two requests share one."""
    numeric = (first * 1000 + np.arange(rows * WIDTH, dtype=np.float32)).reshape(rows, WIDTH)
    ids = np.array([f"r{first}-{i}" for i in range(rows)], dtype=object)
    return Features(numeric=numeric, columns={"id": ids})


class Model:
    """Echoes each row back, records every call; rows whose first value is negative fail."""

    def __init__(self, pause_s: float = 0.0) -> None:
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.pause_s = pause_s

    def __call__(self, features: Features) -> Outputs:
        self.calls.append(features.rows)
        self.threads.add(threading.current_thread().name)
        time.sleep(self.pause_s)
        if (features.numeric[:, 0] < 0).any():
            raise InvalidArgument("poisoned row")
        return Outputs(
            {
                "echo": features.numeric.copy(),
                "id": features.columns["id"].copy(),
                "label": features.numeric[:, 0].astype(np.int64),
            }
        )


def assert_own_rows(sent: Features, got: Outputs) -> None:
    np.testing.assert_array_equal(got.tensors["echo"], sent.numeric)
    np.testing.assert_array_equal(got.tensors["id"], sent.columns["id"])
    np.testing.assert_array_equal(got.tensors["label"], sent.numeric[:, 0].astype(np.int64))


async def test_concurrent_requests_share_calls_and_get_their_own_rows(
    executor: ThreadPoolExecutor,
) -> None:
    model = Model(pause_s=0.002)
    batcher = Batcher(model, max_batch_rows=16, executor=executor)
    sent = [request(i, i % 3 + 1) for i in range(50)]
    got = await asyncio.gather(*(batcher.submit(f) for f in sent))
    for features, outputs in zip(sent, got, strict=True):
        assert_own_rows(features, outputs)
    total = sum(f.rows for f in sent)
    assert len(model.calls) < 50 and sum(model.calls) == total
    assert max(model.calls) <= 16
    assert threading.main_thread().name not in model.threads  # never on the event loop

    stats = batcher.statistics()
    assert (stats.inference_count, stats.execution_count) == (total, len(model.calls))
    assert (stats.success.count, stats.fail.count, stats.queue.count) == (50, 0, 50)
    assert stats.compute_infer.count == 50 and stats.compute_infer.ns > 0
    assert {s.batch_size: s.compute_infer.count for s in stats.batch_stats} == Counter(model.calls)
    assert stats.pending == 0 and stats.last_inference_ms > 0
    await batcher.close()


async def test_an_error_fails_exactly_the_requests_of_its_batch(
    executor: ThreadPoolExecutor,
) -> None:
    model = Model()
    batcher = Batcher(model, max_batch_rows=4, executor=executor)
    sent = [request(i, 1) for i in range(12)]
    sent[5].numeric[0, 0] = -1.0  # batches are [0-3], [4-7], [8-11]: 4-7 fail
    got = await asyncio.gather(*(batcher.submit(f) for f in sent), return_exceptions=True)
    assert model.calls == [4, 4, 4]
    for i, (features, outputs) in enumerate(zip(sent, got, strict=True)):
        if 4 <= i <= 7:
            assert isinstance(outputs, InvalidArgument) and outputs.message == "poisoned row"
        else:
            assert isinstance(outputs, Outputs)
            assert_own_rows(features, outputs)
    stats = batcher.statistics()
    assert (stats.success.count, stats.fail.count, stats.execution_count) == (8, 4, 2)
    assert stats.inference_count == 8


async def test_a_request_above_the_row_limit_runs_alone(executor: ThreadPoolExecutor) -> None:
    model = Model()
    batcher = Batcher(model, max_batch_rows=4, executor=executor)
    sent = [request(1, 2), request(2, 10), request(3, 1), request(4, 1)]
    got = await asyncio.gather(*(batcher.submit(f) for f in sent))
    assert model.calls == [2, 10, 2]  # in arrival order; the 10-row request alone
    for features, outputs in zip(sent, got, strict=True):
        assert_own_rows(features, outputs)
    assert [s.batch_size for s in batcher.statistics().batch_stats] == [2, 10]


async def test_a_full_queue_is_resource_exhausted(executor: ThreadPoolExecutor) -> None:
    model = Model()
    batcher = Batcher(model, max_queue=3, executor=executor)
    sent = [request(i, 1) for i in range(4)]
    got = await asyncio.gather(*(batcher.submit(f) for f in sent), return_exceptions=True)
    assert isinstance(got[3], ResourceExhausted)
    assert "3 requests are queued" in got[3].message
    for features, outputs in zip(sent[:3], got[:3], strict=True):
        assert isinstance(outputs, Outputs)
        assert_own_rows(features, outputs)
    stats = batcher.statistics()
    assert (stats.rejected, stats.fail.count, stats.success.count) == (1, 1, 3)


async def test_a_lone_request_does_not_wait_for_the_delay(executor: ThreadPoolExecutor) -> None:
    batcher = Batcher(Model(), max_delay_s=30.0, executor=executor)
    for i in range(3):  # a 30 s wait would trip the 10 s guard
        assert_own_rows(request(i, 2), await asyncio.wait_for(batcher.submit(request(i, 2)), 10))


async def test_after_concurrency_the_delay_gathers_staggered_requests(
    executor: ThreadPoolExecutor,
) -> None:
    model = Model()
    batcher = Batcher(model, max_delay_s=30.0, executor=executor)
    await asyncio.gather(*(batcher.submit(request(i, 1)) for i in range(4)))

    async def late(i: int) -> Outputs:
        await asyncio.sleep(0.002 * i)
        return await batcher.submit(request(10 + i, 1))

    got = await asyncio.wait_for(asyncio.gather(*(late(i) for i in range(4))), 10)
    assert model.calls == [4, 4]  # the second four arrived apart, yet share one call
    for i, outputs in enumerate(got):
        assert_own_rows(request(10 + i, 1), outputs)


async def test_close_drains_then_refuses(executor: ThreadPoolExecutor) -> None:
    batcher = Batcher(Model(pause_s=0.001), max_batch_rows=2, executor=executor)
    sent = [request(i, 1) for i in range(10)]
    tasks = [asyncio.ensure_future(batcher.submit(f)) for f in sent]
    await asyncio.sleep(0)
    await batcher.close()
    assert all(task.done() for task in tasks)
    for features, task in zip(sent, tasks, strict=True):
        assert_own_rows(features, task.result())
    with pytest.raises(Unavailable, match="being unloaded"):
        await batcher.submit(request(99, 1))


async def test_a_wrong_number_of_output_rows_fails_the_batch(
    executor: ThreadPoolExecutor,
) -> None:
    def short(features: Features) -> Outputs:
        return Outputs({"prediction": np.zeros(features.rows - 1, dtype=np.float32)})

    batcher = Batcher(short, executor=executor)
    got: list[Any] = await asyncio.gather(
        *(batcher.submit(request(i, 2)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(g, RuntimeError) and "shape [5] for 6 rows" in str(g) for g in got)


async def test_a_cancelled_caller_is_skipped(executor: ThreadPoolExecutor) -> None:
    model = Model()
    batcher = Batcher(model, executor=executor)
    first = asyncio.ensure_future(batcher.submit(request(1, 1)))
    gone = asyncio.ensure_future(batcher.submit(request(2, 5)))
    await asyncio.sleep(0)
    gone.cancel()
    assert_own_rows(request(1, 1), await first)
    assert model.calls == [1]


async def test_small_batches_predict_on_the_loop_and_larger_ones_in_a_thread(
    executor: ThreadPoolExecutor,
) -> None:
    model = Model()
    batcher = Batcher(model, max_batch_rows=64, executor=executor, inline_rows=4)
    small = [request(i, 1) for i in range(4)]  # one batch of 4 rows: on the loop
    got = await asyncio.gather(*(batcher.submit(f) for f in small))
    assert model.calls == [4] and model.threads == {threading.current_thread().name}
    big = [request(10 + i, 1) for i in range(5)]  # one batch of 5 rows: in the executor
    got += await asyncio.gather(*(batcher.submit(f) for f in big))
    assert model.calls == [4, 5] and model.threads == {
        threading.current_thread().name,
        "model_0",
    }
    for features, outputs in zip(small + big, got, strict=True):
        assert_own_rows(features, outputs)
    poisoned = request(20, 2)
    poisoned.numeric[0, 0] = -1.0
    with pytest.raises(InvalidArgument, match="poisoned row"):  # failing on the loop too
        await batcher.submit(poisoned)
    stats = batcher.statistics()
    assert (stats.success.count, stats.fail.count, stats.execution_count) == (9, 1, 2)
    await batcher.close()


class Gate:
    """A model whose calls wait until ``release``; records how many ran at once."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def __call__(self, features: Features) -> Outputs:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if not self.open.wait(10):
                raise TimeoutError("the test never opened the gate")
            return Outputs({"echo": features.numeric.copy()})
        finally:
            with self.lock:
                self.running -= 1


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in 5 s")


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_batches_predict_side_by_side_up_to_max_in_flight(in_flight: int) -> None:
    """Like Triton's model instances: a batch forms and starts while ``in_flight - 1``
    others are still predicting in threads, and no more than that run at once."""
    gate = Gate()
    with ThreadPoolExecutor(max_workers=3) as pool:
        batcher = Batcher(gate, max_batch_rows=1, executor=pool, max_in_flight=in_flight)
        sent = [request(i, 1) for i in range(3)]
        calls = [asyncio.ensure_future(batcher.submit(f)) for f in sent]
        await until(lambda: gate.running == in_flight)
        await asyncio.sleep(0.05)  # time enough for a third call to start, were it allowed
        assert gate.running == in_flight
        gate.open.set()
        got = await asyncio.gather(*calls)
        await batcher.close()
    assert gate.most == in_flight
    for features, outputs in zip(sent, got, strict=True):
        np.testing.assert_array_equal(outputs.tensors["echo"], features.numeric)
    assert batcher.statistics().execution_count == 3


async def test_close_waits_for_every_batch_in_flight() -> None:
    gate = Gate()
    with ThreadPoolExecutor(max_workers=2) as pool:
        batcher = Batcher(gate, max_batch_rows=1, executor=pool, max_in_flight=2)
        calls = [asyncio.ensure_future(batcher.submit(request(i, 1))) for i in range(2)]
        await until(lambda: gate.running == 2)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.05)
        assert not closing.done()
        gate.open.set()
        await closing
        assert all(call.done() and call.exception() is None for call in calls)


async def test_a_stopped_batcher_fails_its_batches_in_flight_instead_of_hanging() -> None:
    """When the batcher's task is cancelled (the loop shutting down), callers whose
    batches were predicting get UNAVAILABLE ("retry") rather than waiting forever."""
    gate = Gate()
    with ThreadPoolExecutor(max_workers=2) as pool:
        batcher = Batcher(gate, max_batch_rows=1, executor=pool, max_in_flight=2, name="m")
        calls = [asyncio.ensure_future(batcher.submit(request(i, 1))) for i in range(3)]
        await until(lambda: gate.running == 2)
        (worker,) = [t for t in asyncio.all_tasks() if t.get_name() == "batcher m"]
        worker.cancel()
        got = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        gate.open.set()
    assert all(isinstance(g, Unavailable) and "stopped; retry" in str(g) for g in got)
    assert batcher.statistics().fail.count == 3


async def test_matrix_requests_batch_with_their_columns(executor: ThreadPoolExecutor) -> None:
    """Requests sent as one ``features`` matrix keep their columns (as received, FP64
    here) through a shared call, as requests sent one input per feature do."""
    names = ("a", "b", "c")
    index = {name: i for i, name in enumerate(names)}
    seen: list[dict[str, Any]] = []

    def model(features: Features) -> Outputs:
        seen.append({name: features.columns[name].copy() for name in features.columns})
        return Outputs({"echo": features.numeric.copy()})

    sent = [
        np.arange(3 * rows, dtype=np.float64).reshape(rows, 3) + 100 * i
        for i, rows in enumerate((1, 2, 3))
    ]
    parts = [Features(numeric=m.astype(np.float32), columns=MatrixColumns(m, index)) for m in sent]
    batcher = Batcher(model, executor=executor, inline_rows=64)
    got = await asyncio.gather(*(batcher.submit(part) for part in parts))
    assert len(seen) == 1 and list(seen[0]) == list(names)
    whole = np.concatenate(sent)
    for name, column in seen[0].items():
        np.testing.assert_array_equal(column, whole[:, index[name]])
        assert column.dtype == np.float64
    for m, outputs in zip(sent, got, strict=True):
        np.testing.assert_array_equal(outputs.tensors["echo"], m.astype(np.float32))


def test_limits_are_checked(executor: ThreadPoolExecutor) -> None:
    with pytest.raises(InvalidArgument, match="max_batch_rows >= 1"):
        Batcher(Model(), max_batch_rows=0, executor=executor)
    with pytest.raises(InvalidArgument, match="max_in_flight >= 1"):
        Batcher(Model(), max_in_flight=0, executor=executor)
