"""Applying prediction-log batches: exactly-once counting by producer sequence (the mark
is stored in the same transaction as the aggregates) and by prediction id within the
join window. A window of 0 keeps no rows (ADR 0015): a batch then adds to the aggregates
only, and ids are not remembered.

Batches waiting when the writer is free are applied in one transaction (group commit):
each touched bucket is read and written once per group, and the group pays for one
commit. Decoding and counting run before, away from the event loop and the writer: in the
monitor's counting process by default (``services.monitor.counting``).

Traced (the call's span records): the group's transaction is a ``keel.monitor.db`` span,
and each applied batch puts a ``keel.monitor.record`` span (received → committed) into
the trace of every request its rows came from, as the child of the span that made the
prediction (the batch's ``trace_ids``/``span_ids``), linked to the batch's call here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, Tracer
from opentelemetry.util.types import AttributeValue
from sqlalchemy import Connection, delete, select, update

from keel.monitor.v1 import ingest_pb2
from services.common.db import Database
from services.common.errors import DomainError, Unavailable
from services.common.tracing import (
    NO_SPAN,
    shared_span,
    spans_in_remote_traces,
    traced_context,
)
from services.monitor import columns
from services.monitor.aggregates import State
from services.monitor.batches import decode, invalid, prediction_ids_json
from services.monitor.buckets import NS, BucketWriter, Key, insert_ignoring_conflicts
from services.monitor.counted import Counted, count_rows
from services.monitor.counting import Counting
from services.monitor.feedback import Keeping, join_labels, pending_for
from services.monitor.reference import ModelReference
from services.monitor.references import References
from services.monitor.tables import PENDING, PRODUCERS, SEGMENTS

# Batches applied in one transaction at most: half a stream's flow-control window (64 by
# default), so that a producer whose whole window is queued keeps sending while a group
# is written; a group of the whole window stalled the stream once per group.
GROUP_LIMIT = 32
EXPIRE_SEGMENTS = 256  # segments forgotten per transaction at most
# keel.monitor.record spans per batch at most: a batch of 10,000 single-row requests of
# 10,000 traces costs bounded work (the first requests of the batch are recorded).
RECORD_SPANS_PER_BATCH = 256
log = logging.getLogger(__name__)

STOPPING = "the monitor is stopping; resend the batch"
APPLIED = "APPLIED"
DUPLICATE = "DUPLICATE"


@dataclass
class BatchResult:
    outcome: str
    applied_through: int
    applied_rows: int = 0
    duplicate_rows: int = 0
    ignored_columns: list[str] = field(default_factory=list)


@dataclass
class _Item:
    batch: ingest_pb2.PredictionBatch
    reference: ModelReference
    done: asyncio.Future[BatchResult]
    counted: asyncio.Future[Counted]
    trace: Context | None = None  # the call that sent the batch, when its span records
    received_ns: int = 0  # wall clock, when traced


class Ingestor:
    def __init__(
        self,
        db: Database,
        references: References,
        keeping: Keeping,
        on_applied: Callable[[str], None] = lambda model: None,
        tracer: Tracer | None = None,
        counting: Counting | None = None,
        group_limit: int = GROUP_LIMIT,
    ) -> None:
        self._db = db
        self._tracer = tracer
        self._references = references
        self._bucket_s = keeping.bucket_s
        self._join_window_ns = keeping.join_window_ns
        self._keeps_rows = keeping.keeps_rows
        self.max_batch_rows = keeping.max_batch_rows
        self._on_applied = on_applied
        self._queue: list[_Item] = []
        self._drainer: asyncio.Task[None] | None = None
        self._closing = False
        self._counting = counting or Counting(in_process=True)
        self._group_limit = max(1, group_limit)

    async def start(self) -> None:
        """Start what counts batches (a worker process) before the first batch comes."""
        await asyncio.to_thread(self._counting.start)

    async def aclose(self) -> None:
        """Stop applying: the group being written finishes, batches still queued are
        refused (UNAVAILABLE: the producer resends them), and counting stops. Call it
        before the database is closed: a group started after would open a connection
        that nothing closes."""
        self._closing = True
        if self._drainer is not None:
            await self._drainer
        for item in self._queue:
            if not item.done.done():
                item.done.set_exception(Unavailable(STOPPING))
        self._queue.clear()
        self._counting.close()

    async def applied_through(self, producer_id: str) -> int:
        return await self._db.read(lambda c: _mark(c, producer_id, lock=False))

    async def submit(self, batch: ingest_pb2.PredictionBatch) -> BatchResult:
        """Apply ``batch`` once its effect is durable; DomainError when it is refused."""
        return await self.enqueue(batch, await self.prepare(batch))

    async def prepare(self, batch: ingest_pb2.PredictionBatch) -> ModelReference:
        """Check the batch's header and find its version (the registry is asked once)."""
        check_batch(batch, self.max_batch_rows)
        return await self._references.get(batch.model.removeprefix("models/"), batch.version)

    def enqueue(
        self, batch: ingest_pb2.PredictionBatch, reference: ModelReference
    ) -> asyncio.Future[BatchResult]:
        """Queue a prepared batch; batches are applied in the order they are queued."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BatchResult] = loop.create_future()
        if self._closing:
            done.set_exception(Unavailable(STOPPING))
            return done
        done.add_done_callback(lambda _: self._on_applied(reference.model))
        traced = traced_context() if self._tracer is not None else None
        limit = RECORD_SPANS_PER_BATCH if traced is not None and batch.trace_ids else 0
        counted = self._counting.count(batch, reference, self._bucket_s, limit)
        item = _Item(batch, reference, done, counted, traced, time.time_ns() if traced else 0)
        self._queue.append(item)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        while self._queue and not self._closing:
            limit = self._group_limit
            group, self._queue = self._queue[:limit], self._queue[limit:]
            commit: SpanContext | None = None
            try:
                counted = [await item.counted for item in group]
                work = partial(self._apply_group, group=group, counted=counted)
                with self._db_span(group, counted) as span:
                    outcomes = await self._db.write(work)
                commit = None if span is None else span.get_span_context()
            except DomainError as error:
                outcomes = [error] * len(group)
            except Exception:  # noqa: BLE001 - the store failed: every batch may be resent
                log.exception("applying %d prediction batches failed", len(group))
                failed = Unavailable("the monitor cannot commit now; resend the batch")
                outcomes = [failed] * len(group)
            for item, outcome in zip(group, outcomes, strict=True):
                if item.done.cancelled():
                    continue
                if isinstance(outcome, BaseException):
                    item.done.set_exception(outcome)
                else:
                    item.done.set_result(outcome)
            if commit is not None:
                self._record_spans(group, counted, outcomes, commit)

    def _db_span(
        self, group: list[_Item], counted: list[Counted]
    ) -> AbstractContextManager[Span | None]:
        calls = [item.trace for item in group]
        if self._tracer is None or all(call is None for call in calls):
            return NO_SPAN
        attributes: dict[str, AttributeValue] = {
            "db.system": self._db.dialect,
            "db.operation": "apply_prediction_batches",
            "keel.batches": len(group),
            "keel.rows": sum(c.row_count for c in counted),
        }
        return shared_span(self._tracer, "keel.monitor.db", calls, attributes)

    def _record_spans(
        self,
        group: list[_Item],
        counted: list[Counted],
        outcomes: list[BatchResult | DomainError],
        commit: SpanContext,
    ) -> None:
        """Each applied traced batch in the traces of the requests its rows came from."""
        assert self._tracer is not None
        committed_ns = time.time_ns()
        for item, result, outcome in zip(group, counted, outcomes, strict=True):
            if not result.spans or not isinstance(outcome, BatchResult):
                continue
            if outcome.outcome != APPLIED or item.trace is None:
                continue
            batch = item.batch
            call = trace.get_current_span(item.trace).get_span_context()
            spans_in_remote_traces(
                self._tracer,
                "keel.monitor.record",
                result.spans,
                start_ns=item.received_ns,
                end_ns=committed_ns,
                attributes={
                    "keel.model": item.reference.model,
                    "keel.version": item.reference.version,
                    "keel.variant": batch.variant,
                    "keel.rows": batch.row_count,
                    "keel.producer": batch.producer_id,
                    "keel.sequence": batch.sequence,
                },
                links=[Link(call), Link(commit)],
            )

    def _apply_group(
        self, connection: Connection, group: list[_Item], counted: list[Counted]
    ) -> list[BatchResult | DomainError]:
        state = _GroupState(connection, BucketWriter(connection, self._bucket_s))
        outcomes: list[BatchResult | DomainError] = []
        for item, result in zip(group, counted, strict=True):
            if result.error is not None:
                outcomes.append(result.error)
                continue
            outcomes.append(self._apply(state, item, result))
        state.writer.flush()
        now = time.time_ns()
        for producer, sequence in state.moved.items():
            _set_mark(connection, producer, sequence, now)
        return outcomes

    def _apply(self, group: _GroupState, item: _Item, counted: Counted) -> BatchResult:
        batch, reference = item.batch, item.reference
        ignored = counted.ignored_columns
        connection, writer = group.connection, group.writer
        mark = group.mark(batch.producer_id)
        if 0 < batch.sequence <= mark:
            return BatchResult(DUPLICATE, mark, 0, batch.row_count, ignored)
        now = time.time_ns()
        key = Key(reference.model, reference.version, _name(batch.deployment), batch.variant)
        deltas, kept = counted.deltas, counted.row_count
        if counted.row_count and self._keeps_rows:
            segment = _store_segment(connection, counted.payload, key, now + self._join_window_ns)
            fresh = _store_ids(connection, key.model, counted, segment)
            if not fresh.all():  # some rows were seen before: count the new ones only
                chosen = np.flatnonzero(fresh)
                kept = len(chosen)
                deltas = self._recount(batch, reference, chosen)
        for start, (delta, count) in deltas.items():
            writer.add(key, reference, start, partial(_add, delta), rows=count)
        if batch.rejections:
            _count_rejections(writer, key, reference, batch, now)
        if kept and self._keeps_rows and group.pending(key.model):
            ids = counted.ids if kept == counted.row_count else _kept_ids(counted.ids, fresh)
            join_labels(connection, writer, reference, ids, now)
        if batch.sequence > mark:
            group.marks[batch.producer_id] = group.moved[batch.producer_id] = batch.sequence
            mark = batch.sequence
        duplicates = counted.row_count - kept
        return BatchResult(APPLIED, mark, kept, duplicates, ignored)

    def _recount(
        self, batch: ingest_pb2.PredictionBatch, reference: ModelReference, chosen: npt.NDArray[Any]
    ) -> dict[int, tuple[State, int]]:
        """Counts of the ``chosen`` rows of ``batch`` alone (it decoded once already)."""
        decoded = decode(batch, reference)
        rows, times = decoded.rows.take(chosen), decoded.times[chosen]
        return count_rows(reference, rows, times, self._bucket_s, decoded.unseen)


@dataclass
class _GroupState:
    """What one group's transaction reads once: producers' marks, pending labels."""

    connection: Connection
    writer: BucketWriter
    marks: dict[str, int] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)
    pending_models: dict[str, bool] = field(default_factory=dict)

    def mark(self, producer: str) -> int:
        if producer not in self.marks:
            self.marks[producer] = _mark(self.connection, producer, lock=True)
        return self.marks[producer]

    def pending(self, model: str) -> bool:
        if model not in self.pending_models:
            self.pending_models[model] = pending_for(self.connection, model)
        return self.pending_models[model]


def _add(delta: State, into: State) -> None:
    into.merge(delta)


def _kept_ids(ids: list[str], fresh: npt.NDArray[np.bool_]) -> list[str]:
    return [pid for pid, keep in zip(ids, fresh, strict=True) if keep]


def check_batch(batch: ingest_pb2.PredictionBatch, max_rows: int) -> None:
    if not 1 <= len(batch.producer_id) <= 128:
        raise invalid("batch.producer_id", "producer_id: expected 1-128 characters")
    if batch.sequence < 0:
        raise invalid("batch.sequence", f"sequence: expected >= 0, got {batch.sequence}")
    if not batch.model.startswith("models/") or batch.model == "models/":
        raise invalid("batch.model", f"model: expected 'models/{{model}}', got '{batch.model}'")
    if batch.version < 1:
        raise invalid("batch.version", f"version: expected >= 1, got {batch.version}")
    columns.check_row_count(batch.row_count, max_rows)  # RESOURCE_EXHAUSTED above the limit


def _name(deployment: str) -> str:
    return deployment.removeprefix("deployments/")


def _mark(connection: Connection, producer_id: str, *, lock: bool) -> int:
    query = select(PRODUCERS.c.applied_through).where(PRODUCERS.c.producer_id == producer_id)
    if lock and connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = connection.execute(query).first()
    return 0 if row is None else int(row[0])


def _set_mark(connection: Connection, producer_id: str, sequence: int, now: int) -> None:
    done = connection.execute(
        update(PRODUCERS)
        .where(PRODUCERS.c.producer_id == producer_id, PRODUCERS.c.applied_through < sequence)
        .values(applied_through=sequence, update_time=now)
    )
    if done.rowcount == 0:
        statement = insert_ignoring_conflicts(connection, PRODUCERS).values(
            producer_id=producer_id, applied_through=sequence, update_time=now
        )
        connection.execute(statement.on_conflict_do_nothing())


INSERT_SEGMENT = {
    # Written as the driver's statement: building it with SQLAlchemy for every batch (a
    # 100 KB bound value, a cache key) cost more than SQLite's insert.
    "sqlite": (
        "INSERT INTO monitor_segments "
        "(model, version, deployment, variant, expire_time, payload) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id"
    ),
    "postgresql": (
        "INSERT INTO monitor_segments "
        "(model, version, deployment, variant, expire_time, payload) "
        "VALUES (%(model)s, %(version)s, %(deployment)s, %(variant)s, %(expire)s, %(payload)s) "
        "RETURNING id"
    ),
}


def _store_segment(connection: Connection, payload: bytes, key: Key, expire: int) -> int:
    """Keep the serialised batch for the join window; returns the segment's id."""
    dialect = connection.dialect.name
    params = _driver_parameters(
        dialect,
        model=key.model,
        version=key.version,
        deployment=key.deployment,
        variant=key.variant,
        expire=expire,
        payload=payload,
    )
    return int(connection.exec_driver_sql(INSERT_SEGMENT[dialect], params).one()[0])


