"""Decoded input tensors checked against a model's signature and turned into ``Features``.

Pure numpy, no protobuf: ``convert.py`` decodes the wire format into ``DecodedTensor``s,
this module decides whether they fit the signature. Two layouts are accepted:

- for an all-numeric signature, one input ``features`` of FP32 or FP64 ``[N, F]`` with the
  columns in signature order;
- always, one input per feature named as in the signature, ``[N]`` or ``[N, 1]``.

Every violation is ``InvalidArgument`` naming the input, what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.common.errors import FieldViolation, InvalidArgument
from services.inference.records import Features, FeatureSpec, MatrixColumns, ModelSignature

MATRIX_INPUT = "features"
NUMERIC_DATATYPES = ("FP32", "FP64", "INT32", "INT64", "BOOL")
FLOAT_DATATYPES = ("FP32", "FP64")

Array = npt.NDArray[np.generic]
Floats = npt.NDArray[np.float64]


class TensorLike(Protocol):
    """What validation needs of an input tensor (``DecodedTensor`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def array(self) -> Array: ...


@dataclass(frozen=True, eq=False)
class DecodedTensor:
    """One input of a request: protocol datatype, shape, and the elements as an array of
    that shape (a zero-copy view of the request where possible; BYTES as an object array
    of ``bytes``)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: Array


def invalid(name: str, message: str) -> InvalidArgument:
    """``InvalidArgument`` about input ``name`` (``message`` already names it)."""
    return InvalidArgument(message, violations=[FieldViolation(f"inputs['{name}']", message)])


def describe(tensor: TensorLike) -> str:
    return f"{tensor.datatype} [{', '.join(str(d) for d in tensor.shape)}]"


def _or(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def to_features(signature: ModelSignature, tensors: Mapping[str, TensorLike]) -> Features:
    """Validated ``Features`` for ``tensors`` (by input name), or ``InvalidArgument``."""
    plan = _plan(signature)
    if plan.matrix and MATRIX_INPUT in tensors:
        extra = [name for name in tensors if name != MATRIX_INPUT]
        if extra:
            raise invalid(
                extra[0],
                f"input '{extra[0]}': expected either '{MATRIX_INPUT}' alone "
                "or one input per feature, got both",
            )
        return _from_matrix(signature, plan, tensors[MATRIX_INPUT])
    for name in tensors:
        if name not in plan.known:
            expected = ", ".join(plan.names)
            if plan.matrix:
                expected = (
                    f"'{MATRIX_INPUT}' [N, {len(plan.names)}] or one input per feature: " + expected
                )
            raise invalid(name, f"input '{name}': unknown input; expected {expected}")
    return _from_columns(signature, plan, tensors)


@dataclass(frozen=True)
class _Plan:
    """What a signature asks of every request, computed once per signature."""

    names: tuple[str, ...]
    known: frozenset[str]
    index: Mapping[str, int]  # name -> column
    matrix: bool  # whether the `features` matrix layout is accepted
    required: npt.NDArray[np.bool_]  # per column: NaN refused
    low: Floats  # per column: smallest allowed value (-inf when none)
    high: Floats  # per column: largest allowed value (inf when none)
    checks: tuple[bool, bool, bool]  # whether any column is required, has a min, a max


# Plans by signature identity: a served version's signature is one object, and hashing
# it (every feature's spec) per request cost more than the checks themselves.
_PLANS: dict[int, tuple[ModelSignature, _Plan]] = {}
PLANS_KEPT = 256


def _plan(signature: ModelSignature) -> _Plan:
    known = _PLANS.get(id(signature))
    if known is not None and known[0] is signature:
        return known[1]
    if len(_PLANS) >= PLANS_KEPT:
        _PLANS.clear()
    plan = _make_plan(signature)
    _PLANS[id(signature)] = (signature, plan)
    return plan


def _make_plan(signature: ModelSignature) -> _Plan:
    names = tuple(f.name for f in signature.inputs)
    # categorical columns hold category indices: their values are checked apart
    specs = [
        f if f.kind == "NUMERIC" else replace(f, required=False, min=None, max=None)
        for f in signature.inputs
    ]
    required = np.array([f.required for f in specs], dtype=np.bool_)
    low = np.array([-np.inf if f.min is None else f.min for f in specs], dtype=np.float64)
    high = np.array([np.inf if f.max is None else f.max for f in specs], dtype=np.float64)
    return _Plan(
        names=names,
        known=frozenset(names),
        index={name: i for i, name in enumerate(names)},
        matrix=signature.all_numeric and MATRIX_INPUT not in names,
        required=required,
        low=low,
        high=high,
        checks=(bool(required.any()), bool(np.isfinite(low).any()), bool(np.isfinite(high).any())),
    )


# the `features` matrix --------------------------------------------------------------
def _from_matrix(signature: ModelSignature, plan: _Plan, tensor: TensorLike) -> Features:
    width = len(plan.names)
    if tensor.datatype not in FLOAT_DATATYPES or len(tensor.shape) != 2 or tensor.shape[1] != width:
        raise invalid(
            tensor.name,
            f"input '{tensor.name}': expected FP32 or FP64 [N, {width}], got {describe(tensor)}",
        )
    values = tensor.array
    numeric = np.ascontiguousarray(values, dtype=np.float32)
    _check_values(signature, plan, numeric, tensor.name)
    return Features(numeric=numeric, columns=MatrixColumns(values, plan.index))


def _check_values(
    signature: ModelSignature, plan: _Plan, numeric: npt.NDArray[np.float32], matrix: str | None
) -> None:
    """No NaN in required numeric columns and every value within its declared range,
    checked on the float32 values the model receives, all columns at once."""
    required, low, high = plan.checks
    bad: npt.NDArray[np.bool_] | None = None
    if required:
        missing = np.isnan(numeric)
        if missing.any():  # usually not: then no per-column mask is made
            bad = missing & plan.required
    if low:
        bad = numeric < plan.low if bad is None else bad | (numeric < plan.low)
    if high:
        bad = numeric > plan.high if bad is None else bad | (numeric > plan.high)
    if bad is None or not bad.any():
        return
    j = int(bad.any(axis=0).argmax())
    spec = signature.inputs[j]
    if matrix is None:
        _check_numeric(f"input '{spec.name}'", spec.name, spec, numeric[:, j])
    else:
        _check_numeric(f"input '{matrix}' column '{spec.name}'", matrix, spec, numeric[:, j])
    raise AssertionError("a bad value was found but not worded")  # pragma: no cover


# one input per feature --------------------------------------------------------------
def _from_columns(
    signature: ModelSignature, plan: _Plan, tensors: Mapping[str, TensorLike]
) -> Features:
    rows: int | None = None
    first = ""
    for spec in signature.inputs:
        tensor = tensors.get(spec.name)
        if tensor is None:
            if spec.required:
                raise invalid(
                    spec.name,
                    f"input '{spec.name}': missing; the feature is required "
                    f"(expected {_expected(spec)})",
                )
            continue
        _check_layout(spec, tensor)
        if rows is None:
            rows, first = tensor.shape[0], tensor.name
        elif tensor.shape[0] != rows:
            raise invalid(
                tensor.name,
                f"input '{tensor.name}': expected {rows} rows like input '{first}', "
                f"got {describe(tensor)}",
            )
    if rows is None:
        raise InvalidArgument(
            "request has no inputs; expected one input per feature: "
            + ", ".join(f.name for f in signature.inputs)
        )
    numeric = np.full((rows, len(signature.inputs)), np.nan, dtype=np.float32)
    columns: dict[str, Array] = {}
    for j, spec in enumerate(signature.inputs):
        tensor = tensors.get(spec.name)
        if tensor is None:
            continue
        values = tensor.array.reshape(rows)
        subject = f"input '{spec.name}'"
        if tensor.datatype == "BYTES":
            columns[spec.name], numeric[:, j] = _categories_of_text(subject, spec, values)
        elif spec.kind == "CATEGORICAL":
            columns[spec.name] = values
            numeric[:, j] = _categories_of_numbers(subject, spec, values)
        else:
            columns[spec.name] = values
            numeric[:, j] = values
    _check_values(signature, plan, numeric, None)
    return Features(numeric=numeric, columns=columns)


def _accepted(spec: FeatureSpec) -> tuple[str, ...]:
    if spec.kind == "NUMERIC":
        return NUMERIC_DATATYPES
    return ("BYTES",) if spec.dtype == "STRING" else ("BYTES", *NUMERIC_DATATYPES)


def _expected(spec: FeatureSpec) -> str:
    return f"{_or(_accepted(spec))} [N] or [N, 1]"


def _check_layout(spec: FeatureSpec, tensor: TensorLike) -> None:
    shape = tensor.shape
    if (
        tensor.datatype not in _accepted(spec)
        or len(shape) not in (1, 2)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise invalid(
            tensor.name,
            f"input '{tensor.name}': expected {_expected(spec)}, got {describe(tensor)}",
        )


# value checks -----------------------------------------------------------------------
def _check_numeric(subject: str, name: str, spec: FeatureSpec, values: Array) -> None:
    """Required features hold no NaN; values lie within the declared range."""
    as_float: npt.NDArray[np.float64] = values.astype(np.float64, copy=False)
    if spec.required and values.dtype.kind == "f":
        missing = np.isnan(as_float)
        if missing.any():
            raise invalid(
                name,
                f"{subject}: {int(missing.sum())} missing value(s) (NaN) but the feature "
                f"is required, first at row {int(missing.argmax())}",
            )
    if spec.min is None and spec.max is None:
        return
    outside = np.zeros(as_float.shape, dtype=np.bool_)
    if spec.min is not None:
        outside |= as_float < spec.min
    if spec.max is not None:
        outside |= as_float > spec.max
    if outside.any():
        row = int(outside.argmax())
        raise invalid(
            name,
            f"{subject}: {int(outside.sum())} value(s) {_bounds(spec)}, "
            f"first at row {row}: {_fmt(values[row].item())}",
        )


def _bounds(spec: FeatureSpec) -> str:
    if spec.max is None:
        return f"below {_fmt(spec.min)}"
    if spec.min is None:
        return f"above {_fmt(spec.max)}"
    return f"outside [{_fmt(spec.min)}, {_fmt(spec.max)}]"


def _decode_text(subject: str, name: str, values: Array) -> Array:
    """An object array of ``str`` (not numpy's fixed-width text, which drops trailing NULs)."""
    try:
        return np.array(list(map(bytes.decode, values.tolist())), dtype=object)
    except UnicodeDecodeError:
        for row, value in enumerate(values.tolist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                message = f"{subject}: expected UTF-8 text, got invalid bytes at row {row}"
                raise invalid(name, message) from None
        raise  # pragma: no cover - some row failed above


def _categories_of_text(
    subject: str, spec: FeatureSpec, values: Array
) -> tuple[Array, npt.NDArray[np.float32]]:
    """The decoded strings and, per row, the index of the category (NaN when missing or
    when the signature declares no categories). An empty string is a missing value
    unless "" is itself a declared category."""
    text = _decode_text(subject, spec.name, values)
    codes = np.full(text.shape, np.nan, dtype=np.float32)
    missing = (text == "") if "" not in spec.categories else np.zeros(text.shape, np.bool_)
    if spec.required and missing.any():
        raise invalid(
            spec.name,
            f"{subject}: {int(missing.sum())} missing value(s) (empty) but the feature "
            f"is required, first at row {int(missing.argmax())}",
        )
    if spec.categories:
        declared = np.array(spec.categories, dtype=object)
        index, known = _lookup(declared, text)
        unknown = ~known & ~missing
        if unknown.any():
            row = int(unknown.argmax())
            raise _unknown_category(subject, spec, f"'{text[row]}'", row)
        codes[known] = index[known]
    return text, codes


def _categories_of_numbers(
    subject: str, spec: FeatureSpec, values: Array
) -> npt.NDArray[np.float32]:
    """Per row, the index of the category whose text reads as the same number; the value
    itself when the signature declares no categories."""
    _check_numeric(subject, spec.name, spec, values)
    as_float: npt.NDArray[np.float64] = values.astype(np.float64, copy=False)
    if not spec.categories:
        return as_float.astype(np.float32)
    declared = np.array([_number(c) for c in spec.categories], dtype=np.float64)
    index, known = _lookup(declared, as_float)
    missing = np.isnan(as_float)
    unknown = ~known & ~missing
    if unknown.any():
        row = int(unknown.argmax())
        raise _unknown_category(subject, spec, _fmt(values[row].item()), row)
    return np.where(known, index, np.nan).astype(np.float32)


def _number(category: str) -> float:
    try:
        return float(category)
    except ValueError:
        return float("nan")  # never equal to a value, so never matched


def _lookup(
    declared: npt.NDArray[np.generic], values: npt.NDArray[np.generic]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """For each value: the position of an equal entry of ``declared`` and whether one exists."""
    order = np.argsort(declared, kind="stable")
    ordered = declared[order]
    at = np.searchsorted(ordered, values)
    clipped = np.minimum(at, max(len(declared) - 1, 0))
    known = (at < len(declared)) & (ordered[clipped] == values)
    return order[clipped], np.asarray(known, dtype=np.bool_)


def _unknown_category(subject: str, spec: FeatureSpec, shown: str, row: int) -> InvalidArgument:
    return invalid(
        spec.name,
        f"{subject}: unknown category {shown} at row {row}; "
        f"expected one of {', '.join(spec.categories)}",
    )
