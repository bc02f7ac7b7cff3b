"""Ground-truth labels joined to logged predictions by id, within the join window.

A label whose prediction is known is counted at once, in the bucket of the prediction
(its version, deployment, variant and time). A label that comes first waits in
``monitor_pending_labels`` until its prediction is logged (e.g. replayed from a spool)
or the window closes. The first label of a prediction wins.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, bindparam, delete, select, update

from keel.monitor.v1 import ingest_pb2
from services.monitor.accumulate import count_labels
from services.monitor.aggregates import State
from services.monitor.batches import decode
from services.monitor.buckets import NS, BucketWriter, Key, insert_ignoring_conflicts
from services.monitor.reference import ModelReference
from services.monitor.tables import IDS, PENDING, SEGMENTS


@dataclass(frozen=True)
class Keeping:
    """How logged rows and labels are kept: the base bucket, the join window, and the
    largest batch (rows of predictions or labels) one call may carry."""

    bucket_s: int
    join_window_s: int
    max_batch_rows: int

    @property
    def join_window_ns(self) -> int:
        return self.join_window_s * NS

    @property
    def keeps_rows(self) -> bool:
        """Whether logged rows are kept at all: a window of 0 keeps none (ADR 0015)."""
        return self.join_window_s > 0


@dataclass
class FeedbackCounts:
    matched: int = 0
    unmatched: int = 0
    late: int = 0
    duplicate: int = 0


@dataclass(frozen=True)
class Label:
    prediction_id: str
    text: str  # class label, or the value of a regressor as text
    label_time: int
    prediction_time: int | None  # when the sender knows it


def pending_for(connection: Connection, model: str) -> bool:
    found = connection.execute(select(PENDING.c.model).where(PENDING.c.model == model).limit(1))
    return found.first() is not None


def apply_feedback(
    connection: Connection,
    writer: BucketWriter,
    model: str,
    labels: list[Label],
    references: Mapping[int, ModelReference],
    now: int,
    window_ns: int,
) -> FeedbackCounts:
    counts = FeedbackCounts()
    by_id = {label.prediction_id: label for label in labels}
    counts.matched, counts.duplicate, known = _join(connection, writer, model, by_id, references)
    for label in by_id.values():
        if label.prediction_id in known:
            continue
        if label.prediction_time is not None and label.prediction_time < now - window_ns:
            counts.late += 1
            continue
        statement = insert_ignoring_conflicts(connection, PENDING).values(
            model=model,
            prediction_id=label.prediction_id,
            label=label.text,
            label_time=label.label_time,
            expire_time=now + window_ns,
        )
        done = connection.execute(statement.on_conflict_do_nothing().returning(PENDING.c.model))
        if done.first() is not None:
            counts.unmatched += 1
        else:
            counts.duplicate += 1
    counts.duplicate += len(labels) - len(by_id)
    return counts


def join_labels(
    connection: Connection,
    writer: BucketWriter,
    reference: ModelReference,
    ids: list[str],
    now: int,
) -> None:
    """Join labels that were waiting for these newly logged predictions."""
    rows = connection.execute(
        select(PENDING.c.prediction_id, PENDING.c.label, PENDING.c.label_time).where(
            PENDING.c.model == reference.model, PENDING.c.prediction_id.in_(ids)
        )
    ).all()
    if not rows:
        return
    by_id = {r[0]: Label(r[0], r[1], int(r[2]), None) for r in rows}
    _join(connection, writer, reference.model, by_id, {reference.version: reference})
    connection.execute(
        delete(PENDING).where(
            PENDING.c.model == reference.model, PENDING.c.prediction_id.in_(list(by_id))
        )
    )


def _join(
    connection: Connection,
    writer: BucketWriter,
    model: str,
    labels: Mapping[str, Label],
    references: Mapping[int, ModelReference],
) -> tuple[int, int, set[str]]:
    """Count labels whose prediction is logged and unlabelled: (joined, already labelled,
    every id of ``labels`` whose prediction is logged)."""
    query = select(IDS.c.prediction_id, IDS.c.segment, IDS.c.row, IDS.c.labeled).where(
        IDS.c.model == model, IDS.c.prediction_id.in_(list(labels))
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()  # another replica's label for the same id waits
    found = connection.execute(query).all()
    by_segment: dict[int, list[tuple[str, int]]] = defaultdict(list)
    already = 0
    for pid, segment, row, labeled in found:
        if labeled:
            already += 1
        else:
            by_segment[int(segment)].append((pid, int(row)))
    claimed = [pid for members in by_segment.values() for pid, _ in members]
    if claimed:
        connection.execute(
            update(IDS)
            .where(IDS.c.model == model, IDS.c.prediction_id == bindparam("pid"))
            .values(labeled=True, label=bindparam("text"), label_time=bindparam("at")),
            [
                {"pid": pid, "text": labels[pid].text, "at": labels[pid].label_time}
                for pid in claimed
            ],
        )
    joined = 0
    for segment, members in by_segment.items():
        ids = [pid for pid, _ in members]
        rows = [row for _, row in members]
        joined += _count_segment(connection, writer, segment, rows, ids, labels, references)
    return joined, already, {pid for pid, *_ in found}


def _count_segment(
    connection: Connection,
    writer: BucketWriter,
    segment: int,
    rows: list[int],
    ids: list[str],
    labels: Mapping[str, Label],
    references: Mapping[int, ModelReference],
) -> int:
    record = connection.execute(
        select(
            SEGMENTS.c.version, SEGMENTS.c.deployment, SEGMENTS.c.variant, SEGMENTS.c.payload
        ).where(SEGMENTS.c.id == segment)
    ).one()
    reference = references.get(int(record[0]))
    if reference is None or not rows:
        return 0
    batch = ingest_pb2.PredictionBatch.FromString(bytes(record[3]))
    decoded = decode(batch, reference)
    take = np.asarray(rows, dtype=np.int64)
    actual = np.asarray([label_value(reference, labels[pid].text) for pid in ids])
    keep = ~np.isnan(actual)
    take, actual = take[keep], actual[keep]
    subset = decoded.rows.take(take)
    seconds = decoded.times[take] // NS
    key = Key(reference.model, reference.version, str(record[1]), str(record[2]))
    for start in np.unique(seconds // writer.base_s * writer.base_s):
        chosen = np.flatnonzero(seconds // writer.base_s * writer.base_s == start)

        def fill(state: State, chosen: npt.NDArray[np.intp] = chosen) -> None:
            count_labels(state, reference, subset.take(chosen), actual[chosen])

        writer.add(key, reference, int(start), fill, labeled=len(chosen))
    return int(keep.sum())


def label_value(reference: ModelReference, text: str) -> float:
    """A label as counted: the class index of a classifier, the value of a regressor;
    NaN when it does not fit (checked before it was accepted)."""
    if reference.classifier:
        try:
            return float(reference.class_labels.index(text))
        except ValueError:
            return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan
