"""Which rows a report covers, and the merged state of those rows, per version.

A range is read as whole days, then whole hours, then base buckets (``buckets.spans``),
so the work of a report depends on the range, not on how many rows it holds. Buckets
merged from other monitors are added to this monitor's own.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, Table, and_, bindparam, or_, select
from sqlalchemy.sql.elements import ColumnElement

from services.common.db import Database
from services.common.errors import InvalidArgument, NotFound
from services.monitor.aggregates import State
from services.monitor.buckets import spans
from services.monitor.reference import ModelReference
from services.monitor.references import References
from services.monitor.tables import BUCKETS, MERGED

DAY_S = 86_400
MAX_WINDOWS = 1000
# Range bounds a report can take: the epoch (no bucket is older) to 9999-12-31, the last
# day a Timestamp (the report's window) can say, whatever the rounding to buckets.
LAST_S = 253_402_214_400


@dataclass(frozen=True)
class Scope:
    model: str
    version: int = 0  # 0: every version
    deployment: str = ""
    variant: str = ""
    start_s: int = 0
    end_s: int = 0
    window_s: int = 0  # 0: the whole range only

    def windows(self) -> Iterator[Scope]:
        if not self.window_s:
            return
        start = self.start_s // self.window_s * self.window_s
        while start < self.end_s:
            yield replace(
                self,
                start_s=max(start, self.start_s),
                end_s=min(start + self.window_s, self.end_s),
                window_s=0,
            )
            start += self.window_s


@dataclass
class VersionRows:
    reference: ModelReference
    state: State
    rows: int = 0
    labeled: int = 0


@dataclass
class Selection:
    """The merged state of a scope's rows, per version."""

    scope: Scope
    versions: dict[int, VersionRows] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(v.rows for v in self.versions.values())

    @property
    def labeled(self) -> int:
        return sum(v.labeled for v in self.versions.values())

    def newest(self) -> VersionRows | None:
        with_rows = [v for v in sorted(self.versions) if self.versions[v].rows]
        if with_rows:
            return self.versions[with_rows[-1]]
        return self.versions[max(self.versions)] if self.versions else None


