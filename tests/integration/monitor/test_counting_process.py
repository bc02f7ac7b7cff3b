"""Counting in the monitor's worker process: the counts, ids and refusals that come back
are exactly what counting in a thread gives, the worker learns a version's reference
once, and a worker that dies fails only the batches it held (UNAVAILABLE: the producer
resends them) while the next batch starts another. The pipes to and from a worker take a
whole call at once."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pickle
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from keel.client.profile import categorical_profile, numeric_profile
from keel.monitor.v1 import ingest_pb2
from services.common.errors import InvalidArgument, Unavailable
from services.monitor.aggregates import State
from services.monitor.convert import column_reference
from services.monitor.counted import Counted
from services.monitor.counting import PIPE_BYTES, Counting, _ship, _unship
from services.monitor.reference import BINARY, FeatureSpec, ModelReference
from tests.support.monitor_batches import column_raw, column_strings

ROWS = 500
NOW_NS = 1_800_000_000 * 10**9


def reference() -> ModelReference:
    rng = np.random.default_rng(0)
    profiles = {
        "age": column_reference(numeric_profile("age", rng.normal(40, 10, 5000))),
        "income": column_reference(numeric_profile("income", rng.lognormal(10, 1, 5000))),
        "city": column_reference(categorical_profile("city", ["paris"] * 60 + ["lyon"] * 40)),
        "prediction": column_reference(numeric_profile("prediction", rng.beta(2, 5, 5000))),
    }
    return ModelReference(
        model="churn",
        version=3,
        task=BINARY,
        features=(
            FeatureSpec("age", "numeric", range_min=0, range_max=120),
            FeatureSpec("income", "numeric"),
            FeatureSpec("city", "categorical"),
        ),
        class_labels=("no", "yes"),
        columns={k: v for k, v in profiles.items() if v is not None},
        row_count=5000,
        digest="d",
    )


def prediction_batch(seed: int, rows: int = ROWS) -> ingest_pb2.PredictionBatch:
    rng = np.random.default_rng(seed)
    age = rng.normal(45, 12, rows)
    age[::50] = np.nan
    cities = rng.choice(["paris", "lyon", "oslo"], rows).tolist()
    batch = ingest_pb2.PredictionBatch(
        producer_id="p",
        sequence=seed,
        model="models/churn",
        version=3,
        row_count=rows,
        prediction_ids=column_strings("", [f"b{seed}-{i}" for i in range(rows)]),
        # Two base buckets: the rows are split between them.
        time_unix_nanos=[NOW_NS + (i % 2) * 600 * 10**9 for i in range(rows)],
        features=[
            column_raw("age", age.astype(np.float32)),
            column_raw("income", rng.lognormal(10, 1, rows)),
            column_strings("city", cities),
            column_raw("not-in-signature", np.zeros(rows)),
        ],
    )
    batch.outputs.score.CopyFrom(column_raw("", rng.beta(2, 4, rows)))
    return batch


@pytest.fixture
async def worker() -> AsyncIterator[Counting]:
    counting = Counting()
    try:
        yield counting
    finally:
        counting.close()


@pytest.fixture
async def thread() -> AsyncIterator[Counting]:
    counting = Counting(in_process=True)
    try:
        yield counting
    finally:
        counting.close()


def assert_same(got: Counted, want: Counted) -> None:
    assert got.error is None and want.error is None
    assert got.row_count == want.row_count == ROWS
    assert got.ids == want.ids and got.ids_json == want.ids_json
    assert got.payload == want.payload
    assert got.ignored_columns == want.ignored_columns == ["not-in-signature"]
    assert got.unseen == want.unseen == {"city": {"oslo": want.unseen["city"]["oslo"]}}
    assert sorted(got.deltas) == sorted(want.deltas) and len(want.deltas) == 2
    for start, (state, rows) in want.deltas.items():
        theirs, their_rows = got.deltas[start]
        assert their_rows == rows
        assert theirs.layout is state.layout  # rebuilt on the service's own layout
        assert theirs.buffers[0].dtype == np.int64  # sent as int32, counted on as int64
        for name, array in state.arrays.items():
            np.testing.assert_array_equal(theirs.arrays[name], array, err_msg=name)


async def test_the_worker_counts_exactly_what_a_thread_counts(
    worker: Counting, thread: Counting
) -> None:
    ref = reference()
    for seed in (1, 2, 3):
        batch = prediction_batch(seed)
        assert_same(await worker.count(batch, ref, 300, 0), await thread.count(batch, ref, 300, 0))


async def test_a_monitor_that_keeps_no_ids_gets_the_same_counts_without_them(
    thread: Counting,
) -> None:
    ref, batch = reference(), prediction_batch(4)
    idless = Counting(ids=False)
    try:
        got = await idless.count(batch, ref, 300, 0)
    finally:
        idless.close()
    want = await thread.count(batch, ref, 300, 0)
    assert got.ids_json == "[]" and len(want.ids) == ROWS
    got.ids_json = want.ids_json  # the rest is the same
    assert_same(got, want)


@pytest.mark.parametrize("count", [2**31 - 1, 2**31, -(2**31) - 1])
def test_counts_past_int32_travel_as_int64(count: int) -> None:
    ref = reference()
    state = State.empty(ref.layout)
    state.buffers[0][:3] = [count, 0, 1]
    counted = Counted(None, 1, {300: (state, 1)}, payload=b"x")
    shipped = pickle.loads(pickle.dumps(_ship(counted)))
    sent = shipped[2][300][0][0]
    assert sent.dtype == (np.int32 if count == 2**31 - 1 else np.int64)
    back = _unship(shipped, ref, b"x").deltas[300][0]
    assert back.buffers[0].dtype == np.int64
    np.testing.assert_array_equal(back.buffers[0], state.buffers[0])


async def test_a_refused_batch_names_its_field_from_the_worker_too(
    worker: Counting, thread: Counting
) -> None:
    batch = prediction_batch(4)
    batch.features[1].raw.data = batch.features[1].raw.data[:-8]  # one value short
    got = await worker.count(batch, reference(), 300, 0)
    want = await thread.count(batch, reference(), 300, 0)
    assert isinstance(got.error, InvalidArgument) and isinstance(want.error, InvalidArgument)
    assert got.error.message == want.error.message and "income" in got.error.message
    assert got.error.violations == want.error.violations and got.error.violations
    assert got.deltas == {} and got.row_count == 0


async def test_a_worker_that_dies_fails_what_it_held_and_the_next_batch_starts_another(
    worker: Counting, thread: Counting
) -> None:
    ref = reference()
    await worker.count(prediction_batch(5), ref, 300, 0)
    pool = worker._pool  # noqa: SLF001 - the test kills the worker process itself
    assert isinstance(pool, ProcessPoolExecutor)
    (pid,) = pool._processes  # noqa: SLF001
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(Unavailable, match="counting process stopped"):
        await worker.count(prediction_batch(6), ref, 300, 0)
    # A new worker, which has not seen the reference: it is sent again.
    batch = prediction_batch(7)
    assert_same(await worker.count(batch, ref, 300, 0), await thread.count(batch, ref, 300, 0))
    assert worker._pool is not pool  # noqa: SLF001
    if pipes_may_grow():
        assert pipe_sizes(worker) == [PIPE_BYTES, PIPE_BYTES]  # the new worker's too


def pipes_may_grow() -> bool:
    return int(Path("/proc/sys/fs/pipe-max-size").read_text()) >= PIPE_BYTES


def pipe_sizes(counting: Counting) -> list[int]:
    """The sizes of the worker's call and answer pipes (CPython's names for them)."""
    pool = counting._pool  # noqa: SLF001
    assert isinstance(pool, ProcessPoolExecutor)
    queues = [pool._call_queue, pool._result_queue]  # type: ignore[attr-defined]  # noqa: SLF001
    return [fcntl.fcntl(queue._writer.fileno(), fcntl.F_GETPIPE_SZ) for queue in queues]


async def test_the_pipes_to_a_worker_take_a_whole_call_at_once(worker: Counting) -> None:
    # Eight batches of the benchmark's size (~100 KB each) in one write, where Linux's
    # default pipe holds 64 KiB.
    if not pipes_may_grow():
        pytest.skip(f"this machine's fs.pipe-max-size is below {PIPE_BYTES} bytes")
    worker.start()
    assert pipe_sizes(worker) == [PIPE_BYTES, PIPE_BYTES]


async def test_a_worker_that_lost_a_reference_gets_it_again(
    worker: Counting, thread: Counting
) -> None:
    ref = reference()
    worker.start()  # a fresh worker, which has been sent nothing
    digest, _ = worker._pickled(ref)  # noqa: SLF001
    worker._sent.add(digest)  # noqa: SLF001 - as if it had been sent, and lost
    batch = prediction_batch(8)
    assert_same(await worker.count(batch, ref, 300, 0), await thread.count(batch, ref, 300, 0))


async def test_batches_sent_at_once_travel_together_and_each_gets_its_own_answer(
    worker: Counting, thread: Counting
) -> None:
    ref = reference()
    batches = [prediction_batch(seed) for seed in range(10, 30)]
    bad = prediction_batch(30)
    bad.features[1].raw.data = bad.features[1].raw.data[:-8]
    batches.insert(7, bad)
    futures = [worker.count(batch, ref, 300, 0) for batch in batches]
    assert worker._calls == 2 and len(worker._waiting) == len(batches) - 2  # noqa: SLF001
    answers = await asyncio.gather(*futures)
    for batch, got in zip(batches, answers, strict=True):
        if batch is bad:
            assert isinstance(got.error, InvalidArgument) and "income" in got.error.message
        else:
            assert_same(got, await thread.count(batch, ref, 300, 0))
    assert worker._calls == 0 and not worker._waiting  # noqa: SLF001


async def test_closing_drops_the_batches_not_sent_and_starts_no_other_worker(
    worker: Counting,
) -> None:
    ref = reference()
    worker.start()
    futures = [worker.count(prediction_batch(seed), ref, 300, 0) for seed in range(40, 52)]
    assert worker._calls == 2 and len(worker._waiting) == 10  # noqa: SLF001
    worker.close()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, Counted | asyncio.CancelledError) for r in results)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) >= 10
    await asyncio.sleep(0.1)  # the calls that were out have ended
    assert worker._pool is None and worker._calls == 0  # noqa: SLF001
