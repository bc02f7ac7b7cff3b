"""Aggregate buckets in the database: written through a per-transaction ``BucketWriter``
(each touched bucket read once, locked on PostgreSQL, written once), read back by time
range with roll-ups (whole days, then whole hours, then base buckets)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, Table, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from services.monitor.aggregates import State
from services.monitor.reference import ModelReference
from services.monitor.tables import BUCKETS

HOUR_S = 3600
DAY_S = 86_400
NS = 1_000_000_000


@dataclass(frozen=True, order=True)
class Key:
    model: str
    version: int
    deployment: str
    variant: str


def widths(base_s: int) -> tuple[int, ...]:
    """The base width and the roll-ups kept alongside it, smallest first."""
    return (base_s, *(w for w in (HOUR_S, DAY_S) if w > base_s and w % base_s == 0))


def insert_ignoring_conflicts(
    connection: Connection, table: Table
) -> postgresql.Insert | sqlite.Insert:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@dataclass
class _Held:
    state: State
    exists: bool
    rows: int = 0
    labeled: int = 0


class BucketWriter:
    """Adds deltas to buckets within one transaction; ``flush`` writes them.

    Rows are counted into one delta per key and base bucket for the whole transaction;
    ``flush`` merges each delta into the base bucket and its roll-ups, reading and
    writing each of them once.
    """

    def __init__(self, connection: Connection, base_s: int) -> None:
        self._connection = connection
        self.base_s = base_s
        self._widths = widths(base_s)
        self._deltas: dict[tuple[Key, int], _Held] = {}
        self._held: dict[tuple[Key, int, int], _Held] = {}
        self._references: dict[Key, ModelReference] = {}

    def add(
        self,
        key: Key,
        reference: ModelReference,
        time_s: int,
        fill: Callable[[State], None],
        rows: int = 0,
        labeled: int = 0,
    ) -> None:
        """Count into the buckets holding ``time_s``: ``fill`` adds to this
        transaction's delta for the key and base bucket."""
        slot = (key, time_s // self.base_s * self.base_s)
        delta = self._deltas.get(slot)
        if delta is None:
            delta = self._deltas[slot] = _Held(State.empty(reference.layout), False)
            self._references[key] = reference
        fill(delta.state)
        delta.rows += rows
        delta.labeled += labeled

    def _merge_deltas(self) -> None:
        for (key, start), delta in self._deltas.items():
            reference = self._references[key]
            for width in self._widths:
                slot = (key, width, start // width * width)
                held = self._held.get(slot)
                if held is None:
                    held = self._held[slot] = self._load(slot, reference)
                held.state.merge(delta.state)
                held.rows += delta.rows
                held.labeled += delta.labeled
        self._deltas.clear()

    def _load(self, slot: tuple[Key, int, int], reference: ModelReference) -> _Held:
        query = select(BUCKETS.c.state).where(_match(BUCKETS, slot))
        if self._connection.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        if row is None:
            return _Held(State.empty(reference.layout), False)
        state = State.from_bytes(bytes(row[0]), reference.layout)
        return _Held(state, True)

    def flush(self) -> None:
        self._merge_deltas()
        for slot in sorted(self._held):
            held = self._held[slot]
            key, width, start = slot
            if not held.exists:
                values = {
                    "model": key.model,
                    "version": key.version,
                    "deployment": key.deployment,
                    "variant": key.variant,
                    "width_s": width,
                    "start_s": start,
                    "revision": 1,
                    "row_count": held.rows,
                    "labeled_count": held.labeled,
                    "state": held.state.to_bytes(),
                }
                insert = insert_ignoring_conflicts(self._connection, BUCKETS)
                statement = insert.values(**values).on_conflict_do_nothing()
                done = self._connection.execute(statement.returning(BUCKETS.c.revision))
                if done.first() is not None:
                    continue
                # Another replica created it meanwhile: add ours to theirs.
                theirs = self._load(slot, self._references[key])
                theirs.state.merge(held.state)
                held = _Held(theirs.state, True, held.rows, held.labeled)
            self._connection.execute(
                update(BUCKETS)
                .where(_match(BUCKETS, slot))
                .values(
                    state=held.state.to_bytes(),
                    revision=BUCKETS.c.revision + 1,
                    row_count=BUCKETS.c.row_count + held.rows,
                    labeled_count=BUCKETS.c.labeled_count + held.labeled,
                )
            )
        self._held.clear()


def _match(table: Table, slot: tuple[Key, int, int]) -> ColumnElement[bool]:
    key, width, start = slot
    return and_(
        table.c.model == key.model,
        table.c.version == key.version,
        table.c.deployment == key.deployment,
        table.c.variant == key.variant,
        table.c.width_s == width,
        table.c.start_s == start,
    )


def spans(start_s: int, end_s: int, base_s: int) -> Iterator[tuple[int, int, int]]:
    """Cover [start_s, end_s) (multiples of base_s) with the widest buckets that fit:
    yields (width, first start, end) runs."""
    ladder = widths(base_s)[::-1]

    def cover(lo: int, hi: int, level: int) -> Iterator[tuple[int, int, int]]:
        width = ladder[level]
        if level == len(ladder) - 1:
            if lo < hi:
                yield width, lo, hi
            return
        first = -(-lo // width) * width
        last = hi // width * width
        if first >= last:
            yield from cover(lo, hi, level + 1)
            return
        yield from cover(lo, first, level + 1)
        yield width, first, last
        yield from cover(last, hi, level + 1)

    yield from cover(start_s, end_s, 0)