def bucket_end(seconds: int, base_s: int) -> int:
    """``seconds`` rounded up to a bucket boundary: where a range ending there stops."""
    return -(-seconds // base_s) * base_s


def end_seconds(seconds: int, nanos: int) -> int:
    """The whole seconds a range ending at ``seconds`` + ``nanos`` reaches into: a range
    ending half a second into a bucket holds that bucket (its start second is the range's
    last whole second, which rounded up to buckets would leave the bucket out)."""
    return seconds + 1 if nanos > 0 else seconds


def after_now_s(now_ns: int | None = None) -> int:
    """The first whole second after now (``now_ns``, else the clock): a range ending there,
    rounded up to buckets, holds the bucket being written even in its first second, where
    the whole second of now is that bucket's own start and would leave it out."""
    now_s = int(time.time()) if now_ns is None else now_ns // 1_000_000_000
    return now_s + 1


def make_scope(
    model: str,
    version: int,
    deployment: str,
    variant: str,
    start_s: int | None,
    end_s: int | None,
    window_s: int,
    base_s: int,
) -> Scope:
    """Round the range to base buckets and check it (INVALID_ARGUMENT naming the field)."""
    if version < 0:
        raise InvalidArgument(f"scope.version: expected >= 0, got {version}")
    for name, given in (("start_time", start_s), ("end_time", end_s)):
        if given is not None and not 0 <= given <= LAST_S:
            raise InvalidArgument(
                f"scope.{name}: expected a time from 1970-01-01 to 9999-12-31, got {given} s"
            )
    end = end_s if end_s is not None else after_now_s()
    start = start_s if start_s is not None else end - DAY_S
    end = bucket_end(end, base_s)
    start = start // base_s * base_s
    if end <= start:
        raise InvalidArgument("scope.end_time: expected a time after scope.start_time")
    if window_s:
        if window_s < 0 or window_s % base_s:
            raise InvalidArgument(
                f"scope.window: expected a multiple of the base bucket ({base_s} s), "
                f"got {window_s} s"
            )
        if (end - start) / window_s > MAX_WINDOWS:
            raise InvalidArgument(
                f"scope.window: {window_s} s gives more than {MAX_WINDOWS} windows over the range"
            )
    return Scope(
        model, version, deployment.removeprefix("deployments/"), variant, start, end, window_s
    )


CACHED_STATES = 512  # decoded bucket states kept (a day's verdict reads ~35)
Found = tuple[int, int, int, tuple[object, ...], bytes]  # version, rows, labeled, identity, state


class Aggregates:
    """Reads merged bucket states for a scope. Decoded states are cached by the bucket's
    identity and revision, so a bucket that did not change since the last report is not
    decompressed again (most of a report's cost when its range holds many buckets)."""

    def __init__(self, db: Database, references: References, base_s: int) -> None:
        self._db = db
        self._references = references
        self.base_s = base_s
        self._cache: OrderedDict[tuple[object, ...], State] = OrderedDict()

    async def select(self, scope: Scope) -> Selection:
        if not await self._references.known_model(scope.model):
            raise NotFound(f"model 'models/{scope.model}' has no logged predictions in the monitor")
        rows = await self._db.read(lambda c: _rows(c, scope, self.base_s))
        selection = Selection(scope)
        versions = {version for version, *_ in rows}
        if scope.version:
            versions.add(scope.version)
        for version in sorted(versions):
            reference = await self._references.get(scope.model, version)
            selection.versions[version] = VersionRows(reference, State.empty(reference.layout))
        for version, count, labeled, identity, blob in rows:
            held = selection.versions[version]
            held.state.merge(self._decoded(identity, blob, held.reference))
            held.rows += count
            held.labeled += labeled
        return selection

    def _decoded(
        self, identity: tuple[object, ...], blob: bytes, reference: ModelReference
    ) -> State:
        state = self._cache.get(identity)
        if state is None:
            state = self._cache[identity] = State.from_bytes(blob, reference.layout)
            if len(self._cache) > CACHED_STATES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(identity)
        return state


FILTERS = ("version", "deployment", "variant")  # each narrows a scope when set


def _filters(table: Table, narrowed: tuple[str, ...]) -> list[ColumnElement[bool]]:
    return [table.c.model == bindparam("model")] + [
        table.c[name] == bindparam(name) for name in narrowed
    ]


@cache
def _query(table: Table, narrowed: tuple[str, ...], ranges: int) -> Select[Any]:
    """The statement reading ``table``'s buckets for a model narrowed by ``narrowed``,
    over ``ranges`` runs of one width each: built once per shape, values bound per call
    (building the expression cost a report more than running it)."""
    start = table.c.start_s
    runs = [
        and_(
            table.c.width_s == bindparam(f"w{i}"),
            start >= bindparam(f"lo{i}"),
            start < bindparam(f"hi{i}"),
        )
        for i in range(ranges)
    ]
    columns = [
        table.c.version,
        table.c.row_count,
        table.c.labeled_count,
        table.c.state,
        table.c.deployment,
        table.c.variant,
        table.c.width_s,
        table.c.start_s,
        table.c.revision,
    ]
    if table is MERGED:
        columns.append(MERGED.c.source_id)
    return select(*columns).where(*_filters(table, narrowed), or_(*runs))


def _rows(connection: Connection, scope: Scope, base_s: int) -> list[Found]:
    found: list[Found] = []
    narrowed = tuple(name for name in FILTERS if getattr(scope, name))
    filters = {"model": scope.model} | {name: getattr(scope, name) for name in narrowed}
    # This monitor's buckets as whole days, hours, then base buckets; merged ones are base.
    runs = {
        BUCKETS: list(spans(scope.start_s, scope.end_s, base_s)),
        MERGED: [(base_s, scope.start_s, scope.end_s)],
    }
    for table, covering in runs.items():
        if not covering:
            continue
        params: dict[str, object] = dict(filters)
        for i, (width, lo, hi) in enumerate(covering):
            params |= {f"w{i}": width, f"lo{i}": lo, f"hi{i}": hi}
        for r in connection.execute(_query(table, narrowed, len(covering)), params):
            identity = (table.name, scope.model, *r[:1], *r[4:])
            found.append((int(r[0]), int(r[1]), int(r[2]), identity, bytes(r[3])))
    return found
