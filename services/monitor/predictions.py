"""``GetPrediction``: one logged row, read back from its batch while inside the join
window."""

from __future__ import annotations

from sqlalchemy import Connection, select

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from services.common.db import Database
from services.common.errors import InvalidArgument, NotFound
from services.monitor import columns
from services.monitor.tables import IDS, SEGMENTS


class Predictions:
    def __init__(self, db: Database, keeps_rows: bool = True) -> None:
        self._db = db
        self._keeps_rows = keeps_rows

    async def get(self, request: pb.GetPredictionRequest) -> pb.GetPredictionResponse:
        model = request.model.removeprefix("models/")
        if not request.model.startswith("models/") or not model:
            raise InvalidArgument(f"model: expected 'models/{{model}}', got '{request.model}'")
        if not request.prediction_id:
            raise InvalidArgument("prediction_id: required")
        if not self._keeps_rows:
            raise NotFound(
                f"prediction '{request.prediction_id}' of model '{model}': this monitor keeps "
                "no logged predictions (KEEL_MONITOR_JOIN_WINDOW_S=0)"
            )
        found = await self._db.read(lambda c: _find(c, model, request.prediction_id))
        if found is None:
            raise NotFound(
                f"prediction '{request.prediction_id}' of model '{model}' is unknown or past "
                "the join window"
            )
        return pb.GetPredictionResponse(prediction=found)


def _find(connection: Connection, model: str, pid: str) -> ingest_pb2.PredictionRecord | None:
    where = select(IDS.c.segment, IDS.c.row, IDS.c.label, IDS.c.label_time).where(
        IDS.c.model == model, IDS.c.prediction_id == pid
    )
    located = connection.execute(where).first()
    if located is None:
        return None
    segment = connection.execute(
        select(SEGMENTS.c.payload, SEGMENTS.c.expire_time).where(SEGMENTS.c.id == located[0])
    ).first()
    if segment is None:
        return None
    batch = ingest_pb2.PredictionBatch.FromString(bytes(segment[0]))
    record = ingest_pb2.PredictionRecord(row=one_row(batch, int(located[1])))
    record.expire_time.FromNanoseconds(int(segment[1]))
    if located[2] is not None:
        record.label.strings.values.append(str(located[2]))
        record.label_time.FromNanoseconds(int(located[3] or 0))
    return record


def one_row(batch: ingest_pb2.PredictionBatch, row: int) -> ingest_pb2.PredictionBatch:
    """Row ``row`` of ``batch`` as a one-row batch (every column re-encoded simply)."""
    n = batch.row_count
    out = ingest_pb2.PredictionBatch(
        producer_id=batch.producer_id,
        sequence=batch.sequence,
        model=batch.model,
        version=batch.version,
        deployment=batch.deployment,
        variant=batch.variant,
        row_count=1,
    )
    out.prediction_ids.strings.values.append(
        columns.identifiers(batch.prediction_ids, n, "prediction_ids")[row]
    )
    if len(batch.time_unix_nanos):
        out.time_unix_nanos.append(batch.time_unix_nanos[row])
    for column in batch.features:
        out.features.append(_cell(column, n, row))
    for name in ("label", "score", "prediction"):
        column = getattr(batch.outputs, name)
        if column.WhichOneof("values") is not None:
            getattr(out.outputs, name).CopyFrom(_cell(column, n, row))
    for column in batch.outputs.probabilities:
        out.outputs.probabilities.append(_cell(column, n, row))
    if batch.trace_ids:
        out.trace_ids = batch.trace_ids[16 * row : 16 * row + 16]
    if batch.span_ids:
        out.span_ids = batch.span_ids[8 * row : 8 * row + 8]
    return out


def _cell(column: ingest_pb2.Column, n: int, row: int) -> ingest_pb2.Column:
    cell = ingest_pb2.Column(name=column.name)
    kind = column.WhichOneof("values")
    if kind in ("strings", "length_prefixed", "dictionary"):
        parsed = columns.strings(column, n, column.name)
        code = int(parsed.codes[row])
        if parsed.missing[row] or code < 0:
            cell.strings.values.append("")
            cell.validity = b"\x00"
        else:
            cell.strings.values.append(parsed.dictionary[code])
        return cell
    values, missing = columns.numbers(column, n, column.name)
    cell.doubles.values.append(float(values[row]))
    if missing[row]:
        cell.validity = b"\x00"
    return cell
