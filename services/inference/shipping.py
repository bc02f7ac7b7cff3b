"""From the request path to the spool: answered requests are kept per (model, version,
deployment, variant) and sealed into ``PredictionBatch`` messages every ``flush_s`` (or
as soon as ``batch_rows`` rows wait), then appended to the on-disk spool that
``delivery`` streams to the monitor.

``put`` is all the request path does: an append to a list, never a wait. Sealing runs in
a worker thread, one numpy call per column: numeric features as raw FLOAT32, categorical
ones dictionary-encoded, outputs as raw columns, trace and span ids as fixed-width bytes.
Features the signature flags ``pii`` are replaced by a keyed SHA-256 digest of their
value (``HASH``: equal values still group together) or left out (``DROP``) before the
batch is built, so they never leave the process in clear.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keel.common.v1 import schema_pb2
from keel.monitor.v1 import ingest_pb2
from services.inference.predictions import PredictionRecord, row_ids
from services.inference.records import FeatureSpec, ModelSignature
from services.inference.spool import Spool

log = logging.getLogger(__name__)
Key = tuple[str, int, str, str]  # model, version, deployment, variant


@dataclass
class _Waiting:
    signature: ModelSignature
    records: list[PredictionRecord]
    rows: int = 0


class Shipper:
    """Collects records and seals them into the spool."""

    def __init__(
        self,
        spool: Spool,
        producer_id: str,
        *,
        pii_key: bytes,
        batch_rows: int = 1000,
        flush_s: float = 0.2,
        max_waiting_rows: int = 1_000_000,
        on_sealed: Callable[[], None] = lambda: None,
    ) -> None:
        self.spool = spool
        self.producer_id = producer_id
        self._pii_key = pii_key
        self._batch_rows = batch_rows
        self._flush_s = flush_s
        self._max_waiting_rows = max_waiting_rows
        self._on_sealed = on_sealed
        self._waiting: dict[Key, _Waiting] = {}
        self._waiting_rows = 0
        self._full = asyncio.Event()
        self.logged_rows = 0
        self.dropped_rows = 0  # refused here because sealing fell behind

    def put(self, record: PredictionRecord) -> None:
        """Keep ``record`` for the next batch; never waits."""
        if self._waiting_rows + record.rows > self._max_waiting_rows:
            if not self.dropped_rows:
                log.warning(
                    "prediction log: %d rows wait to be sealed; dropping new records "
                    "(counted in keel_prediction_log_dropped_rows)",
                    self._waiting_rows,
                )
            self.dropped_rows += record.rows
            return
        key = (record.model, record.version, record.deployment, record.variant)
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = _Waiting(record.signature, [])
        waiting.records.append(record)
        waiting.rows += record.rows
        self._waiting_rows += record.rows
        self.logged_rows += record.rows
        if waiting.rows >= self._batch_rows:
            self._full.set()

    @property
    def waiting_rows(self) -> int:
        return self._waiting_rows

    async def run(self, stop: asyncio.Event) -> None:
        """Seal every ``flush_s`` (sooner when a batch is full) until ``stop``, then
        seal what is left, so a clean shutdown spools every record."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._full.wait(), self._flush_s)
            except TimeoutError:
                pass
            await self.seal()
        await self.seal()

    async def seal(self) -> None:
        self._full.clear()
        taken, self._waiting, self._waiting_rows = self._waiting, {}, 0
        if not taken:
            return
        await asyncio.to_thread(self._spool, taken)
        self._on_sealed()

    def _spool(self, taken: dict[Key, _Waiting]) -> None:
        sealed = time.time_ns()
        for key, waiting in taken.items():
            for rows, payload in build_batches(
                self.producer_id,
                key,
                waiting.signature,
                waiting.records,
                self._pii_key,
                self._batch_rows,
                sealed,
            ):
                self.spool.append(rows, payload)


# building batches -----------------------------------------------------------------------
def build_batches(
    producer_id: str,
    key: Key,
    signature: ModelSignature,
    records: Sequence[PredictionRecord],
    pii_key: bytes,
    batch_rows: int,
    sealed_ns: int,
) -> list[tuple[int, bytes]]:
    """``records`` of one key as serialized batches of at most ``batch_rows`` rows
    (``sequence`` left 0: the spool numbers them)."""
    model, version, deployment, variant = key
    counts = np.array([r.rows for r in records], dtype=np.int64)
    total = int(counts.sum())
    numeric = np.concatenate([r.features.numeric for r in records])
    ids = [i for r in records for i in row_ids(r.prediction_id, r.rows)]
    times = np.repeat(np.array([r.time_ns for r in records], dtype=np.int64), counts)
    traces = _per_row(records, counts, "trace_id", 16)
    spans = _per_row(records, counts, "span_id", 8)
    features = [
        (spec, _feature(spec, j, numeric, records, pii_key))
        for j, spec in enumerate(signature.inputs)
        if spec.pii != "DROP"
    ]
    outputs = {
        name: np.concatenate([r.outputs[name] for r in records])
        for name in signature.output_names
        if all(name in r.outputs for r in records)
    }
    batches = []
    for start in range(0, total, batch_rows):
        end = min(start + batch_rows, total)
        batch = ingest_pb2.PredictionBatch(
            producer_id=producer_id,
            model=f"models/{model}",
            version=version,
            deployment=f"deployments/{deployment}" if deployment else "",
            variant=variant,
            row_count=end - start,
        )
        batch.prediction_ids.strings.values.extend(ids[start:end])
        batch.time_unix_nanos.extend(times[start:end].tolist())
        for spec, column in features:
            batch.features.append(column.sliced(spec.name, start, end))
        _outputs(batch.outputs, outputs, start, end)
        if traces is not None:
            batch.trace_ids = traces[start:end].tobytes()
        if spans is not None:
            batch.span_ids = spans[start:end].tobytes()
        batch.create_time.FromNanoseconds(sealed_ns)
        batches.append((end - start, batch.SerializeToString()))
    return batches


