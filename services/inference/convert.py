"""The only module of the inference service that knows protobuf: Open Inference Protocol
requests to named numpy arrays, ``Outputs`` to responses, signatures to metadata.

Wire rules (see the protocol): a request carries its data either raw
(``raw_input_contents``, one entry per input in order, little-endian, BYTES elements
each preceded by a 4-byte little-endian length) or typed (``contents``), never both. A
request sent raw is answered raw, since tritonclient reads only ``raw_output_contents``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from keel.common.v1 import schema_pb2
from keel.oip.v2 import open_inference_pb2 as oip
from keel.registry.v1 import model_pb2
from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
)
from services.inference.records import (
    DType,
    FeatureSpec,
    ModelSignature,
    Outputs,
    Task,
)
from services.inference.validation import MATRIX_INPUT
from services.inference.validation import DecodedTensor as DecodedTensor  # re-exported

Array = npt.NDArray[Any]

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
SUPPORTED = ", ".join(TYPED_FIELD)
LENGTH = struct.Struct("<I")

# Outputs are sent with the types ModelMetadata lists, whatever the model computed in.
OUTPUT_ORDER = ("label", "probabilities", "prediction")
OUTPUT_DTYPE: dict[str, np.dtype[Any]] = {
    "label": np.dtype("<i8"),
    "probabilities": np.dtype("<f4"),
    "prediction": np.dtype("<f4"),
}
DATATYPE_OF = {dtype: name for name, dtype in FIXED_WIDTH.items()}


def _error(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, violations=[FieldViolation(field, message)])


def _dims(shape: Sequence[int]) -> str:
    return f"[{', '.join(str(d) for d in shape)}]"


# requests ---------------------------------------------------------------------------
def requested_outputs(request: oip.ModelInferRequest) -> tuple[str, ...]:
    """Names of the outputs the request asks for; empty means all of them."""
    if not request.outputs:  # the usual request: a generator over nothing costs ~2 us
        return ()
    return tuple(output.name for output in request.outputs)


def answers_raw(request: oip.ModelInferRequest) -> bool:
    """Whether the answer goes in ``raw_output_contents``: exactly when the request came raw."""
    return len(request.raw_input_contents) > 0


@dataclass(frozen=True)
class Limits:
    """What one request may ask for: rows (first dimension), elements per tensor, and
    bytes per BYTES element. Over a limit is RESOURCE_EXHAUSTED (rows, elements) or
    INVALID_ARGUMENT (a string longer than allowed), checked before any data is decoded
    where the declared shape tells."""

    max_rows: int = 100_000
    max_elements: int = 16 * 1024 * 1024
    max_string_bytes: int = 64 * 1024


def decode_inputs(
    request: oip.ModelInferRequest, limits: Limits = Limits()
) -> dict[str, DecodedTensor]:
    """The request's inputs by name, each shaped as declared (numeric data as zero-copy
    views of raw contents). Any malformed input is ``InvalidArgument``; one over
    ``limits`` is ``ResourceExhausted`` (or ``InvalidArgument`` for a long string)."""
    raw = request.raw_input_contents
    if len(raw) == 1 and len(request.inputs) == 1:
        single = _single_raw_matrix(request.inputs[0], raw[0], limits)
        if single is not None:
            return {single.name: single}
    if raw and len(raw) != len(request.inputs):
        raise _error(
            "raw_input_contents",
            f"raw_input_contents: expected one entry per input ({len(request.inputs)}), "
            f"got {len(raw)}",
        )
    tensors: dict[str, DecodedTensor] = {}
    for i, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, tuple(tensor.shape)
        if not name:
            raise _error(f"inputs[{i}].name", f"inputs[{i}]: expected a name, got none")
        if name in tensors:
            raise _error(f"inputs[{i}].name", f"input '{name}': given more than once")
        if datatype not in TYPED_FIELD:
            raise _error(
                f"inputs[{i}].datatype",
                f"input '{name}': unsupported datatype '{datatype}'; expected one of {SUPPORTED}",
            )
        if any(d < 0 for d in shape):
            raise _error(
                f"inputs[{i}].shape",
                f"input '{name}': expected non-negative dimensions, got {_dims(shape)}",
            )
        count = math.prod(shape)
        _check_size(name, i, shape, count, limits)
        if raw:
            if tensor.HasField("contents"):
                raise _error(
                    f"inputs[{i}].contents",
                    f"input '{name}': sets contents but the request uses raw_input_contents; "
                    "send every input one way or the other",
                )
            array = _from_raw(name, i, datatype, count, raw[i])
        else:
            array = _from_typed(name, i, datatype, shape, tensor.contents)
        try:
            array = array.reshape(shape)
        except ValueError:  # an empty tensor with dims too large for numpy
            message = f"input '{name}': shape {_dims(shape)} is too large"
            raise _error(f"inputs[{i}].shape", message) from None
        if datatype == "BYTES" and count:
            _check_strings(name, i, array, limits.max_string_bytes)
        tensors[name] = DecodedTensor(name, datatype, shape, array)
    return tensors


def _single_raw_matrix(
    tensor: oip.ModelInferRequest.InferInputTensor, data: bytes, limits: Limits
) -> DecodedTensor | None:
    """The one raw FP32/FP64/INT32/INT64 ``[N, F]`` input that nearly every request is,
    decoded as the general path decodes it; None when anything about it is unusual (the
    general path then decodes it, or words what is wrong). A third of a request's own
    work went to the general path's checks, each needed only for other requests."""
    name, datatype = tensor.name, tensor.datatype
    dtype = FIXED_WIDTH.get(datatype)
    if dtype is None or datatype == "BOOL" or not name or len(tensor.shape) != 2:
        return None
    rows, width = tensor.shape
    if (
        rows < 0
        or width < 0
        or width > limits.max_elements
        or rows > limits.max_rows
        or rows * width > limits.max_elements
        or len(data) != rows * width * dtype.itemsize
        or tensor.HasField("contents")
    ):
        return None
    shape = (rows, width)
    return DecodedTensor(name, datatype, shape, np.frombuffer(data, dtype=dtype).reshape(shape))


