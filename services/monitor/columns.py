"""The columns of a ``PredictionBatch`` as numpy arrays, one numpy call per column.

Raw and packed bytes become ``np.frombuffer`` views (read-only), repeated fields go through
``np.asarray``; only the variable-width length-prefixed layout loops per value. A breach of
``keel/monitor/v1/ingest.proto`` is ``InvalidArgument`` naming the column and what was
expected. Part of the monitor's protobuf boundary: domain code sees only the arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.common.v1 import schema_pb2
from keel.monitor.v1 import ingest_pb2
from services.common.errors import DomainError, FieldViolation, InvalidArgument, ResourceExhausted

Mask = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
Codes = npt.NDArray[np.int32]
Indices = npt.NDArray[np.intp]

MAX_ID_BYTES = 128
_RAW_DTYPES: dict[int, np.dtype[Any]] = {
    schema_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    schema_pb2.DATA_TYPE_FLOAT64: np.dtype("<f8"),
    schema_pb2.DATA_TYPE_INT32: np.dtype("<i4"),
    schema_pb2.DATA_TYPE_INT64: np.dtype("<i8"),
    schema_pb2.DATA_TYPE_BOOL: np.dtype("u1"),
}
_INTEGER_DTYPES = (schema_pb2.DATA_TYPE_INT32, schema_pb2.DATA_TYPE_INT64)
_PACKED: dict[str, Any] = {"doubles": np.float64, "int64s": np.int64, "bools": np.bool_}


@dataclass(frozen=True)
class Categorical:
    """A string column: distinct non-empty values (sorted) and one code per row.

    ``codes[i]`` indexes ``dictionary``, or is -1 where ``missing[i]`` (validity bit 0
    or the empty string). A sent dictionary may hold values no row uses.
    """

    dictionary: list[str]
    codes: Codes
    missing: Mask


@dataclass(frozen=True)
class _Where:
    """What an error is about: its label in messages, its path in field violations."""

    label: str
    field: str

    def invalid(
        self, detail: str, part: str = "", error: type[DomainError] = InvalidArgument
    ) -> DomainError:
        violation = FieldViolation(self.field + part, detail)
        return error(f"{self.label}: {detail}", violations=[violation])


def _where(name: str, field: str | None) -> _Where:
    return _Where(f"column {name!r}", field if field is not None else f"batch.features[{name!r}]")


def _encoding(column: ingest_pb2.Column) -> str:
    kind = column.WhichOneof("values")
    if kind == "raw":
        return f"raw {_dtype_name(column.raw.dtype)}"
    return kind or "no values"


def _dtype_name(dtype: schema_pb2.DataType.ValueType) -> str:
    try:
        return schema_pb2.DataType.Name(dtype).removeprefix("DATA_TYPE_")
    except ValueError:
        return str(dtype)


def _check_count(got: int, n: int, where: _Where) -> None:
    if got != n:
        raise where.invalid(f"expected {n} values, got {got}")


def _absent(n: int, expected: str, where: _Where) -> None:
    if n:
        raise where.invalid(f"expected {n} values as {expected}, got no values")


def validity(
    column: ingest_pb2.Column, n: int, name: str, *, field: str | None = None
) -> Mask | None:
    """True where a row has a value (Arrow bitmap, LSB first); None when every row has one."""
    return _present(column.validity, n, _where(name, field))


def _present(bitmap: bytes, n: int, where: _Where) -> Mask | None:
    if not bitmap:
        return None
    size = (n + 7) // 8
    if len(bitmap) != size:
        detail = f"expected a validity bitmap of {size} bytes for {n} rows, got {len(bitmap)}"
        raise where.invalid(detail, ".validity")
    bits = np.unpackbits(np.frombuffer(bitmap, np.uint8), count=n, bitorder="little")
    return bits.view(np.bool_)


def numbers(
    column: ingest_pb2.Column, n: int, name: str, *, field: str | None = None
) -> tuple[Floats, Mask]:
    """Values as float64 and a ``missing`` mask (validity bit 0 or NaN).

    A raw FLOAT64 column comes back as a read-only view of the message's bytes.
    """
    where = _where(name, field)
    kind = column.WhichOneof("values")
    values: Floats
    if kind in _PACKED:
        packed: npt.NDArray[Any] = np.asarray(getattr(column, kind).values, _PACKED[kind])
        values = packed.astype(np.float64, copy=False)
    elif kind == "raw":
        values = _raw(column.raw, n, where).astype(np.float64, copy=False)
    elif kind is None:
        _absent(n, "numbers", where)
        values = np.empty(0, np.float64)
    else:
        raise where.invalid(f"expected numbers, got {kind}")
    _check_count(len(values), n, where)
    missing = np.isnan(values)
    present = _present(column.validity, n, where)
    if present is not None:
        missing |= ~present
    return values, missing


def _raw(raw: ingest_pb2.RawArray, n: int, where: _Where) -> npt.NDArray[Any]:
    dtype = _RAW_DTYPES.get(raw.dtype)
    name = _dtype_name(raw.dtype)
    if dtype is None:
        detail = f"expected raw FLOAT32, FLOAT64, INT32, INT64 or BOOL, got raw {name}"
        raise where.invalid(detail, ".raw.dtype")
    data = raw.data  # upb copies a bytes field on every access: read it once
    if len(data) != n * dtype.itemsize:
        detail = f"expected {n * dtype.itemsize} bytes ({n} {name} values), got {len(data)}"
        raise where.invalid(detail, ".raw.data")
    values = np.frombuffer(data, dtype)
    if raw.dtype == schema_pb2.DATA_TYPE_BOOL and n and values.max() > 1:
        row = int(np.argmax(values > 1))
        raise where.invalid(f"expected BOOL bytes 0 or 1, got {values[row]} at row {row}")
    return values


def strings(
    column: ingest_pb2.Column, n: int, name: str, *, field: str | None = None
) -> Categorical:
    """A string column (strings, length_prefixed or dictionary) as a ``Categorical``."""
    return _categorical(column, n, _where(name, field), "strings")


def _categorical(column: ingest_pb2.Column, n: int, where: _Where, expected: str) -> Categorical:
    sent, rows = _string_parts(column, n, where, expected)
    dictionary, inverse = _unique(sent)
    table = inverse.astype(np.int32)
    if dictionary and dictionary[0] == "":  # sorted, so '' comes first; it means missing
        dictionary = dictionary[1:]
        table -= 1
    codes = np.append(table, np.int32(-1))[rows]
    return Categorical(dictionary, codes, codes < 0)


def category_codes(
    column: ingest_pb2.Column,
    n: int,
    name: str,
    categories: Sequence[str],
    *,
    field: str | None = None,
) -> tuple[Codes, Mask, dict[str, int]]:
    """Rows as indices into ``categories``: ``len(categories)`` for an unseen value, -1 for
    a missing row; plus the number of rows of each unseen value.

    Strings are looked up once per distinct value; integer codes (int64s, raw INT32 or
    INT64) must lie in ``[0, len(categories))`` on every present row.
    """
    where = _where(name, field)
    kind = column.WhichOneof("values")
    if kind == "int64s" or (kind == "raw" and column.raw.dtype in _INTEGER_DTYPES):
        codes = _integer_codes(column, n, len(categories), where)
        return codes, codes < 0, {}
    column_values = _categorical(column, n, where, "strings or integer category codes")
    dictionary, present = column_values.dictionary, ~column_values.missing
    index = {value: i for i, value in enumerate(categories)}
    unseen = len(categories)
    table = np.array([*(index.get(value, unseen) for value in dictionary), -1], np.int32)
    codes = table[column_values.codes]  # -1 (missing) picks the last entry, -1
    counts = np.bincount(column_values.codes[present], minlength=len(dictionary))
    is_unseen = (table[:-1] == unseen) & (counts > 0)
    unseen_counts = {dictionary[i]: int(counts[i]) for i in np.flatnonzero(is_unseen).tolist()}
    return codes, column_values.missing, unseen_counts


def _integer_codes(column: ingest_pb2.Column, n: int, size: int, where: _Where) -> Codes:
    if column.WhichOneof("values") == "int64s":
        values = np.asarray(column.int64s.values, np.int64)
        _check_count(len(values), n, where)
    else:
        values = _raw(column.raw, n, where)
    present = _present(column.validity, n, where)
    bad = (values < 0) | (values >= size)
    if present is not None:
        bad &= present
    if bad.any():
        row = int(np.argmax(bad))
        valid = f"in [0, {size})" if size else "none (the feature lists no categories)"
        raise where.invalid(f"expected category codes {valid}, got {values[row]} at row {row}")
    codes = values.astype(np.int32)
    if present is not None:
        codes[~present] = -1
    return codes


def identifiers(
    column: ingest_pb2.Column, n: int, name: str, *, field: str | None = None
) -> list[str]:
    """Prediction ids, one per row, each 1 to 128 bytes of UTF-8, none missing."""
    where = _where(name, field)
    if column.WhichOneof("values") == "length_prefixed" and not column.validity:
        same = _ascii_of_one_width(column.length_prefixed.data, n)
        if same is not None and 1 <= len(same[0]) <= MAX_ID_BYTES:
            return same  # one width, ASCII: every row's size is that width
    sent, rows = _string_parts(column, n, where, "strings")
    sizes = np.fromiter(map(len, map(str.encode, sent)), np.int64, len(sent))
    row_sizes = np.append(sizes, 0)[rows]
    bad = (row_sizes < 1) | (row_sizes > MAX_ID_BYTES)
    if bad.any():
        row = int(np.argmax(bad))
        got = f"{row_sizes[row]} bytes" if row_sizes[row] else "none"
        raise where.invalid(f"expected an id of 1 to {MAX_ID_BYTES} bytes, got {got} at row {row}")
    ids: list[str] = np.asarray(sent, dtype=object)[rows].tolist()
    return ids


def _string_parts(
    column: ingest_pb2.Column, n: int, where: _Where, expected: str
) -> tuple[list[str], Indices]:
    """Strings as sent: codes index the dictionary (which may repeat values or hold '');
    ``len(dictionary)`` is the code of a row whose validity bit is 0."""
    kind = column.WhichOneof("values")
    present = _present(column.validity, n, where)
    codes: Indices = np.arange(n)
    if kind == "strings":
        dictionary = list(column.strings.values)  # upb decodes a string on every access
        _check_count(len(dictionary), n, where)
    elif kind == "length_prefixed":
        dictionary, codes = _length_prefixed(column.length_prefixed.data, n, where)
    elif kind == "dictionary":
        dictionary, codes = _dictionary(column.dictionary, n, present, where)
    elif kind is None:
        _absent(n, expected, where)
        dictionary = []
    else:
        raise where.invalid(f"expected {expected}, got {_encoding(column)}")
    if present is not None:
        codes = np.where(present, codes, len(dictionary))
    return dictionary, codes


def _unique(values: list[str]) -> tuple[list[str], Indices]:
    """Sorted distinct values and each value's index among them."""
    if not values:
        return [], np.empty(0, np.intp)
    # A fixed-width '<U' array drops trailing NULs, so text holding one goes as objects.
    array = np.asarray(values, dtype=object if "\0" in "".join(values) else None)
    first, inverse = _factorize(array)
    return array[first].tolist(), inverse


