"""Paging by key, after keel.common.v1's conventions (paging.proto): a page token is a
``PageCursor`` (the last row's key and id, and a digest of the query it belongs to),
base64url without padding. Shared by every list RPC of every service."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from keel.common.v1 import paging_pb2
from services.common.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 1000


def _invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", violations=[FieldViolation(field, message)])


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended, and which query it belongs to."""

    last_key: str
    last_id: int
    digest: str


def page_size(value: int) -> int:
    if value < 0:
        raise _invalid("page_size", f"expected 0 (the default) or more, got {value}")
    return min(value or DEFAULT_PAGE, MAX_PAGE)


def query_digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def check_cursor(cursor: Cursor | None, digest: str) -> Cursor | None:
    if cursor is not None and cursor.digest != digest:
        raise _invalid("page_token", "the token was issued for another query")
    return cursor


def cursor(token: str) -> Cursor | None:
    """The cursor a ``page_token`` carries; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = paging_pb2.PageCursor.FromString(raw)
    except (binascii.Error, ValueError, Exception):  # noqa: BLE001 - any garbage is a bad token
        raise _invalid("page_token", "not a token this server issued") from None
    return Cursor(decoded.last_key, decoded.last_id, decoded.query_digest)


def token(next_cursor: Cursor | None) -> str:
    """The ``next_page_token`` for ``next_cursor``; empty on the last page."""
    if next_cursor is None:
        return ""
    message = paging_pb2.PageCursor(
        last_key=next_cursor.last_key, last_id=next_cursor.last_id, query_digest=next_cursor.digest
    )
    return base64.urlsafe_b64encode(message.SerializeToString()).decode().rstrip("=")