def _check_size(name: str, i: int, shape: tuple[int, ...], count: int, limits: Limits) -> None:
    if shape and shape[0] > limits.max_rows:
        raise ResourceExhausted(
            f"input '{name}': {shape[0]} rows is over this server's limit of "
            f"{limits.max_rows} rows per request; send fewer rows per request",
            violations=[FieldViolation(f"inputs[{i}].shape", "too many rows")],
        )
    if count > limits.max_elements:
        raise ResourceExhausted(
            f"input '{name}': shape {_dims(shape)} holds {count} elements, over this "
            f"server's limit of {limits.max_elements} per tensor",
            violations=[FieldViolation(f"inputs[{i}].shape", "too many elements")],
        )


def _check_strings(name: str, i: int, array: Array, limit: int) -> None:
    longest = max(len(value) for value in array.ravel().tolist())
    if longest > limit:
        raise _error(
            f"inputs[{i}]",
            f"input '{name}': a BYTES element of {longest} bytes is over the limit of "
            f"{limit} bytes per element",
        )


def _from_raw(name: str, i: int, datatype: str, count: int, data: bytes) -> Array:
    field = f"raw_input_contents[{i}]"
    if datatype == "BYTES":
        return _parse_bytes(name, field, count, data)
    dtype = FIXED_WIDTH[datatype]
    if len(data) != count * dtype.itemsize:
        raise _error(
            field,
            f"input '{name}': expected {count * dtype.itemsize} bytes in {field} "
            f"({count} {datatype} elements of {dtype.itemsize}), got {len(data)}",
        )
    if datatype == "BOOL":  # any non-zero byte is true, as in C
        truth: Array = np.frombuffer(data, dtype=np.uint8) != 0
        return truth
    return np.frombuffer(data, dtype=dtype)


def _parse_bytes(name: str, field: str, count: int, data: bytes) -> Array:
    """BYTES elements, each a 4-byte little-endian length then that many bytes."""
    expected = f"input '{name}': expected {count} BYTES elements (4-byte length, then the bytes)"
    if count * LENGTH.size > len(data):
        raise _error(field, f"{expected} in {field}, got {len(data)} bytes")
    elements = np.empty(count, dtype=object)
    offset, end = 0, len(data)
    for k in range(count):
        if offset + LENGTH.size > end:
            raise _error(field, f"{expected} in {field}, got {end} bytes ending at element {k}")
        (length,) = LENGTH.unpack_from(data, offset)
        offset += LENGTH.size
        if offset + length > end:
            raise _error(field, f"{expected} in {field}, got {end} bytes ending inside element {k}")
        elements[k] = data[offset : offset + length]
        offset += length
    if offset != end:
        raise _error(field, f"{expected} in {field}, got {end - offset} bytes after the last")
    return elements


def _from_typed(
    name: str, i: int, datatype: str, shape: tuple[int, ...], contents: oip.InferTensorContents
) -> Array:
    field = TYPED_FIELD[datatype]
    others = [f.name for f, _ in contents.ListFields() if f.name != field]
    if others:
        raise _error(
            f"inputs[{i}].contents",
            f"input '{name}': datatype {datatype} takes contents.{field}, got contents.{others[0]}",
        )
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise _error(
            f"inputs[{i}].contents.{field}",
            f"input '{name}': expected {count} values in contents.{field} for shape "
            f"{_dims(shape)}, got {len(values)}",
        )
    if datatype == "BYTES":
        elements = np.empty(count, dtype=object)
        elements[:] = list(values)
        return elements
    array: Array = np.asarray(values, dtype=FIXED_WIDTH[datatype])
    return array


# responses --------------------------------------------------------------------------
def encode_outputs(
    outputs: Outputs, requested: Sequence[str], raw: bool, response: oip.ModelInferResponse
) -> None:
    """Adds the requested outputs (all when none are named) to ``response``, raw or typed."""
    for name in _selected(outputs, requested):
        array, datatype = _wire(name, outputs.tensors[name])
        tensor = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            response.raw_output_contents.append(_raw_bytes(datatype, array))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(_utf8(array))
        else:
            getattr(tensor.contents, TYPED_FIELD[datatype]).extend(array.ravel().tolist())


