"""The batcher's spans: a traced request gets a queue and a predict span in its own trace,
also in a batch it shares with requests of other traces; an untraced one gets none."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import StatusCode

from services.common.errors import InvalidArgument
from services.inference.batching import Batcher
from services.inference.records import Features, Outputs


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    # As a service without an exporter: only what a caller's sampled trace asks for.
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


class Gate:
    """A model whose first call waits for ``released``: later requests queue meanwhile.
    Rows whose first value is negative fail."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.calls = 0

    def __call__(self, features: Features) -> Outputs:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.released.wait(10)
        if (features.numeric[:, 0] < 0).any():
            raise InvalidArgument("poisoned row")
        return Outputs({"echo": features.numeric.copy()})


def rows(count: int, value: float = 1.0) -> Features:
    return Features(numeric=np.full((count, 2), value, dtype=np.float32), columns={})


async def submit_in_span(
    batcher: Batcher, provider: TracerProvider, name: str, features: Features
) -> tuple[int, int]:
    """Submit as a traced call would (in a root span of a trace of its own); its ids."""
    tracer = provider.get_tracer("caller")
    with tracer.start_as_current_span(name, context=trace.set_span_in_context(_sampled())):
        span = trace.get_current_span().get_span_context()
        try:
            await batcher.submit(features)
        except InvalidArgument:
            pass
        return span.trace_id, span.span_id


def _sampled() -> trace.NonRecordingSpan:
    """A sampled remote parent, as a caller's traceparent gives (a new trace each time)."""
    context = trace.SpanContext(
        random.getrandbits(128),
        random.getrandbits(64),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.NonRecordingSpan(context)


async def test_requests_of_two_traces_in_one_batch_each_get_their_own_spans(
    executor: ThreadPoolExecutor, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = Gate()
    batcher = Batcher(model, executor=executor, tracer=provider.get_tracer("keel.inference"))
    first = asyncio.create_task(submit_in_span(batcher, provider, "a", rows(1)))
    await asyncio.to_thread(model.entered.wait, 10)
    second = asyncio.create_task(submit_in_span(batcher, provider, "b", rows(2)))
    third = asyncio.create_task(submit_in_span(batcher, provider, "c", rows(3)))
    untraced = asyncio.create_task(batcher.submit(rows(4)))
    await asyncio.sleep(0.05)  # all three queued behind the first call
    model.released.set()
    ids = await asyncio.gather(first, second, third)
    await untraced
    assert model.calls == 2  # the first alone, then the other three together
    spans = exporter.get_finished_spans()
    for (trace_id, caller), own_rows in zip(ids, (1, 2, 3), strict=True):
        mine = {s.name: s for s in spans if s.context and s.context.trace_id == trace_id}
        assert set(mine) >= {"keel.inference.queue", "keel.inference.predict"}
        queue, predict = mine["keel.inference.queue"], mine["keel.inference.predict"]
        assert queue.parent is not None and predict.parent is not None
        assert queue.parent.span_id == predict.parent.span_id == caller
        assert predict.attributes is not None
        assert predict.attributes["keel.rows"] == own_rows
        batch = (1, 1) if own_rows == 1 else (3, 9)  # (requests, rows) of the model call
        assert (
            predict.attributes["keel.batch.requests"],
            predict.attributes["keel.batch.rows"],
        ) == batch
    # Three traced requests, two spans each (plus their callers' spans); none for the untraced.
    assert sum(s.name.startswith("keel.inference.") for s in spans) == 6
    await batcher.close()


class CountingTracer(trace.NoOpTracer):
    """Counts the spans asked for."""

    def __init__(self) -> None:
        self.started = 0

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        self.started += 1
        return super().start_span(*args, **kwargs)


async def test_an_untraced_request_asks_for_no_span(
    executor: ThreadPoolExecutor, provider: TracerProvider
) -> None:
    model = Gate()
    model.released.set()
    tracer = CountingTracer()
    batcher = Batcher(model, executor=executor, tracer=tracer)
    with provider.get_tracer("caller").start_as_current_span("unsampled root"):
        await batcher.submit(rows(1))  # a root span, not sampled: not recording
    await batcher.submit(rows(1))  # no span at all
    assert tracer.started == 0
    await batcher.close()


async def test_a_failed_model_call_marks_each_traced_predict_span_failed(
    executor: ThreadPoolExecutor, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = Gate()
    model.released.set()
    batcher = Batcher(model, executor=executor, tracer=provider.get_tracer("keel.inference"))
    trace_id, _ = await submit_in_span(batcher, provider, "a", rows(1, value=-1.0))
    [predict] = [s for s in exporter.get_finished_spans() if s.name == "keel.inference.predict"]
    assert predict.context is not None and predict.context.trace_id == trace_id
    assert predict.status.status_code == StatusCode.ERROR
    assert "poisoned row" in (predict.status.description or "")
    await batcher.close()
