"""Messages as plain JSON values and as table cells, and times as the flags take them.

``message_dict`` is the one rule for ``--json`` output of the contract's messages: field
names as in the ``.proto``, 64-bit integers as numbers (not strings, as proto3's JSON
mapping has them), enums by their value name without the enum's prefix (``READY`` for
``MODEL_VERSION_STATUS_READY``), timestamps as RFC 3339 UTC, durations in seconds, unset
sub-messages and optional fields left out, ``Any`` unpacked with its ``@type``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import any_pb2, duration_pb2, symbol_database, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from rich.table import Table

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_INTEGERS = {
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
}


def enum_text(descriptor: EnumDescriptor, number: int) -> str:
    """The value's name without the enum's prefix (``READY`` for
    ``MODEL_VERSION_STATUS_READY``); the number itself if the enum does not know it."""
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"
    return value.name.removeprefix(prefix)


def time_text(stamp: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 in UTC with seconds, e.g. ``2025-06-01T12:00:00Z``; ``""`` when unset."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return ""
    return stamp.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _scalar(field: Any, value: Any) -> Any:
    """One value of ``field`` (a FieldDescriptor, of the pure-Python or upb kind)."""
    if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        return message_dict(value)
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        return enum_text(field.enum_type, value)
    if field.cpp_type in _INTEGERS:
        return int(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def _unpack_any(packed: any_pb2.Any) -> dict[str, Any]:
    type_name = packed.TypeName()
    try:
        kind = symbol_database.Default().GetSymbol(type_name)
    except KeyError:
        return {"@type": packed.type_url}
    message = kind()
    packed.Unpack(message)
    return {"@type": type_name, **message_dict(message)}


def message_dict(message: Message) -> Any:
    """``message`` as plain JSON values (see the module docstring)."""
    if isinstance(message, timestamp_pb2.Timestamp):
        return time_text(message) or None
    if isinstance(message, duration_pb2.Duration):
        return message.ToTimedelta().total_seconds()
    if isinstance(message, any_pb2.Any):
        return _unpack_any(message)
    result: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            result[field.name] = {str(k): _scalar(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            result[field.name] = [_scalar(field, item) for item in value]
        elif field.has_presence and not message.HasField(field.name):
            continue
        else:
            result[field.name] = _scalar(field, value)
    return result


def messages(items: Iterable[Message]) -> list[Any]:
    return [message_dict(item) for item in items]


# Cells -------------------------------------------------------------------------------------


def number_text(value: float | None, digits: int = 4) -> str:
    """A figure for a table cell: up to ``digits`` significant digits, ``-`` when absent."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table; cells are shown as text (None as ``-``)."""
    result = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*("-" if cell is None else str(cell) for cell in row))
    return result


def key_values(title: str | None, pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column table of fields and values, for one resource."""
    result = Table(title=title, title_justify="left", show_header=False, box=None)
    result.add_column(style="bold")
    result.add_column(overflow="fold")
    for key, value in pairs:
        result.add_row(key, "-" if value is None or value == "" else str(value))
    return result


# Times -------------------------------------------------------------------------------------


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """A flag's time: RFC 3339 / ISO 8601 (``2025-06-01T12:00:00Z``, ``2025-06-01``; no
    zone means UTC), ``now``, or a span ago such as ``90m``, ``24h``, ``7d``, ``1h30m``."""
    now = now or datetime.now(UTC)
    cleaned = text.strip()
    if cleaned.lower() == "now":
        return now
    spans = _RELATIVE.findall(cleaned.lower())
    if spans and "".join(_RELATIVE.sub("", cleaned.lower()).split()) == "":
        delta = sum(
            (timedelta(**{_UNITS[unit]: float(amount)}) for amount, unit in spans), timedelta()
        )
        return now - delta
    try:
        when = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"time {text!r}: expected RFC 3339 (2025-06-01T12:00:00Z), 'now', "
            "or a span ago such as 90m, 24h, 7d"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when.astimezone(UTC))
    return stamp