def _selected(outputs: Outputs, requested: Sequence[str]) -> list[str]:
    produced = outputs.tensors
    if not requested:
        return [n for n in OUTPUT_ORDER if n in produced] + [
            n for n in produced if n not in OUTPUT_ORDER
        ]
    for i, name in enumerate(requested):
        if name not in produced:
            raise _error(
                f"outputs[{i}].name",
                f"output '{name}': not produced by this model; available outputs: "
                + ", ".join(_selected(outputs, ())),
            )
    return list(dict.fromkeys(requested))


def _wire(name: str, array: Array) -> tuple[Array, str]:
    if name in OUTPUT_DTYPE:
        dtype = OUTPUT_DTYPE[name]
        return np.asarray(array, dtype=dtype), DATATYPE_OF[dtype]
    if array.dtype.kind in "OSUT":
        return array, "BYTES"
    little = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
    if little not in DATATYPE_OF:
        raise TypeError(f"output '{name}': no protocol datatype for numpy {array.dtype}")
    return np.asarray(array, dtype=little), DATATYPE_OF[little]


def _utf8(array: Array) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel().tolist()]


def _raw_bytes(datatype: str, array: Array) -> bytes:
    if datatype == "BYTES":
        return b"".join(LENGTH.pack(len(v)) + v for v in _utf8(array))
    return array.tobytes()


# metadata and signatures -------------------------------------------------------------
def model_metadata(
    name: str, versions: Sequence[str], signature: ModelSignature, platform: str
) -> oip.ModelMetadataResponse:
    """ModelMetadata's answer: the input layout the issue documents and the outputs."""
    tensor = oip.ModelMetadataResponse.TensorMetadata
    if signature.all_numeric:
        inputs = [tensor(name=MATRIX_INPUT, datatype="FP32", shape=[-1, len(signature.inputs)])]
    else:
        inputs = [
            tensor(name=f.name, datatype="BYTES" if f.dtype == "STRING" else "FP32", shape=[-1])
            for f in signature.inputs
        ]
    if signature.is_classifier:
        classes = len(signature.class_labels) or (
            2 if signature.task == "BINARY_CLASSIFICATION" else -1
        )
        outputs = [
            tensor(name="label", datatype="INT64", shape=[-1]),
            tensor(name="probabilities", datatype="FP32", shape=[-1, classes]),
        ]
    else:
        outputs = [tensor(name="prediction", datatype="FP32", shape=[-1])]
    return oip.ModelMetadataResponse(
        name=name, versions=list(versions), platform=platform, inputs=inputs, outputs=outputs
    )


TASKS: dict[int, Task] = {
    schema_pb2.TASK_BINARY_CLASSIFICATION: "BINARY_CLASSIFICATION",
    schema_pb2.TASK_MULTICLASS_CLASSIFICATION: "MULTICLASS_CLASSIFICATION",
    schema_pb2.TASK_REGRESSION: "REGRESSION",
}
DTYPES: dict[int, DType] = {
    schema_pb2.DATA_TYPE_FLOAT32: "FLOAT32",
    schema_pb2.DATA_TYPE_FLOAT64: "FLOAT64",
    schema_pb2.DATA_TYPE_INT32: "INT32",
    schema_pb2.DATA_TYPE_INT64: "INT64",
    schema_pb2.DATA_TYPE_BOOL: "BOOL",
    schema_pb2.DATA_TYPE_STRING: "STRING",
}


def _pii(feature: schema_pb2.Feature) -> Literal["", "HASH", "DROP"]:
    if not feature.pii:
        return ""
    return "DROP" if feature.pii_action == schema_pb2.PII_ACTION_DROP else "HASH"


def signature_from_version(model_version: model_pb2.ModelVersion, task: int) -> ModelSignature:
    """The domain signature of a registry version (``task`` is the model's ``Task``).
    A version the registry should never have accepted is ``FailedPrecondition``."""
    where = model_version.name or "model version"
    if task not in TASKS:
        raise FailedPrecondition(f"{where}: the model has no task; cannot serve it")
    inputs = []
    for feature in model_version.signature.inputs:
        if feature.dtype not in DTYPES or feature.kind == schema_pb2.FEATURE_KIND_UNSPECIFIED:
            raise FailedPrecondition(
                f"{where}: feature '{feature.name}' has no dtype or kind; cannot serve it"
            )
        bounds = feature.range
        inputs.append(
            FeatureSpec(
                name=feature.name,
                dtype=DTYPES[feature.dtype],
                kind="CATEGORICAL"
                if feature.kind == schema_pb2.FEATURE_KIND_CATEGORICAL
                else "NUMERIC",
                required=feature.required,
                min=bounds.min if bounds.HasField("min") else None,
                max=bounds.max if bounds.HasField("max") else None,
                categories=tuple(feature.categories),
                pii=_pii(feature),
            )
        )
    return ModelSignature(
        task=TASKS[task],
        inputs=tuple(inputs),
        class_labels=tuple(model_version.signature.class_labels),
    )
