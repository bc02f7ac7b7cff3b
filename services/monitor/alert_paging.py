"""Paging by key, after keel.common.v1's conventions (paging.proto): a page token is a
``PageCursor`` (the last row's key and a digest of the query it belongs to)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.monitor.alert_validation import invalid

DEFAULT_PAGE = 50
MAX_PAGE = 1000


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended, and which query it belongs to (a PageCursor)."""

    last_key: str
    last_id: int
    digest: str


def page_size(value: int) -> int:
    if value < 0:
        raise invalid("page_size", f"expected 0 (the default) or more, got {value}")
    return min(value or DEFAULT_PAGE, MAX_PAGE)


def query_digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def check_cursor(cursor: Cursor | None, digest: str) -> Cursor | None:
    if cursor is not None and cursor.digest != digest:
        raise invalid("page_token", "the token was issued for another query")
    return cursor
