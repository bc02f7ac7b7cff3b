"""Feature tables to inference requests, and inference answers to numpy arrays.

Which layout a request uses follows the model's ``ModelMetadata``:

- a pandas DataFrame is sent one tensor per column, named by the column, so the
  service matches features by name whatever the column order (categorical and text
  columns as BYTES, everything else as FP64); a frame whose column names are not all
  strings (e.g. ``pd.DataFrame(array)``) is taken positionally, like an array;
- a 2-D numpy array or a list of rows is positional: one FP32 ``features`` matrix for an
  all-numeric model, else one tensor per input in signature order.

Missing values: NaN (or None) in a numeric column, None/NaN/``""`` in a text column.
Requests go raw (``raw_input_contents``), so answers come back raw.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.client._optional import optional
from keel.common.v1 import schema_pb2
from keel.inference.v1 import inference_pb2
from keel.oip.v2 import open_inference_pb2 as oip

MATRIX_INPUT = "features"
LENGTH = struct.Struct("<I")
FIXED_WIDTH: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "BOOL": np.dtype(np.bool_),
}
TYPED_FIELD = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}
KEEL_TYPES = {
    "FP32": schema_pb2.DATA_TYPE_FLOAT32,
    "FP64": schema_pb2.DATA_TYPE_FLOAT64,
    "BYTES": schema_pb2.DATA_TYPE_STRING,
}

Parameter = str | int | bool


@dataclass(frozen=True)
class InputSpec:
    """One input the model's metadata lists."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """The inputs a served model takes, from its ``ModelMetadata``."""

    inputs: tuple[InputSpec, ...]

    @classmethod
    def from_metadata(cls, metadata: oip.ModelMetadataResponse) -> Layout:
        return cls(
            tuple(
                InputSpec(t.name, t.datatype, tuple(int(d) for d in t.shape))
                for t in metadata.inputs
            )
        )

    @property
    def matrix(self) -> bool:
        """Whether the model is all-numeric: one ``features`` matrix."""
        return (
            len(self.inputs) == 1
            and self.inputs[0].name == MATRIX_INPUT
            and len(self.inputs[0].shape) == 2
        )

    @property
    def width(self) -> int:
        """Number of features (-1 when the metadata does not say)."""
        return self.inputs[0].shape[1] if self.matrix else len(self.inputs)

    def spec(self, name: str) -> InputSpec | None:
        return next((s for s in self.inputs if s.name == name), None)


@dataclass(frozen=True, eq=False)
class Tensor:
    """One input tensor: FP32/FP64 values, or BYTES as a list of ``str``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    numbers: npt.NDArray[np.floating[Any]] | None = None
    texts: tuple[str, ...] = ()

    def raw(self) -> bytes:
        if self.numbers is not None:
            return np.ascontiguousarray(self.numbers, dtype=FIXED_WIDTH[self.datatype]).tobytes()
        return b"".join(LENGTH.pack(len(b)) + b for b in (t.encode() for t in self.texts))


@dataclass(frozen=True, eq=False)
class Rows:
    """The tensors of one request, its row count, and the DataFrame index (if any)."""

    tensors: tuple[Tensor, ...]
    count: int
    index: Any = None


def is_dataframe(data: object) -> bool:
    pd = optional("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


def text(value: object) -> str:
    """A category as text: ``""`` for missing (None, NaN, pandas NA)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return ""
    if isinstance(value, bytes):
        return value.decode()
    if type(value).__name__ in ("NAType", "NaTType"):
        return ""
    return str(value)


def encode_rows(data: Any, layout: Layout) -> Rows:
    """The tensors for ``data`` (DataFrame, 2-D array or list of rows) in ``layout``."""
    if is_dataframe(data):
        if all(isinstance(c, str) for c in data.columns):
            return Rows(_frame_tensors(data, layout), len(data), data.index)
        return _positional(data.to_numpy(dtype=object), layout, data.index)
    if isinstance(data, np.ndarray):
        return _positional(data, layout, None)
    try:
        array = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.asarray(data, dtype=object)
    return _positional(array, layout, None)


def _frame_tensors(frame: Any, layout: Layout) -> tuple[Tensor, ...]:
    pd: Any = optional("pandas")
    types = pd.api.types
    rows = len(frame)
    tensors = []
    for name in frame.columns:
        series = frame[name]
        dtype = series.dtype
        spec = layout.spec(name)
        if types.is_datetime64_any_dtype(dtype) or types.is_timedelta64_dtype(dtype):
            raise ValueError(f"feature {name!r}: dtype {dtype} is not supported")
        categorical = isinstance(dtype, pd.CategoricalDtype) or not (
            types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype)
        )
        if categorical or (spec is not None and spec.datatype == "BYTES"):
            texts = tuple(text(v) for v in series.astype(object).tolist())
            tensors.append(Tensor(name, "BYTES", (rows,), texts=texts))
        else:
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            tensors.append(Tensor(name, "FP64", (rows,), numbers=values))
    return tuple(tensors)


