"""Columnar messages for the monitor: feedback labels (``LogFeedbackRequest``) and
prediction logs of models served outside Keel (``PredictionBatch``).

Class labels: a classifier's labels may be given as the class labels themselves
(strings, or the values of ``y`` such as ints, sent as their text) or, when the model's
class labels are not the text of those values, as class indices into
``Signature.class_labels``. Missing labels (None, NaN) are skipped by the monitor.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.client.results import row_ids
from keel.client.tensors import is_dataframe, text
from keel.common.v1 import schema_pb2
from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb

MAX_ID_BYTES = 128


def new_prediction_id() -> str:
    """A time-ordered id like the inference service's (UUIDv7 layout, 32 hex digits)."""
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"{value:032x}"


def producer_id() -> str:
    """Who sends the batches of this process: ``keel-client/{host}/{pid}``."""
    return f"keel-client/{socket.gethostname()}/{os.getpid()}"[:MAX_ID_BYTES]


# Columns ---------------------------------------------------------------------------


def _validity(missing: npt.NDArray[np.bool_]) -> bytes:
    if not missing.any():
        return b""
    return np.packbits(~missing, bitorder="little").tobytes()


def strings_column(
    name: str, values: Sequence[str], missing: npt.NDArray[np.bool_]
) -> ingest_pb2.Column:
    column = ingest_pb2.Column(name=name, validity=_validity(missing))
    column.strings.values.extend(values)
    return column


def doubles_column(name: str, values: npt.NDArray[np.float64]) -> ingest_pb2.Column:
    raw = ingest_pb2.RawArray(
        data=np.ascontiguousarray(values, dtype="<f8").tobytes(),
        dtype=schema_pb2.DATA_TYPE_FLOAT64,
    )
    return ingest_pb2.Column(name=name, raw=raw)


def int64_column(
    name: str, values: npt.NDArray[Any], missing: npt.NDArray[np.bool_]
) -> ingest_pb2.Column:
    column = ingest_pb2.Column(name=name, validity=_validity(missing))
    column.int64s.values.extend(int(v) for v in values)
    return column


