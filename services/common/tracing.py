"""Spans inside a service, at next to no cost when nothing records them.

Server and client spans come from OpenTelemetry's gRPC instrumentation (server spans
through ``layers.TracingLayer``); the spans here are
the ones inside a call (validate, queue, predict, load, db, …). A span is made only when
the current span records — the call is traced — so an untraced call pays one context
lookup. Work that outlives the calling task (a batch served in a worker, a log record
committed later) takes its context along (``traced_context``) and makes its spans
afterwards from recorded times (``finished_span``), each in its own request's trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)
from opentelemetry.util.types import Attributes

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

# What a block of an untraced call runs in instead of a span (reusable: it holds no state).
NO_SPAN: AbstractContextManager[None] = nullcontext()


def span_if_recording(
    tracer: Tracer, name: str, attributes: Attributes = None
) -> AbstractContextManager[Span | None]:
    """``with span_if_recording(tracer, name) as span:`` — a child of the current span,
    made current, when the current span records; otherwise ``span`` is None and nothing
    is made."""
    if not trace.get_current_span().is_recording():
        return NO_SPAN
    return tracer.start_as_current_span(name, attributes=attributes)


def traced_context() -> Context | None:
    """The current context if its span records (the call is traced), else None: what
    work handed to another task or thread takes along to parent its spans."""
    if trace.get_current_span().is_recording():
        return otel_context.get_current()
    return None


def shared_span(
    tracer: Tracer, name: str, calls: Iterable[Context | None], attributes: Attributes = None
) -> AbstractContextManager[Span | None]:
    """A span for work done once for several calls (a group commit), made current: in
    the first traced call's trace, linked to the other traced calls' spans; nothing when
    no call is traced (``calls`` holds ``traced_context()`` values)."""
    spans: dict[tuple[int, int], tuple[SpanContext, Context]] = {}
    for call in calls:
        if call is not None:
            span = trace.get_current_span(call).get_span_context()
            spans.setdefault((span.trace_id, span.span_id), (span, call))
    if not spans:
        return NO_SPAN
    (_, first), *others = spans.values()
    return tracer.start_as_current_span(
        name, context=first, attributes=attributes, links=[Link(span) for span, _ in others]
    )


def finished_span(
    tracer: Tracer,
    name: str,
    *,
    parent: Context,
    start_ns: int,
    end_ns: int,
    attributes: Attributes = None,
    links: Sequence[Link] = (),
    error: BaseException | None = None,
) -> SpanContext:
    """A span made after the fact from recorded wall-clock times (``time.time_ns()``),
    a child of ``parent``'s span; ``error`` marks it failed. Returns its context."""
    span = tracer.start_span(
        name, context=parent, start_time=start_ns, attributes=attributes, links=links
    )
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end(end_time=end_ns)
    return span.get_span_context()


def remote_parent(trace_id: int, span_id: int) -> Context:
    """A context whose span is another process's sampled span (the W3C ids a record
    carries): a span started in it joins that trace as the remote span's child."""
    remote = SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))


def spans_in_remote_traces(
    tracer: Tracer,
    name: str,
    parents: Sequence[tuple[int, int]],
    *,
    start_ns: int,
    end_ns: int,
    attributes: Attributes = None,
    links: Sequence[Link] = (),
) -> None:
    """One finished span per (trace id, span id) of ``parents``, each the child of that
    remote span in its trace: work done here for requests traced elsewhere."""
    for trace_id, span_id in parents:
        finished_span(
            tracer,
            name,
            parent=remote_parent(trace_id, span_id),
            start_ns=start_ns,
            end_ns=end_ns,
            attributes=attributes,
            links=links,
        )


def distinct_spans(
    trace_ids: bytes, span_ids: bytes, rows: int, limit: int
) -> list[tuple[int, int]]:
    """The distinct (trace id, span id) pairs of ``rows`` rows — 16 and 8 raw bytes a row
    (the prediction log's ``trace_ids``/``span_ids``) — in order of first row, at most
    ``limit``. Rows with an all-zero id are skipped; [] when a column is missing or not
    ``rows`` ids long."""
    if (
        rows <= 0
        or len(trace_ids) != TRACE_ID_BYTES * rows
        or len(span_ids) != SPAN_ID_BYTES * rows
    ):
        return []
    traces = np.frombuffer(trace_ids, np.uint8).reshape(rows, TRACE_ID_BYTES)
    spans = np.frombuffer(span_ids, np.uint8).reshape(rows, SPAN_ID_BYTES)
    both = np.ascontiguousarray(np.concatenate([traces, spans], axis=1))
    keys = both.view(np.dtype((np.void, TRACE_ID_BYTES + SPAN_ID_BYTES))).ravel()
    _, first = np.unique(keys, return_index=True)
    first.sort()
    valid = traces[first].any(axis=1) & spans[first].any(axis=1)
    pairs: list[tuple[int, int]] = []
    for row in first[valid][:limit]:
        pair = both[row].tobytes()
        pairs.append(
            (
                int.from_bytes(pair[:TRACE_ID_BYTES], "big"),
                int.from_bytes(pair[TRACE_ID_BYTES:], "big"),
            )
        )
    return pairs
