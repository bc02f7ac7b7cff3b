"""Reading the change log: the audit log (paged, filtered) and WatchEvents (a live,
resumable stream). Both read the same rows, written with every mutation."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Row

from services.common.paging import Cursor, check_cursor, page_size, query_digest
from services.registry import filter_sql
from services.registry.core import Core, invalid
from services.registry.records import now_us
from services.registry.store import CHANGES, Store

BATCH = 500


@dataclass(frozen=True)
class ChangeEntry:
    sequence: int
    type: str
    resource: str
    model: str
    time: int
    actor: str
    reason: str
    trace_id: str
    payload: bytes
    before: bytes | None
    changed_fields: tuple[str, ...]


@dataclass(frozen=True)
class Heartbeat:
    latest_sequence: int
    server_time: int


def _entry(row: Row[Any]) -> ChangeEntry:
    return ChangeEntry(
        row.sequence,
        row.type,
        row.resource,
        row.model,
        row.time,
        row.actor,
        row.reason,
        row.trace_id,
        bytes(row.payload),
        bytes(row.before) if row.before is not None else None,
        tuple(f for f in row.changed_fields.split(",") if f),
    )


def _changes_after(seen: int, where: Sequence[ColumnElement[bool]], store: Store) -> list[Row[Any]]:
    return store.changes_after(seen, BATCH, where)


class Changes:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def audit(
        self, filter_text: str, order_text: str, size: int, cursor: Cursor | None
    ) -> tuple[list[ChangeEntry], Cursor | None]:
        limit = page_size(size)
        order = " ".join(order_text.split()).lower()
        if order not in ("", "sequence", "sequence asc", "sequence desc"):
            raise invalid("order_by", f"expected 'sequence' or 'sequence desc', got {order_text!r}")
        descending = order == "sequence desc"
        digest = query_digest("audit", filter_text, descending)
        cursor = check_cursor(cursor, digest)
        where = filter_sql.change_filter(filter_text)
        rows = await self.core.read(
            lambda store: store.changes_page(
                where, descending, cursor.last_id if cursor else None, limit + 1
            )
        )
        entries = [_entry(r) for r in rows]
        more = len(entries) > limit
        entries = entries[:limit]
        return entries, Cursor("", entries[-1].sequence, digest) if more else None

    async def latest(self, *, traced: bool = True) -> int:
        return await self.core.read(lambda store: store.latest_sequence(), traced=traced)

    async def watch(
        self,
        after: int | None,
        models: Sequence[str],
        types: Sequence[str],
        heartbeat_s: float,
    ) -> AsyncIterator[ChangeEntry | Heartbeat]:
        """Every matching change after ``after`` in sequence order, then live ones;
        heartbeats first and whenever the stream has been quiet for ``heartbeat_s``."""
        where: list[ColumnElement[bool]] = []
        if models:
            where.append(CHANGES.c.model.in_(list(models)))
        if types:
            where.append(CHANGES.c.type.in_(list(types)))
        # A stream's reads are not traced: its span lasts as long as the subscriber stays.
        latest = await self.latest(traced=False)
        yield Heartbeat(latest, now_us())
        seen = latest if after is None else after
        quiet_since = time.monotonic()
        while True:
            mark = self.core.hub.latest  # commits here after this wake the wait below
            rows = await self.core.read(
                functools.partial(_changes_after, seen, where), traced=False
            )
            for row in rows:
                yield _entry(row)
            if rows:
                seen = rows[-1].sequence
                quiet_since = time.monotonic()
                if len(rows) == BATCH:
                    continue
            if time.monotonic() - quiet_since >= heartbeat_s:
                yield Heartbeat(await self.latest(traced=False), now_us())
                quiet_since = time.monotonic()
            await self.core.hub.wait(mark, min(self.core.hub.poll_s, heartbeat_s))