def one_per_row(values: Any, what: str) -> npt.NDArray[Any]:
    """``values`` (list, array, pandas Series) as a 1-D object array."""
    array = np.asarray(values, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{what}: expected one value per row, got shape {array.shape}")
    return array


def _missing(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    return np.array([text(v) == "" and not isinstance(v, str) for v in values], dtype=np.bool_)


def _floats(values: npt.NDArray[Any], missing: npt.NDArray[np.bool_], what: str) -> Any:
    try:
        return np.where(missing, np.nan, values).astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected numbers") from None


def number_column(name: str, values: Any, what: str) -> ingest_pb2.Column:
    array = one_per_row(values, what)
    return doubles_column(name, _floats(array, _missing(array), what))


def label_column(
    values: Any, *, classifier: bool, class_labels: Sequence[str], what: str = "labels"
) -> ingest_pb2.Column:
    """Class labels (or a regressor's values) as the column the monitor takes."""
    array = one_per_row(values, what)
    missing = _missing(array)
    if not classifier:
        return doubles_column("", _floats(array, missing, what))
    present = array[~missing]
    texts = [text(v) for v in array]
    known = set(class_labels)
    if not known or all(texts[i] in known for i in np.flatnonzero(~missing)):
        return strings_column("", texts, missing)
    numeric = all(isinstance(v, int | float | np.integer | np.floating) for v in present)
    if numeric and all(float(v).is_integer() for v in present):
        whole = [str(int(v)) if not m else "" for v, m in zip(array, missing, strict=True)]
        if all(whole[i] in known for i in np.flatnonzero(~missing)):
            return strings_column("", whole, missing)
        if all(0 <= int(v) < len(class_labels) for v in present):
            codes = np.array([0 if m else int(v) for v, m in zip(array, missing, strict=True)])
            return int64_column("", codes, missing)
    return strings_column("", texts, missing)  # the monitor names the label it refuses


# Requests --------------------------------------------------------------------------


def feedback_request(
    model: str,
    ids: Sequence[str],
    labels: Any,
    *,
    classifier: bool,
    class_labels: Sequence[str],
) -> pb.LogFeedbackRequest:
    array = one_per_row(labels, "labels")
    if len(array) != len(ids):
        raise ValueError(f"labels: expected one per prediction id ({len(ids)}), got {len(array)}")
    column = label_column(array, classifier=classifier, class_labels=class_labels)
    request = pb.LogFeedbackRequest(model=f"models/{model}", row_count=len(ids), labels=column)
    request.prediction_ids.strings.values.extend(ids)
    return request


def feature_columns(data: Any, signature: schema_pb2.Signature) -> list[ingest_pb2.Column]:
    """One column per signature feature found in ``data`` (DataFrame by name, array or
    list of rows by position); other DataFrame columns are left out."""
    if is_dataframe(data):
        found = {str(c): data[c].astype(object).to_numpy() for c in data.columns}
    else:
        array = np.asarray(data, dtype=object)
        if array.ndim != 2 or array.shape[1] != len(signature.inputs):
            raise ValueError(
                f"features: expected {len(signature.inputs)} columns in signature order "
                f"({', '.join(f.name for f in signature.inputs)}), got shape {array.shape}"
            )
        found = {f.name: array[:, j] for j, f in enumerate(signature.inputs)}
    columns = []
    for feature in signature.inputs:
        if feature.name not in found:
            continue
        values = found[feature.name]
        missing = _missing(values)
        if feature.kind == schema_pb2.FEATURE_KIND_CATEGORICAL:
            columns.append(strings_column(feature.name, [text(v) for v in values], missing))
        else:
            columns.append(doubles_column(feature.name, _floats(values, missing, feature.name)))
    return columns


def prediction_batch(
    model: str,
    version: int,
    data: Any,
    predictions: Any,
    *,
    signature: schema_pb2.Signature,
    classifier: bool,
    ids: Sequence[str] | None = None,
    probabilities: Any = None,
    deployment: str = "",
    variant: str = "",
) -> ingest_pb2.PredictionBatch:
    """An unsequenced batch (deduplicated by prediction id) of ``data``'s rows."""
    rows = len(data)
    if ids is None:
        ids = row_ids(new_prediction_id(), rows)
    ids = [str(i) for i in ids]
    if len(ids) != rows or any(not 0 < len(i.encode()) <= MAX_ID_BYTES for i in ids):
        raise ValueError(f"ids: expected {rows} ids of 1-{MAX_ID_BYTES} bytes, one per row")
    batch = ingest_pb2.PredictionBatch(
        producer_id=producer_id(),
        model=f"models/{model}",
        version=version,
        deployment=deployment,
        variant=variant,
        row_count=rows,
        time_unix_nanos=[time.time_ns()] * rows,
        features=feature_columns(data, signature),
    )
    batch.prediction_ids.strings.values.extend(ids)
    answers = one_per_row(predictions, "predictions")
    if len(answers) != rows:
        raise ValueError(f"predictions: expected {rows} values, one per row, got {len(answers)}")
    outputs = batch.outputs
    if classifier:
        labels = signature.class_labels
        outputs.label.CopyFrom(
            label_column(answers, classifier=True, class_labels=labels, what="predictions")
        )
        if probabilities is not None:
            proba = np.asarray(probabilities, dtype=np.float64)
            if proba.shape != (rows, len(signature.class_labels)):
                raise ValueError(
                    f"probabilities: expected shape ({rows}, {len(signature.class_labels)}) "
                    f"(one column per class), got {proba.shape}"
                )
            outputs.probabilities.extend(doubles_column("", column) for column in proba.T)
    else:
        outputs.prediction.CopyFrom(number_column("", answers, "predictions"))
    return batch
