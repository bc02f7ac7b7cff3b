"""A ``PredictionBatch`` checked against the version's signature and decoded into numpy
columns (``Rows``), with its ids, times and traces."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from keel.monitor.v1 import ingest_pb2
from services.common.errors import FieldViolation, InvalidArgument
from services.monitor import columns
from services.monitor._kernels import plain_ids_json
from services.monitor.accumulate import Outputs, Rows, group_index
from services.monitor.reference import BINARY, REGRESSION, ModelReference

Ints = npt.NDArray[np.int64]


@dataclass
class DecodedBatch:
    row_count: int
    ids_json: str  # the prediction ids, all different, as one JSON array
    times: Ints  # ns since the epoch, per row
    rows: Rows
    trace_ids: npt.NDArray[np.uint8] | None = None  # [rows, 16]
    ignored_columns: list[str] = field(default_factory=list)
    # Rows per value outside the known categories, per categorical feature.
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)

    @cached_property
    def ids(self) -> list[str]:
        """The prediction ids in row order (parsed only on the paths that need them)."""
        ids: list[str] = json.loads(self.ids_json)
        return ids


def invalid(field_path: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, violations=[FieldViolation(field_path, message)])


def decode(batch: ingest_pb2.PredictionBatch, reference: ModelReference) -> DecodedBatch:
    """Decode every column of ``batch``; InvalidArgument names the first bad one."""
    n = batch.row_count
    if n < 0:
        raise invalid("batch.row_count", f"row_count must be >= 0, got {n}")
    ids_json = prediction_ids_json(batch.prediction_ids, n)
    times = columns.timestamps(batch.time_unix_nanos, n)
    rows = Rows()
    ignored: list[str] = []
    unseen: dict[str, dict[str, int]] = {}
    seen: set[str] = set()
    for column in batch.features:
        feature = reference.feature(column.name)
        if feature is None:
            ignored.append(column.name)
            continue
        if column.name in seen:
            raise invalid("batch.features", f"column '{column.name}' is sent twice")
        seen.add(column.name)
        if feature.pii:
            continue  # a digest (or nothing) of a personal value: kept with the row, not counted
        if feature.numeric:
            rows.numeric[feature.name] = columns.numbers(column, n, feature.name)
        else:
            known = reference.layout.categories[feature.name].values
            codes, missing, values = columns.category_codes(column, n, feature.name, known)
            rows.categorical[feature.name] = (codes.astype(np.int64), missing)
            if values:
                unseen[feature.name] = dict(values)
    rows.outputs = _outputs(batch.outputs, n, reference)
    for name in reference.layout.groups:
        index = group_index(reference, name, rows)
        if index is not None:
            rows.groups[name] = index
    trace_ids = columns.fixed_bytes(batch.trace_ids, n, 16, "trace_ids")
    return DecodedBatch(n, ids_json, times, rows, trace_ids, ignored, unseen)


def prediction_ids_json(column: ingest_pb2.Column, n: int) -> str:
    """The batch's prediction ids as one JSON array, checked: in C when they are plain
    (one width, printable ASCII, all different: what producers usually send), else
    decoded one by one; InvalidArgument for a bad or repeated id."""
    if not n:
        return "[]"
    if column.WhichOneof("values") == "length_prefixed" and not column.validity:
        plain = plain_ids_json(column.length_prefixed.data, n, columns.MAX_ID_BYTES)
        if plain is not None:
            return plain
    ids = columns.identifiers(column, n, "prediction_ids")
    if len(set(ids)) != len(ids):
        raise invalid("batch.prediction_ids", "prediction_ids: expected unique ids in a batch")
    return json.dumps(ids, separators=(",", ":"))


def _set(column: ingest_pb2.Column) -> bool:
    return column.WhichOneof("values") is not None


def _outputs(out: ingest_pb2.PredictionOutputs, n: int, reference: ModelReference) -> Outputs:
    if reference.task == REGRESSION:
        if not _set(out.prediction):
            if n:
                raise invalid(
                    "batch.outputs.prediction",
                    "outputs.prediction: expected the regressor's predicted values, got nothing",
                )
            return Outputs(prediction=np.zeros(0))
        values, missing = columns.numbers(out.prediction, n, "outputs.prediction")
        return Outputs(prediction=np.where(missing, np.nan, values))
    k = len(reference.class_labels)
    probabilities = None
    if len(out.probabilities):
        if len(out.probabilities) != k:
            message = (
                f"outputs.probabilities: expected {k} columns (one per class), "
                f"got {len(out.probabilities)}"
            )
            raise invalid("batch.outputs.probabilities", message)
        probabilities = (
            np.column_stack(
                [
                    columns.numbers(c, n, f"outputs.probabilities[{i}]")[0]
                    for i, c in enumerate(out.probabilities)
                ]
            )
            if n
            else np.zeros((0, k))
        )
    score = None
    if _set(out.score):
        values, missing = columns.numbers(out.score, n, "outputs.score")
        score = np.where(missing, np.nan, values)
    elif reference.task == BINARY and probabilities is not None:
        score = probabilities[:, 1].copy()
    predicted = _predicted(out, n, reference, score, probabilities)
    return Outputs(predicted, score, probabilities)


def _predicted(
    out: ingest_pb2.PredictionOutputs,
    n: int,
    reference: ModelReference,
    score: npt.NDArray[np.float64] | None,
    probabilities: npt.NDArray[np.float64] | None,
) -> Ints:
    k = len(reference.class_labels)
    if _set(out.label):
        kind = out.label.WhichOneof("values")
        if kind in ("strings", "length_prefixed", "dictionary"):
            codes, missing, unseen = columns.category_codes(
                out.label, n, "outputs.label", reference.class_labels
            )
            if unseen or missing.any():
                bad = next(iter(unseen), "")
                message = (
                    "outputs.label: expected one of the class labels "
                    f"{list(reference.class_labels)}, got '{bad}'"
                )
                raise invalid("batch.outputs.label", message)
            return codes.astype(np.int64)
        values, missing = columns.numbers(out.label, n, "outputs.label")
        index = values.astype(np.int64)
        if n and (missing.any() or (index != values).any() or index.min() < 0 or index.max() >= k):
            message = f"outputs.label: expected class indices 0..{k - 1}, one per row"
            raise invalid("batch.outputs.label", message)
        return index
    if score is not None and reference.task == BINARY:
        return (np.nan_to_num(score) >= 0.5).astype(np.int64)
    if probabilities is not None:
        argmax: Ints = np.argmax(probabilities, axis=1).astype(np.int64)
        return argmax
    if n:
        message = "outputs: expected the predicted label, score or probabilities of a classifier"
        raise invalid("batch.outputs.label", message)
    return np.zeros(0, dtype=np.int64)
