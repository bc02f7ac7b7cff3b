"""Escaping and number formats shared by the page and its charts. Every piece of text
that reaches the HTML goes through ``esc``."""

from __future__ import annotations

import html
from datetime import UTC, datetime


def esc(value: object) -> str:
    """``value`` as text safe in an HTML element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def number(value: float | None, digits: int = 4) -> str:
    """A figure with ``digits`` significant digits; an em dash when missing."""
    if value is None:
        return "—"
    return f"{value:.{digits}g}"


def percent(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.{digits}f}%"


def count(value: int) -> str:
    return f"{value:,}"


def when(value: datetime | None) -> str:
    """A time in UTC, to the minute."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            amount = seconds // size
            return f"{amount} {unit}{'s' if amount != 1 else ''}"
    return f"{seconds} s"
