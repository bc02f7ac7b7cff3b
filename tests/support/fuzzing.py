"""Hypothesis strategies that build protobuf messages from their descriptors alone.

``messages(descriptor)`` fills any message field by field with values that are legal on
the wire but arbitrarily wrong for the service: huge and negative numbers, NaN and
infinities, enum numbers nobody declared, empty, long, unicode and injection-shaped
strings, random bytes, nested messages, repeated fields, maps and oneofs. ``Hints`` make
some of them plausible (a real model name, a resource name with one part broken) so that
a request gets past the first validation, and ``mutants`` takes valid requests and breaks
one or two fields of each. The fuzz tests (tests/fuzz) send what these build to real
servers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

Strategy = st.SearchStrategy
# A field's plausible values, looked up by "Message.field", then "field", then the full
# name of the field's message type ("google.protobuf.Timestamp").
Hints = Mapping[str, Strategy[Any]]

MAX_DEPTH = 4
F = FieldDescriptor

ODD_STRINGS = (
    "",
    " ",
    "\x00",
    "\t\n",
    "/",
    "//",
    "..",
    "../../etc/passwd",
    "%",
    "_",
    "*",
    "'",
    '"',
    "\\",
    "' OR '1'='1' --",
    "a\x00b",
    "😀",
    "\u202e\u0301",
    "ｍｏｄｅｌｓ/churn",
    "NaN",
    "-1",
    "1e999",
    "0x7fffffffffffffff",
    "²",  # str.isdigit() is true for these, int() refuses them
    "١٢",
    "${jndi:ldap://x}",
    "{{7*7}}",
)
INTEGER_EDGES = (0, 1, -1, 2, 7, 100, 1000, 10**6, 10**9, 2**31 - 1, -(2**31), 2**53 + 1)


def _characters() -> Strategy[str]:
    # Lone surrogates have no UTF-8 encoding: a protobuf string refuses them.
    return st.characters(codec="utf-8")


def odd_text(max_size: int = 40) -> Strategy[str]:
    """Strings a service does not expect: odd ones, random unicode, very long ones."""
    long = st.builds(lambda c, n: c * n, _characters(), st.integers(256, 70_000))
    return st.one_of(
        st.sampled_from(ODD_STRINGS),
        st.text(_characters(), max_size=max_size),
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-_./", max_size=max_size),
        long,
    )


def odd_bytes() -> Strategy[bytes]:
    long = st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(64, 50_000))
    return st.one_of(st.binary(max_size=64), long)


def integers(bits: int, signed: bool) -> Strategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = sorted({v for v in (*INTEGER_EDGES, low, high, low + 1, high - 1) if low <= v <= high})
    return st.one_of(
        st.sampled_from(edges), st.integers(max(low, -3), min(high, 50)), st.integers(low, high)
    )


def floats(width: int) -> Strategy[float]:
    edges = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 1e300, 5e-324]
    return st.one_of(st.sampled_from(edges), st.floats(width=width))  # type: ignore[arg-type]


SCALARS: dict[int, Callable[[], Strategy[Any]]] = {
    F.TYPE_DOUBLE: partial(floats, 64),
    F.TYPE_FLOAT: partial(floats, 32),
    F.TYPE_INT32: partial(integers, 32, True),
    F.TYPE_SINT32: partial(integers, 32, True),
    F.TYPE_SFIXED32: partial(integers, 32, True),
    F.TYPE_INT64: partial(integers, 64, True),
    F.TYPE_SINT64: partial(integers, 64, True),
    F.TYPE_SFIXED64: partial(integers, 64, True),
    F.TYPE_UINT32: partial(integers, 32, False),
    F.TYPE_FIXED32: partial(integers, 32, False),
    F.TYPE_UINT64: partial(integers, 64, False),
    F.TYPE_FIXED64: partial(integers, 64, False),
    F.TYPE_BOOL: st.booleans,
    F.TYPE_STRING: odd_text,
    F.TYPE_BYTES: odd_bytes,
}


def _descriptor(message: Message) -> Descriptor:
    # The stubs type it as the pure-Python or the upb descriptor; both behave the same.
    return cast(Descriptor, message.DESCRIPTOR)


def _owner(field: FieldDescriptor) -> Descriptor:
    """The message ``field`` belongs to."""
    assert field.containing_type is not None
    return field.containing_type


def _type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message (or map) field."""
    assert field.message_type is not None
    return field.message_type


def _hint(field: FieldDescriptor, hints: Hints) -> Strategy[Any] | None:
    keys = [f"{_owner(field).name}.{field.name}"]
    # A bare field name hints scalar fields only; a message field by its type's name.
    keys.append(field.name if field.message_type is None else field.message_type.full_name)
    for key in keys:
        if key in hints:
            return hints[key]
    return None