def _driver_parameters(dialect: str, **values: Any) -> Any:
    """Parameters of a driver statement above: positional (in the order given) for SQLite's
    ``?``, named for PostgreSQL's ``%(name)s``."""
    return tuple(values.values()) if dialect == "sqlite" else values


# The ids of a batch travel as one parameter, a JSON array of strings (made while counting,
# ``batches.prediction_ids_json``): per-row parameter binding was most of a batch's cost.
INSERT_IDS = {
    "sqlite": (
        'INSERT INTO monitor_prediction_ids (model, prediction_id, segment, "row", labeled) '
        "SELECT ?, value, ?, key, 0 FROM json_each(?) WHERE true ON CONFLICT DO NOTHING"
    ),
    "postgresql": (
        'INSERT INTO monitor_prediction_ids (model, prediction_id, segment, "row", labeled) '
        "SELECT %(model)s, id, %(segment)s, ord - 1, false "
        "FROM json_array_elements_text(%(ids)s::json) WITH ORDINALITY AS t(id, ord) "
        "ON CONFLICT DO NOTHING"
    ),
}
KNOWN_IDS = {
    "sqlite": (
        "SELECT prediction_id FROM monitor_prediction_ids WHERE model = ? AND segment != ? "
        "AND prediction_id IN (SELECT value FROM json_each(?))"
    ),
    "postgresql": (
        "SELECT prediction_id FROM monitor_prediction_ids WHERE model = %(model)s "
        "AND segment != %(segment)s "
        "AND prediction_id IN (SELECT json_array_elements_text(%(ids)s::json))"
    ),
}


