"""The prediction-log batches of the monitor benchmark, as the bytes a ``LogPredictions``
stream carries.

A batch is split in two ``PredictionBatch`` messages serialised on their own: a *body*
(model, version, row count, row times, the 13 features as raw FLOAT32 columns, the
``score`` as raw FLOAT64 and the ``label`` as raw INT64), the same for every producer
that sends that block of data, and a *header* (producer, sequence, prediction ids in the
length-prefixed layout) that differs for every batch. In protobuf's wire format the
concatenation of two serialised messages is the serialisation of their merge, so
``header + body`` is the whole batch, and ``0x12, varint(length), batch`` is the
``LogPredictionsRequest`` whose ``batch`` it is. The stream is opened with no request
serializer and sends these bytes as they are; ``parse`` turns one back into a message
to check it.

Prediction ids are ``{prefix}{row:012d}``: fixed width, unique per (prefix, row), built
with numpy in one pass (a 4-byte little-endian length before each).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bench import monitor_data as data
from keel.common.v1 import schema_pb2
from keel.monitor.v1 import ingest_pb2, monitor_pb2

_DIGITS = 12
_POWERS = 10 ** np.arange(_DIGITS - 1, -1, -1, dtype=np.int64)


@dataclass(frozen=True)
class LoggedModel:
    """The registered model the batches are about, and its scoring function."""

    model: str  # models/{id}
    version: int
    coef: npt.NDArray[np.float64]
    intercept: float


def _raw(name: str, values: npt.NDArray[np.generic], dtype: int) -> ingest_pb2.Column:
    raw = ingest_pb2.RawArray(
        data=np.ascontiguousarray(values).tobytes(), dtype=schema_pb2.DataType.ValueType(dtype)
    )
    return ingest_pb2.Column(name=name, raw=raw)


def body(block: data.Matrix, logged: LoggedModel, time_unix_nanos: int) -> bytes:
    """The serialised body of a batch of ``block``'s rows, all made at one instant."""
    score = data.scores(block, logged.coef, logged.intercept)
    label = (score >= 0.5).astype(np.int64)
    batch = ingest_pb2.PredictionBatch(
        model=logged.model,
        version=logged.version,
        row_count=len(block),
        time_unix_nanos=[time_unix_nanos] * len(block),
        features=[
            _raw(name, block[:, j], schema_pb2.DATA_TYPE_FLOAT32)
            for j, name in enumerate(data.FEATURES)
        ],
        outputs=ingest_pb2.PredictionOutputs(
            score=_raw("score", score, schema_pb2.DATA_TYPE_FLOAT64),
            label=_raw("label", label, schema_pb2.DATA_TYPE_INT64),
        ),
    )
    return batch.SerializeToString()


def bodies(blocks: int, logged: LoggedModel, step_s: int = 0) -> list[bytes]:
    """Bodies of current blocks ``0 … blocks-1``; block ``i`` made ``i * step_s`` seconds
    ago (all now by default)."""
    now = time.time_ns()
    return [
        body(data.current_block(i), logged, now - i * step_s * 1_000_000_000) for i in range(blocks)
    ]


def prediction_ids(prefix: str, start: int, count: int) -> bytes:
    """``count`` ids ``{prefix}{row:012d}`` from row ``start``, length-prefixed."""
    rows = np.arange(start, start + count, dtype=np.int64)
    digits = ((rows[:, None] // _POWERS) % 10 + ord("0")).astype(np.uint8)
    head = prefix.encode()
    length = np.frombuffer(np.uint32(len(head) + _DIGITS).tobytes(), dtype=np.uint8)
    fixed = np.frombuffer(length.tobytes() + head, dtype=np.uint8)
    return np.hstack([np.broadcast_to(fixed, (count, fixed.size)), digits]).tobytes()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def request(producer: str, sequence: int, ids: bytes, batch_body: bytes) -> bytes:
    """The serialised ``LogPredictionsRequest`` carrying one batch."""
    header = ingest_pb2.PredictionBatch(
        producer_id=producer,
        sequence=sequence,
        prediction_ids=ingest_pb2.Column(length_prefixed=ingest_pb2.LengthPrefixedArray(data=ids)),
    ).SerializeToString()
    batch = header + batch_body
    return b"\x12" + _varint(len(batch)) + batch


def open_request(producer: str) -> bytes:
    opening = ingest_pb2.LogStreamOpen(producer_id=producer, description="python -m bench monitor")
    return monitor_pb2.LogPredictionsRequest(open=opening).SerializeToString()


def parse(serialised: bytes) -> monitor_pb2.LogPredictionsRequest:
    return monitor_pb2.LogPredictionsRequest.FromString(serialised)


@dataclass(frozen=True)
class Plan:
    """What one producer sends: ``batches`` batches, batch ``k`` (sequence ``k + 1``) with
    the body ``bodies[(first + k) % len(bodies)]`` and ids from row ``BLOCK * k``."""

    producer: str
    id_prefix: str
    first: int
    batches: int

    @property
    def rows(self) -> int:
        return self.batches * data.BLOCK

    def requests(self, batch_bodies: Sequence[bytes]) -> Iterator[bytes]:
        for k in range(self.batches):
            ids = prediction_ids(self.id_prefix, k * data.BLOCK, data.BLOCK)
            yield request(
                self.producer, k + 1, ids, batch_bodies[(self.first + k) % len(batch_bodies)]
            )
