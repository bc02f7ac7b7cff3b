"""A batch decoded and counted before its transaction, away from the event loop and the
writer: counted as if every row were new (the rare batch whose ids turn out to be partly
known is decoded and counted again for its new rows only). What the transaction stores
is made here too (the serialised batch, its ids as one JSON array), so the one writer's
turn holds only the statements; and a traced batch's distinct (trace id, span id) pairs
are picked out. A ``Counted`` holds no decoded rows, so it can come from another process
(``services.monitor.counting``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from keel.monitor.v1 import ingest_pb2
from services.common.errors import DomainError
from services.common.tracing import distinct_spans
from services.monitor.accumulate import Rows, count_predictions
from services.monitor.aggregates import State
from services.monitor.batches import decode
from services.monitor.buckets import NS
from services.monitor.reference import ModelReference


@dataclass
class Counted:
    """A batch's counts per base bucket and what its transaction stores (or why it was
    refused)."""

    error: DomainError | None = None
    row_count: int = 0
    deltas: dict[int, tuple[State, int]] = field(default_factory=dict)  # start -> counts, rows
    spans: list[tuple[int, int]] = field(default_factory=list)  # distinct traced requests
    payload: bytes = b""  # the batch, serialised: the segment kept for the join window
    ids_json: str = "[]"  # its prediction ids as one JSON array: a statement parameter
    ignored_columns: list[str] = field(default_factory=list)
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)

    @cached_property
    def ids(self) -> list[str]:
        """The prediction ids, in row order (read only on the paths that need them)."""
        ids: list[str] = json.loads(self.ids_json)
        return ids


def count_rows(
    reference: ModelReference,
    rows: Rows,
    times: npt.NDArray[np.int64],
    bucket_s: int,
    unseen: dict[str, dict[str, int]],
) -> dict[int, tuple[State, int]]:
    """Counts of ``rows`` per base bucket of their times."""
    starts = times // NS // bucket_s * bucket_s
    buckets = np.unique(starts)
    deltas: dict[int, tuple[State, int]] = {}
    for start in buckets:
        picked = None if len(buckets) == 1 else np.flatnonzero(starts == start)
        part = rows if picked is None else rows.take(picked)
        delta = State.empty(reference.layout)
        count_predictions(delta, reference, part)
        for column, values in unseen.items():
            delta.add_unseen(column, values)
        unseen = {}
        deltas[int(start)] = (delta, len(starts) if picked is None else len(picked))
    return deltas


def count_batch(
    batch: ingest_pb2.PredictionBatch,
    reference: ModelReference,
    bucket_s: int,
    span_limit: int = 0,
    payload: bytes | None = None,
) -> Counted:
    """Decode and count ``batch`` (``payload``: its serialisation, when the caller has
    it); with ``span_limit``, also up to that many of its rows' distinct (trace id,
    span id) pairs (none are looked for at 0)."""
    try:
        decoded = decode(batch, reference)
    except DomainError as error:
        return Counted(error)
    deltas = count_rows(reference, decoded.rows, decoded.times, bucket_s, decoded.unseen)
    spans = []
    if span_limit and batch.trace_ids:
        spans = distinct_spans(batch.trace_ids, batch.span_ids, decoded.row_count, span_limit)
    counted = Counted(
        None,
        decoded.row_count,
        deltas,
        spans,
        ignored_columns=decoded.ignored_columns,
        unseen=decoded.unseen,
    )
    if decoded.row_count:
        counted.payload = batch.SerializeToString() if payload is None else payload
        counted.ids_json = decoded.ids_json
    return counted