def _factorize(array: npt.NDArray[Any]) -> tuple[Indices, Indices]:
    """Row of the first occurrence of each distinct value, in sorted order, and each row's
    index among them: one stable argsort (np.unique is ~4x slower on 1000 distinct ids)."""
    order = np.argsort(array, kind="stable")
    ordered = array[order]
    first = np.ones(len(array), np.bool_)
    first[1:] = ordered[1:] != ordered[:-1]
    inverse = np.empty(len(array), np.intp)
    inverse[order] = np.cumsum(first) - 1
    return order[first], inverse


def _dictionary(
    array: ingest_pb2.DictionaryArray, n: int, present: Mask | None, where: _Where
) -> tuple[list[str], Indices]:
    dictionary = list(array.dictionary)
    data = array.codes
    if len(data) != 4 * n:
        detail = f"expected {4 * n} bytes of codes ({n} int32 values), got {len(data)}"
        raise where.invalid(detail, ".dictionary.codes")
    codes = np.frombuffer(data, "<i4")
    bad = (codes < 0) | (codes >= len(dictionary))
    if present is not None:
        bad &= present  # the code of a missing row is ignored
    if bad.any():
        row = int(np.argmax(bad))
        detail = f"expected codes in [0, {len(dictionary)}), got {codes[row]} at row {row}"
        raise where.invalid(detail, ".dictionary.codes")
    return dictionary, codes.astype(np.intp)