def _per_row(
    records: Sequence[PredictionRecord], counts: npt.NDArray[np.int64], field: str, width: int
) -> npt.NDArray[np.uint8] | None:
    values = [getattr(r, field) for r in records]
    if not any(values):
        return None
    raw = b"".join(v.to_bytes(width, "big") for v in values)
    return np.repeat(np.frombuffer(raw, np.uint8).reshape(len(values), width), counts, axis=0)


@dataclass(frozen=True)
class _Column:
    """A whole feature column: raw floats, or dictionary codes (-1 missing)."""

    floats: npt.NDArray[np.float32] | None = None
    dictionary: tuple[str, ...] = ()
    codes: npt.NDArray[np.int32] | None = None

    def sliced(self, name: str, start: int, end: int) -> ingest_pb2.Column:
        column = ingest_pb2.Column(name=name)
        if self.floats is not None:
            column.raw.data = np.ascontiguousarray(self.floats[start:end]).tobytes()
            column.raw.dtype = schema_pb2.DATA_TYPE_FLOAT32
            return column
        assert self.codes is not None
        codes = self.codes[start:end]
        missing = codes < 0
        column.dictionary.dictionary.extend(self.dictionary)
        column.dictionary.codes = np.where(missing, 0, codes).astype("<i4").tobytes()
        if missing.any():
            column.validity = np.packbits(~missing, bitorder="little").tobytes()
        return column


def _feature(
    spec: FeatureSpec,
    j: int,
    numeric: npt.NDArray[np.float32],
    records: Sequence[PredictionRecord],
    pii_key: bytes,
) -> _Column:
    values = numeric[:, j]
    if spec.kind == "NUMERIC" and spec.pii != "HASH":
        return _Column(floats=values)
    if spec.kind == "NUMERIC" or spec.categories:
        # category index (or number) per row, NaN when missing
        present = ~np.isnan(values)
        distinct, inverse = np.unique(values[present], return_inverse=True)
        codes = np.full(values.shape, -1, dtype=np.int32)
        codes[present] = inverse
        if spec.kind == "NUMERIC":
            names = [repr(float(v)) for v in distinct]
        else:
            names = [spec.categories[int(v)] for v in distinct]
    else:
        texts = np.concatenate([_texts(r, spec.name) for r in records])
        present = texts != ""
        distinct_texts, inverse = np.unique(texts[present], return_inverse=True)
        codes = np.full(texts.shape, -1, dtype=np.int32)
        codes[present] = inverse
        names = [str(v) for v in distinct_texts]
    if spec.pii == "HASH":
        names = [pii_digest(pii_key, name) for name in names]
    return _Column(dictionary=tuple(names), codes=codes)


def _texts(record: PredictionRecord, name: str) -> npt.NDArray[np.str_]:
    values = record.features.columns.get(name)
    if values is None:
        return np.full(record.rows, "", dtype=np.str_)
    return np.array([_text(v) for v in values.tolist()], dtype=np.str_)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def pii_digest(key: bytes, value: str) -> str:
    """The keyed SHA-256 digest that stands for a PII value in prediction logs."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _outputs(
    into: ingest_pb2.PredictionOutputs,
    outputs: dict[str, npt.NDArray[np.generic]],
    start: int,
    end: int,
) -> None:
    if "label" in outputs:
        into.label.raw.data = np.ascontiguousarray(outputs["label"][start:end], "<i8").tobytes()
        into.label.raw.dtype = schema_pb2.DATA_TYPE_INT64
    if "probabilities" in outputs:
        probabilities = outputs["probabilities"][start:end]
        for c in range(probabilities.shape[1]):
            column = into.probabilities.add()
            column.raw.data = np.ascontiguousarray(probabilities[:, c], "<f4").tobytes()
            column.raw.dtype = schema_pb2.DATA_TYPE_FLOAT32
    if "prediction" in outputs:
        values = np.ascontiguousarray(outputs["prediction"][start:end], "<f4")
        into.prediction.raw.data = values.tobytes()
        into.prediction.raw.dtype = schema_pb2.DATA_TYPE_FLOAT32