def _single(field: FieldDescriptor, hints: Hints, depth: int) -> Strategy[Any]:
    """One value of ``field`` (one element, when the field is repeated)."""
    if field.message_type is not None:
        found: Strategy[Any] = messages(field.message_type, hints, depth + 1)
    elif field.enum_type is not None:
        declared = [value.number for value in field.enum_type.values]
        found = st.one_of(st.sampled_from(declared), integers(32, True))
    else:
        found = SCALARS[field.type]()
    hint = _hint(field, hints)
    # The hint twice: plausible values are drawn about two times in three.
    return found if hint is None else st.one_of(hint, hint, found)


def _repeated(field: FieldDescriptor, element: Strategy[Any]) -> Strategy[list[Any]]:
    few = st.lists(element, max_size=4)
    if field.message_type is not None:
        return few
    if field.type in (F.TYPE_STRING, F.TYPE_BYTES):  # many short values, not many long ones
        element = st.text(max_size=8) if field.type == F.TYPE_STRING else st.binary(max_size=8)
    many = st.builds(lambda value, n: [value] * n, element, st.integers(5, 5_000))
    return st.one_of(few, st.lists(element, max_size=16), many)


def field_values(field: FieldDescriptor, hints: Hints, depth: int = 0) -> Strategy[Any]:
    """Values of ``field`` as a whole: a dict for a map, a list for a repeated field."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        entry = field.message_type
        key = _single(entry.fields_by_name["key"], hints, depth)
        value = _single(entry.fields_by_name["value"], hints, depth)
        return st.dictionaries(key, value, max_size=4)
    if field.message_type is not None and field.message_type.full_name.endswith(".FieldMask"):
        return _field_masks(field, hints)
    element = _single(field, hints, depth)
    if field.is_repeated:
        return _repeated(field, element)
    return element


def _field_masks(field: FieldDescriptor, hints: Hints) -> Strategy[Message]:
    """Masks naming fields of the message beside the mask (the usual update request):
    ``routes``, ``model.routes``, nested ones, and wrong ones."""
    names = set()
    for sibling in _owner(field).fields:
        for inner in sibling.message_type.fields if sibling.message_type else ():
            names |= {sibling.name, inner.name, f"{sibling.name}.{inner.name}"}
            for deeper in inner.message_type.fields if inner.message_type else ():
                names.add(f"{inner.name}.{deeper.name}")
    path = st.one_of(st.sampled_from(sorted(names) or [""]), odd_text())
    mask_class = GetMessageClass(_type(field))
    return st.lists(path, max_size=5).map(lambda paths: mask_class(paths=paths))


def assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    """Set ``field`` of ``message`` to ``value`` (as drawn by ``field_values``)."""
    target = getattr(message, field.name) if field.is_repeated else None
    if isinstance(value, dict):
        entry_value = _type(field).fields_by_name["value"]
        for key, item in value.items():
            if entry_value.message_type is not None:
                target[key].CopyFrom(item)  # type: ignore[index]
            else:
                target[key] = item  # type: ignore[index]
    elif field.is_repeated:
        target.extend(value)  # type: ignore[union-attr]
    elif field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _build(message_class: type[Message], values: dict[str, Any]) -> Message:
    message = message_class()
    descriptor = _descriptor(message)
    for name, value in values.items():
        if value is not None:
            field, item = value if isinstance(value, tuple) else (name, value)
            assign(message, descriptor.fields_by_name[field], item)
    return message


def messages(descriptor: Descriptor, hints: Hints | None = None, depth: int = 0) -> Strategy[Any]:
    """Messages of ``descriptor``: each field unset or drawn, at most one field per oneof,
    nested messages down to ``MAX_DEPTH`` levels."""
    hints = hints or {}
    message_class = GetMessageClass(descriptor)
    if depth >= MAX_DEPTH:
        return st.just(message_class())
    optional: dict[str, Strategy[Any]] = {}
    for oneof in descriptor.oneofs:
        choices = [st.tuples(st.just(f.name), field_values(f, hints, depth)) for f in oneof.fields]
        optional[f"oneof {oneof.name}"] = st.one_of(st.none(), *choices)
    for field in descriptor.fields:
        if field.containing_oneof is None:
            optional[field.name] = field_values(field, hints, depth)
    values = st.fixed_dictionaries({}, optional=optional)
    return st.builds(_build, st.just(message_class), values)


@st.composite
def _mutant(draw: st.DrawFn, seeds: Sequence[Message], hints: Hints) -> Message:
    message = type(seeds[0])()
    message.CopyFrom(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 2))):
        _break_one(draw, message, hints)
    return message


def _break_one(draw: st.DrawFn, message: Message, hints: Hints) -> None:
    """Replace (or clear) one field somewhere in ``message``."""
    descriptor = _descriptor(message)
    fields = list(descriptor.fields)
    if not fields:
        return
    field: FieldDescriptor = draw(st.sampled_from(fields))
    nested = field.message_type is not None and not field.message_type.GetOptions().map_entry
    if nested and draw(st.booleans()):
        if field.is_repeated and len(getattr(message, field.name)):
            container = getattr(message, field.name)
            _break_one(draw, container[draw(st.integers(0, len(container) - 1))], hints)
            return
        if not field.is_repeated and message.HasField(field.name):
            _break_one(draw, getattr(message, field.name), hints)
            return
    message.ClearField(field.name)
    if draw(st.integers(0, 4)):  # a cleared field, one time in five
        assign(message, field, draw(field_values(field, hints, depth=2)))


def mutants(seeds: Sequence[Message], hints: Hints | None = None) -> Strategy[Any]:
    """Copies of valid ``seeds``, as they are or with one or two fields replaced by wrong
    values."""
    return _mutant(seeds, hints or {})


def requests(
    descriptor: Descriptor, hints: Hints | None = None, seeds: Sequence[Message] = ()
) -> Strategy[Any]:
    """Requests of one kind: random messages, plausible ones (``hints``), and ``seeds``
    (valid requests) with a field or two broken, half of the draws when there are seeds."""
    mixed = [messages(descriptor), messages(descriptor, hints)]
    if seeds:
        mixed += [mutants(seeds, hints)] * 2
    return st.one_of(*mixed)


def broken_names(valid: Sequence[str]) -> Strategy[str]:
    """Valid resource names, and the same names with one part broken."""
    return st.one_of(st.sampled_from(valid), _broken_name(valid))


@st.composite
def _broken_name(draw: st.DrawFn, valid: Sequence[str]) -> str:
    parts = draw(st.sampled_from(valid)).split("/")
    index = draw(st.integers(0, len(parts) - 1))
    replacement = draw(
        st.one_of(
            st.sampled_from(
                ["", "0", "-1", "²", "9223372036854775808", "9" * 5000, "x", "Churn", " churn", "*"]
            ),
            st.just(parts[index].upper()),
            st.just(parts[index] + "/"),
            odd_text(12),
        )
    )
    how = draw(st.sampled_from(["replace", "drop", "duplicate"]))
    if how == "drop" and len(parts) > 1:
        del parts[index]
    elif how == "duplicate":
        parts.insert(index, parts[index])
    else:
        parts[index] = replacement
    return "/".join(parts)


def broken_bytes(valid: Sequence[bytes]) -> Strategy[bytes]:
    """Valid encodings (a serialised state, a file), and the same cut short, with a byte
    changed, or with bytes added."""
    return st.one_of(st.sampled_from(valid), _broken_bytes(valid))


@st.composite
def _broken_bytes(draw: st.DrawFn, valid: Sequence[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(valid)))
    index = draw(st.integers(0, max(len(data) - 1, 0)))
    how = draw(st.sampled_from(["truncate", "flip", "insert", "append"]))
    if how == "truncate":
        del data[index:]
    elif how == "flip" and data:
        data[index] ^= 1 << draw(st.integers(0, 7))
    elif how == "insert":
        data[index:index] = draw(st.binary(min_size=1, max_size=8))
    else:
        data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@st.composite
def _sequence_mutant(
    draw: st.DrawFn, seeds: Sequence[Sequence[Message]], hints: Hints
) -> list[Message]:
    stream = list(draw(st.sampled_from(seeds)))
    descriptor = _descriptor(stream[0])
    index = draw(st.integers(0, len(stream) - 1))
    how = draw(st.sampled_from(["drop", "duplicate", "swap", "break", "append", "truncate"]))
    if how == "drop":
        del stream[index]
    elif how == "duplicate":
        stream.insert(index, stream[index])
    elif how == "swap":
        stream[0], stream[-1] = stream[-1], stream[0]
    elif how == "break":
        stream[index] = draw(mutants([stream[index]], hints))
    elif how == "truncate":
        stream = stream[:index]
    else:
        stream.append(draw(messages(descriptor, hints)))
    return stream


def sequence_mutants(
    seeds: Sequence[Sequence[Message]], hints: Hints | None = None
) -> Strategy[list[Any]]:
    """Valid streams of requests (none empty) with one message dropped, repeated, moved,
    broken or added, or the stream cut short."""
    return _sequence_mutant(seeds, hints or {})