def _length_prefixed(data: bytes, n: int, where: _Where) -> tuple[list[str], Indices]:
    uniform = _uniform_width(data, n)
    if uniform is not None:
        return uniform
    return _split(data, n, where), np.arange(n)


def _one_width(data: bytes, n: int) -> npt.NDArray[np.uint8] | None:
    """The values as an [n, width] byte matrix when every one has the same length."""
    if not n or len(data) % n or len(data) // n <= 4:
        return None
    width = len(data) // n
    rows = np.frombuffer(data, np.uint8).reshape(n, width)
    if not (rows[:, :4].copy().view("<u4") == width - 4).all():
        return None
    return rows[:, 4:].copy()


def _ascii(body: npt.NDArray[np.uint8]) -> bool:
    return bool(((body > 0) & (body < 128)).all())


def _ascii_of_one_width(data: bytes, n: int) -> list[str] | None:
    """Length-prefixed values of one width, all ASCII without NUL, decoded in one call
    (row order kept: prediction ids need no dictionary)."""
    body = _one_width(data, n)
    if body is None or not _ascii(body):
        return None
    return [value.decode() for value in body.view(f"S{body.shape[1]}").ravel().tolist()]


def _uniform_width(data: bytes, n: int) -> tuple[list[str], Indices] | None:
    """Vectorised path when every value has the same length (UUIDs, hashed PII)."""
    body = _one_width(data, n)
    if body is None:
        return None
    size = body.shape[1]  # of each value, after its 4-byte length
    # Equal-width byte strings: NUL padding of the 'S' dtype cannot merge two values.
    first, inverse = _factorize(body.view(f"S{size}").ravel())
    if _ascii(body):  # ASCII without NUL: one astype decodes it all
        return body[first].view(f"S{size}").ravel().astype(np.str_).tolist(), inverse
    try:
        return [bytes(body[r]).decode() for r in first.tolist()], inverse
    except UnicodeDecodeError:
        return None  # the loop names the first offending row


