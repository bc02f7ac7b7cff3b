"""``ingest_pb2.Column`` messages built from numpy arrays, in every encoding the monitor takes.

Each builder takes the values and an optional ``missing`` mask (True where a row has no
value), which becomes the validity bitmap; the values of missing rows are still sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.common.v1 import schema_pb2
from keel.monitor.v1 import ingest_pb2

Missing = npt.ArrayLike | None

RAW_DTYPES: dict[np.dtype[Any], schema_pb2.DataType.ValueType] = {
    np.dtype(np.float32): schema_pb2.DATA_TYPE_FLOAT32,
    np.dtype(np.float64): schema_pb2.DATA_TYPE_FLOAT64,
    np.dtype(np.int32): schema_pb2.DATA_TYPE_INT32,
    np.dtype(np.int64): schema_pb2.DATA_TYPE_INT64,
    np.dtype(np.bool_): schema_pb2.DATA_TYPE_BOOL,
}


def validity_bitmap(present: npt.ArrayLike) -> bytes:
    """Arrow validity bitmap of ``present`` (bit i, least significant first, is row i)."""
    return np.packbits(np.asarray(present, dtype=np.bool_), bitorder="little").tobytes()


def _validity(missing: Missing) -> bytes:
    return b"" if missing is None else validity_bitmap(~np.asarray(missing, dtype=np.bool_))


def column_raw(name: str, array: npt.ArrayLike, missing: Missing = None) -> ingest_pb2.Column:
    """A raw column typed by the array's dtype (float32/64, int32/64 or bool), little-endian."""
    values = np.asarray(array)
    dtype = RAW_DTYPES[values.dtype]
    data = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
    raw = ingest_pb2.RawArray(data=data, dtype=dtype)
    return ingest_pb2.Column(name=name, raw=raw, validity=_validity(missing))


def column_doubles(name: str, array: npt.ArrayLike, missing: Missing = None) -> ingest_pb2.Column:
    """A packed ``repeated double`` column."""
    doubles = ingest_pb2.DoubleArray(values=np.asarray(array, np.float64).tolist())
    return ingest_pb2.Column(name=name, doubles=doubles, validity=_validity(missing))


def column_int64s(name: str, array: npt.ArrayLike, missing: Missing = None) -> ingest_pb2.Column:
    """A packed ``repeated int64`` column (numbers, or category codes)."""
    int64s = ingest_pb2.Int64Array(values=np.asarray(array, np.int64).tolist())
    return ingest_pb2.Column(name=name, int64s=int64s, validity=_validity(missing))


def column_bools(name: str, array: npt.ArrayLike, missing: Missing = None) -> ingest_pb2.Column:
    """A packed ``repeated bool`` column."""
    bools = ingest_pb2.BoolArray(values=np.asarray(array, np.bool_).tolist())
    return ingest_pb2.Column(name=name, bools=bools, validity=_validity(missing))


def column_strings(name: str, values: Sequence[str], missing: Missing = None) -> ingest_pb2.Column:
    """A ``repeated string`` column."""
    strings = ingest_pb2.StringArray(values=list(values))
    return ingest_pb2.Column(name=name, strings=strings, validity=_validity(missing))


def column_dictionary(
    name: str,
    values: Sequence[str],
    missing: Missing = None,
    dictionary: Sequence[str] | None = None,
) -> ingest_pb2.Column:
    """A dictionary-encoded column. The dictionary is ``dictionary`` (e.g. the feature's
    categories, in order) or the distinct values in order of first appearance."""
    entries = list(dict.fromkeys(values)) if dictionary is None else list(dictionary)
    index = {value: i for i, value in enumerate(entries)}
    codes = np.array([index[value] for value in values], dtype="<i4")
    encoded = ingest_pb2.DictionaryArray(dictionary=entries, codes=codes.tobytes())
    return ingest_pb2.Column(name=name, dictionary=encoded, validity=_validity(missing))


def length_prefixed(values: Sequence[str | bytes]) -> bytes:
    """The Open Inference Protocol's raw BYTES layout: 4-byte LE length, then the bytes."""
    encoded = [v.encode() if isinstance(v, str) else v for v in values]
    return b"".join(len(v).to_bytes(4, "little") + v for v in encoded)


def column_length_prefixed(
    name: str, values: Sequence[str | bytes], missing: Missing = None
) -> ingest_pb2.Column:
    """A column in the raw BYTES layout (``bytes`` values are sent as they are)."""
    encoded = ingest_pb2.LengthPrefixedArray(data=length_prefixed(values))
    return ingest_pb2.Column(name=name, length_prefixed=encoded, validity=_validity(missing))
