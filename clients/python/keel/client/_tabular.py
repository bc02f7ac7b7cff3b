"""The columns of a feature table (pandas DataFrame or 2-D numpy array), as the
signature, the reference profile and the fairness figures see them."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.client._optional import optional
from keel.common.v1 import schema_pb2

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True)
class Column:
    """One feature column.

    Numeric columns hold float64 values with NaN for missing; categorical columns hold
    text (``str``) with ``None`` for missing.
    """

    name: str
    dtype: schema_pb2.DataType.ValueType
    categorical: bool
    values: FloatArray | ObjectArray
    categories: tuple[str, ...] = ()

    @property
    def missing(self) -> npt.NDArray[np.bool_]:
        """Which rows have no value."""
        if self.categorical:
            return np.array([v is None for v in self.values], dtype=np.bool_)
        return np.isnan(self.values.astype(np.float64))


def text(value: object) -> str:
    """The text form of a category or class label (numpy scalars as their Python value)."""
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def number_text(value: float) -> str:
    """A numeric group value as text: ``1`` rather than ``1.0`` for whole numbers."""
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else repr(value)


def is_dataframe(data: object) -> bool:
    pd = optional("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


def columns(data: Any) -> list[Column]:
    """The columns of ``data``: a pandas DataFrame (names and dtypes kept) or a 2-D
    numeric array (columns ``f0…f{n-1}``, FLOAT32)."""
    if is_dataframe(data):
        return [_series_column(str(name), data[name]) for name in data.columns]
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(f"features: expected a 2-D array or a DataFrame, got shape {array.shape}")
    try:
        numeric = array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"features: a numpy array must be numeric (dtype {array.dtype}); "
            "pass a pandas DataFrame for categorical columns"
        ) from error
    return [
        Column(f"f{j}", schema_pb2.DATA_TYPE_FLOAT32, False, numeric[:, j])
        for j in range(array.shape[1])
    ]


def _numeric_dtype(dtype: np.dtype[Any]) -> schema_pb2.DataType.ValueType:
    if dtype == np.bool_:
        return schema_pb2.DATA_TYPE_BOOL
    if dtype.kind == "f":
        return schema_pb2.DATA_TYPE_FLOAT32 if dtype.itemsize <= 4 else schema_pb2.DATA_TYPE_FLOAT64
    if dtype.kind in "iu":
        fits_int32 = dtype.itemsize < 4 or (dtype.itemsize == 4 and dtype.kind == "i")
        return schema_pb2.DATA_TYPE_INT32 if fits_int32 else schema_pb2.DATA_TYPE_INT64
    raise TypeError(dtype)


def _series_column(name: str, series: Any) -> Column:
    pd: Any = optional("pandas")
    types = pd.api.types
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or not (
        types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype)
    ):
        if types.is_datetime64_any_dtype(dtype) or types.is_timedelta64_dtype(dtype):
            raise ValueError(f"feature {name!r}: dtype {dtype} is not supported")
        missing = series.isna().to_numpy()
        values = np.array(
            [None if m else text(v) for v, m in zip(series.tolist(), missing, strict=True)],
            dtype=object,
        )
        if isinstance(dtype, pd.CategoricalDtype):
            categories = tuple(text(c) for c in dtype.categories)
        else:
            categories = tuple(sorted({v for v in values if v is not None}))
        return Column(name, schema_pb2.DATA_TYPE_STRING, True, values, categories)
    numpy_dtype = np.dtype(getattr(dtype, "numpy_dtype", dtype))
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return Column(name, _numeric_dtype(numpy_dtype), False, values)


def digest(data: Any) -> str:
    """SHA-256 of a table's canonical bytes.

    For a numpy array: exactly ``sha256(np.ascontiguousarray(X).tobytes())``. For a
    DataFrame: each column's name, dtype and values in turn (numeric values as float64
    bytes, text as UTF-8 with a separator), so the digest does not depend on memory layout.
    """
    if not is_dataframe(data):
        return hashlib.sha256(np.ascontiguousarray(np.asarray(data)).tobytes()).hexdigest()
    sha = hashlib.sha256()
    for column in columns(data):
        sha.update(column.name.encode() + b"\x00" + str(column.dtype).encode() + b"\x00")
        if column.categorical:
            for value in column.values:
                sha.update(b"\x01" if value is None else b"\x02" + str(value).encode() + b"\x00")
        else:
            sha.update(np.ascontiguousarray(column.values, dtype=np.float64).tobytes())
    return sha.hexdigest()


def row_count(data: Any) -> int:
    return len(data)


def find(cols: Sequence[Column], name: str) -> Column:
    for column in cols:
        if column.name == name:
            return column
    names = ", ".join(c.name for c in cols)
    raise ValueError(f"feature {name!r} is not a column of the features ({names})")