def _split(data: bytes, n: int, where: _Where) -> list[str]:
    """Per-value loop: each offset depends on the length before it, so no numpy call
    can find them all; used when values differ in length."""
    values: list[str] = []
    offset, end = 0, len(data)
    for row in range(n):
        if end - offset < 4:
            detail = f"expected {n} length-prefixed values, got {row} ({end - offset} bytes left)"
            raise where.invalid(detail, ".length_prefixed.data")
        size = int.from_bytes(data[offset : offset + 4], "little")
        offset += 4
        if end - offset < size:
            detail = f"expected {size} bytes for the value at row {row}, got {end - offset}"
            raise where.invalid(detail, ".length_prefixed.data")
        values.append(_utf8(data[offset : offset + size], row, where))
        offset += size
    if offset != end:
        detail = f"expected {n} length-prefixed values in {offset} bytes, got {end} bytes"
        raise where.invalid(detail, ".length_prefixed.data")
    return values


def _utf8(value: bytes, row: int, where: _Where) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        detail = f"expected UTF-8, got invalid byte {value[error.start]:#04x} at row {row}"
        raise where.invalid(detail, ".length_prefixed.data") from None


def fixed_bytes(data: bytes, n: int, width: int, name: str) -> npt.NDArray[np.uint8] | None:
    """``trace_ids`` (16 bytes a row) or ``span_ids`` (8) as an (n, width) read-only view;
    None when not sent."""
    if not data:
        return None
    if len(data) != n * width:
        detail = f"expected {n * width} bytes ({width} per row for {n} rows), got {len(data)}"
        raise _Where(name, f"batch.{name}").invalid(detail)
    return np.frombuffer(data, np.uint8).reshape(n, width)


def timestamps(values: Sequence[int], n: int) -> npt.NDArray[np.int64]:
    """``time_unix_nanos`` as int64 (np.asarray: upb's repeated fields have no buffer)."""
    times = np.asarray(values, np.int64)
    if len(times) != n:
        where = _Where("time_unix_nanos", "batch.time_unix_nanos")
        raise where.invalid(f"expected {n} values, got {len(times)}")
    return times


def check_row_count(n: int, max_rows: int) -> None:
    """A negative ``row_count`` is invalid; one above ``max_rows`` exhausts a limit."""
    where = _Where("row_count", "batch.row_count")
    if n < 0:
        raise where.invalid(f"expected 0 or more rows, got {n}")
    if n > max_rows:
        raise where.invalid(f"expected at most {max_rows} rows, got {n}", "", ResourceExhausted)