def _ids_parameters(dialect: str, model: str, segment: int, ids_json: str) -> Any:
    """The parameters of the id statements (the same three, in this order, in each)."""
    return _driver_parameters(dialect, model=model, segment=segment, ids=ids_json)


def _store_ids(
    connection: Connection, model: str, counted: Counted, segment: int
) -> npt.NDArray[np.bool_]:
    """Record the batch's prediction ids; the mask is False for ids already known."""
    dialect = connection.dialect.name
    params = _ids_parameters(dialect, model, segment, counted.ids_json)
    n = counted.row_count
    inserted = connection.exec_driver_sql(INSERT_IDS[dialect], params).rowcount
    if inserted == n:
        return np.ones(n, dtype=bool)
    known = {row[0] for row in connection.exec_driver_sql(KNOWN_IDS[dialect], params)}
    return np.fromiter((pid not in known for pid in counted.ids), dtype=bool, count=n)


def _count_rejections(
    writer: BucketWriter,
    key: Key,
    reference: ModelReference,
    batch: ingest_pb2.PredictionBatch,
    now: int,
) -> None:
    index = {f.name: i for i, f in enumerate(reference.features)}
    whole = len(reference.features)
    at = batch.create_time.ToNanoseconds() if batch.HasField("create_time") else now

    def fill(state):  # type: ignore[no-untyped-def]
        table = state.i8("rejections")
        for rejection in batch.rejections:
            row = index.get(rejection.feature, whole)
            table[row, min(max(rejection.reason, 0), 6)] += max(rejection.row_count, 0)

    writer.add(key, reference, at // NS, fill)


DELETE_IDS = {
    # A segment's own ids, found in its payload: the key's b-tree, no index on segment.
    "sqlite": (
        "DELETE FROM monitor_prediction_ids WHERE model = ? AND segment = ? "
        "AND prediction_id IN (SELECT value FROM json_each(?))"
    ),
    "postgresql": (
        "DELETE FROM monitor_prediction_ids WHERE model = %(model)s AND segment = %(segment)s "
        "AND prediction_id IN (SELECT json_array_elements_text(%(ids)s::json))"
    ),
}


def expire(connection: Connection, now: int, limit: int = EXPIRE_SEGMENTS) -> int:
    """Forget up to ``limit`` segments past the join window, oldest first, with the ids
    each brought (an id first logged in another segment belongs to that one), and the
    labels whose prediction never came; returns the segments dropped."""
    old = connection.execute(
        select(SEGMENTS.c.id, SEGMENTS.c.model, SEGMENTS.c.payload)
        .where(SEGMENTS.c.expire_time < now)
        .order_by(SEGMENTS.c.expire_time)
        .limit(limit)
    ).all()
    dialect = connection.dialect.name
    for segment, model, payload in old:
        batch = ingest_pb2.PredictionBatch.FromString(bytes(payload))
        ids = prediction_ids_json(batch.prediction_ids, batch.row_count)
        connection.exec_driver_sql(
            DELETE_IDS[dialect], _ids_parameters(dialect, model, segment, ids)
        )
    if old:
        connection.execute(delete(SEGMENTS).where(SEGMENTS.c.id.in_([row[0] for row in old])))
    # Labels that waited the whole window for their prediction are dropped too.
    connection.execute(delete(PENDING).where(PENDING.c.expire_time < now))
    return len(old)