def _positional(array: npt.NDArray[Any], layout: Layout, index: Any) -> Rows:
    if array.ndim != 2:
        raise ValueError(
            f"features: expected a 2-D array, a list of rows or a DataFrame, got shape "
            f"{array.shape} (one row is [[...]])"
        )
    rows, width = array.shape
    if layout.width >= 0 and width != layout.width:
        raise ValueError(f"features: the model takes {layout.width} columns, got {width}")
    if layout.matrix:
        numbers = _floats(array, MATRIX_INPUT, np.float32)
        return Rows((Tensor(MATRIX_INPUT, "FP32", (rows, width), numbers=numbers),), rows, index)
    tensors = []
    for j, spec in enumerate(layout.inputs):
        column = array[:, j]
        if spec.datatype == "BYTES":
            tensors.append(Tensor(spec.name, "BYTES", (rows,), texts=tuple(map(text, column))))
        else:
            values = _floats(column, spec.name, np.float64)
            tensors.append(Tensor(spec.name, "FP64", (rows,), numbers=values))
    return Rows(tuple(tensors), rows, index)


def _floats(values: npt.NDArray[Any], name: str, dtype: type[np.floating[Any]]) -> Any:
    if values.dtype == object:
        flat = [np.nan if text(v) == "" and not isinstance(v, str) else v for v in values.ravel()]
        values = np.array(flat, dtype=object).reshape(values.shape)
    try:
        return values.astype(dtype)
    except (TypeError, ValueError):
        raise ValueError(
            f"input '{name}': expected numbers (dtype {values.dtype}); pass a DataFrame "
            "for categorical columns"
        ) from None


# Requests ---------------------------------------------------------------------------


def parameters(values: Mapping[str, Parameter] | None) -> dict[str, oip.InferParameter]:
    """Request parameters (e.g. a deployment's sticky key) as protocol values."""
    found: dict[str, oip.InferParameter] = {}
    for key, value in (values or {}).items():
        if isinstance(value, bool):
            found[key] = oip.InferParameter(bool_param=value)
        elif isinstance(value, int):
            found[key] = oip.InferParameter(int64_param=value)
        elif isinstance(value, str):
            found[key] = oip.InferParameter(string_param=value)
        else:
            raise TypeError(f"parameter {key!r}: expected str, int or bool, got {type(value)}")
    return found


def infer_request(
    name: str,
    version: str,
    rows: Rows,
    params: Mapping[str, Parameter] | None = None,
    request_id: str = "",
) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(
        model_name=name, model_version=version, id=request_id, parameters=parameters(params)
    )
    for tensor in rows.tensors:
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        request.raw_input_contents.append(tensor.raw())
    return request


def explain_request(
    name: str, version: str, rows: Rows, class_labels: Sequence[str] = ()
) -> inference_pb2.ExplainRequest:
    request = inference_pb2.ExplainRequest(
        model_name=name, model_version=version, class_labels=list(class_labels)
    )
    for tensor in rows.tensors:
        item = request.inputs.add(
            name=tensor.name, data_type=KEEL_TYPES[tensor.datatype], shape=list(tensor.shape)
        )
        if tensor.numbers is None:
            item.string_values.values.extend(tensor.texts)
        else:
            item.raw_values = tensor.raw()
    return request


# Answers ----------------------------------------------------------------------------


def decode_outputs(response: oip.ModelInferResponse) -> dict[str, npt.NDArray[Any]]:
    """The response's outputs by name, shaped as declared (raw or typed contents)."""
    raw = response.raw_output_contents
    found: dict[str, npt.NDArray[Any]] = {}
    for i, tensor in enumerate(response.outputs):
        shape = tuple(int(d) for d in tensor.shape)
        if raw:
            array = _from_raw(tensor.datatype, raw[i], math.prod(shape))
        elif tensor.datatype == "BYTES":
            array = np.array([b.decode() for b in tensor.contents.bytes_contents], dtype=object)
        else:
            values = getattr(tensor.contents, TYPED_FIELD[tensor.datatype])
            array = np.asarray(values, dtype=FIXED_WIDTH[tensor.datatype])
        found[tensor.name] = array.reshape(shape)
    return found


def _from_raw(datatype: str, data: bytes, count: int) -> npt.NDArray[Any]:
    if datatype != "BYTES":
        return np.frombuffer(data, dtype=FIXED_WIDTH[datatype]).copy()
    elements: list[str] = []
    offset = 0
    while offset < len(data) and len(elements) < count:
        (length,) = LENGTH.unpack_from(data, offset)
        elements.append(data[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return np.array(elements, dtype=object)
