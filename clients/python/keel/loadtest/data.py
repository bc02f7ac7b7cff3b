"""Generated request payloads: FP32 feature matrices for inference and prediction-log
batches shaped by a model's signature for the monitor.

Plain Python (``random``, ``array``), so that ``keel loadtest`` needs nothing beyond
the client's own dependencies. Payloads are built once into a small pool before the
run and reused, so that building them does not slow the load generator down.
"""

from __future__ import annotations

import math
import random
import sys
from array import array
from collections.abc import Sequence

from keel.common.v1 import schema_pb2
from keel.monitor.v1 import ingest_pb2
from keel.oip.v2 import open_inference_pb2 as oip

MATRIX_INPUT = "features"
POOL = 16  # distinct payloads per run
_FLOATS = (schema_pb2.DATA_TYPE_FLOAT32, schema_pb2.DATA_TYPE_FLOAT64)
_INTEGERS = (schema_pb2.DATA_TYPE_INT32, schema_pb2.DATA_TYPE_INT64)


def little_endian(values: array[float] | array[int]) -> bytes:
    """The values' bytes, little-endian (as the Open Inference Protocol and the monitor's
    raw columns have them) whatever the machine's byte order."""
    if sys.byteorder == "big":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def matrix_width(metadata: oip.ModelMetadataResponse) -> int:
    """F of a model that takes one FP32 ``features`` tensor of shape [-1, F]; ValueError
    for a model that takes per-feature tensors (a signature with string features)."""
    inputs = list(metadata.inputs)
    if (
        len(inputs) != 1
        or inputs[0].name != MATRIX_INPUT
        or inputs[0].datatype != "FP32"
        or len(inputs[0].shape) != 2
        or inputs[0].shape[1] < 1
    ):
        found = ", ".join(f"{t.name} {t.datatype} {list(t.shape)}" for t in inputs) or "none"
        raise ValueError(
            f"model '{metadata.name}': expected one input 'features' FP32 [-1, F], got {found} "
            "(keel loadtest sends numeric feature matrices only)"
        )
    return int(inputs[0].shape[1])


def infer_request(
    model: str, version: str, rows: int, features: int, rng: random.Random
) -> oip.ModelInferRequest:
    """A ModelInfer request of ``rows`` rows of standard normal features, as one raw FP32
    ``features`` tensor [rows, features]; ``id`` left empty, so that inference names
    each prediction itself."""
    values = array("f", (rng.gauss(0.0, 1.0) for _ in range(rows * features)))
    request = oip.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name=MATRIX_INPUT, datatype="FP32", shape=[rows, features])
    request.raw_input_contents.append(little_endian(values))
    return request


# Prediction-log batches --------------------------------------------------------------


def _raw(
    values: array[float] | array[int], dtype: schema_pb2.DataType.ValueType
) -> ingest_pb2.Column:
    return ingest_pb2.Column(raw=ingest_pb2.RawArray(data=little_endian(values), dtype=dtype))


def _numbers(feature: schema_pb2.Feature, rows: int, rng: random.Random) -> list[float]:
    low = feature.range.min if feature.range.HasField("min") else -math.inf
    high = feature.range.max if feature.range.HasField("max") else math.inf
    return [min(high, max(low, rng.gauss(0.0, 1.0))) for _ in range(rows)]


def feature_column(feature: schema_pb2.Feature, rows: int, rng: random.Random) -> ingest_pb2.Column:
    """A column of ``rows`` values that fits ``feature``: categories drawn from its
    ``categories`` (dictionary-encoded), numbers standard normal clipped to its range."""
    if feature.kind == schema_pb2.FEATURE_KIND_CATEGORICAL or (
        feature.dtype == schema_pb2.DATA_TYPE_STRING
    ):
        dictionary = list(feature.categories) or [f"c{i}" for i in range(5)]
        codes = array("i", (rng.randrange(len(dictionary)) for _ in range(rows)))
        column = ingest_pb2.Column(
            dictionary=ingest_pb2.DictionaryArray(dictionary=dictionary, codes=little_endian(codes))
        )
    elif feature.dtype == schema_pb2.DATA_TYPE_BOOL:
        data = bytes(rng.randrange(2) for _ in range(rows))
        column = ingest_pb2.Column(
            raw=ingest_pb2.RawArray(data=data, dtype=schema_pb2.DATA_TYPE_BOOL)
        )
    elif feature.dtype in _INTEGERS:
        values = array("q", (round(v * 10) for v in _numbers(feature, rows, rng)))
        column = _raw(values, schema_pb2.DATA_TYPE_INT64)
    else:
        column = _raw(array("d", _numbers(feature, rows, rng)), schema_pb2.DATA_TYPE_FLOAT64)
    column.name = feature.name
    return column


def outputs(
    task: schema_pb2.Task.ValueType, classes: int, rows: int, rng: random.Random
) -> ingest_pb2.PredictionOutputs:
    """Plausible answers of a model of ``task``: a score and a label (binary), class
    probabilities and a label (multiclass) or a value (regression)."""
    answers = ingest_pb2.PredictionOutputs()
    if task == schema_pb2.TASK_REGRESSION:
        predictions = array("d", (rng.gauss(0.0, 1.0) for _ in range(rows)))
        answers.prediction.CopyFrom(_raw(predictions, schema_pb2.DATA_TYPE_FLOAT64))
    elif task == schema_pb2.TASK_MULTICLASS_CLASSIFICATION:
        table = [[rng.random() for _ in range(classes)] for _ in range(rows)]
        table = [[p / sum(row) for p in row] for row in table]
        labels = array("q", (row.index(max(row)) for row in table))
        for k in range(classes):
            column = array("d", (row[k] for row in table))
            answers.probabilities.append(_raw(column, schema_pb2.DATA_TYPE_FLOAT64))
        answers.label.CopyFrom(_raw(labels, schema_pb2.DATA_TYPE_INT64))
    else:
        scores = array("d", (rng.random() for _ in range(rows)))
        labels = array("q", (int(s >= 0.5) for s in scores))
        answers.score.CopyFrom(_raw(scores, schema_pb2.DATA_TYPE_FLOAT64))
        answers.label.CopyFrom(_raw(labels, schema_pb2.DATA_TYPE_INT64))
    return answers


def batch_template(
    model: str,
    version: int,
    task: schema_pb2.Task.ValueType,
    signature: schema_pb2.Signature,
    rows: int,
    rng: random.Random,
) -> ingest_pb2.PredictionBatch:
    """A batch of ``rows`` generated predictions of ``models/{model}`` version
    ``version`` without its producer, prediction ids and times (see ``stamped``)."""
    if task == schema_pb2.TASK_UNSPECIFIED:
        raise ValueError(f"model '{model}' has no task")
    classes = len(signature.class_labels) or 3
    return ingest_pb2.PredictionBatch(
        model=f"models/{model}",
        version=version,
        row_count=rows,
        features=[feature_column(f, rows, rng) for f in signature.inputs],
        outputs=outputs(task, classes, rows, rng),
    )


def stamped(
    template: ingest_pb2.PredictionBatch,
    producer: str,
    ids: Sequence[str],
    time_ns: int,
) -> ingest_pb2.PredictionBatch:
    """``template`` from ``producer`` with prediction ids ``ids`` (one per row, unique
    within the model) made at ``time_ns``; unsequenced (sequence 0), so the monitor
    applies it once per distinct prediction id."""
    message = ingest_pb2.PredictionBatch()
    message.CopyFrom(template)
    message.producer_id = producer
    message.prediction_ids.strings.values.extend(ids)
    message.time_unix_nanos.extend([time_ns] * len(ids))
    return message
