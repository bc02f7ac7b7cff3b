"""``LogFeedback``: labels checked against the model's classes, then joined in one
transaction."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from keel.monitor.v1 import monitor_pb2
from services.common.db import Database
from services.common.errors import FailedPrecondition
from services.monitor import columns
from services.monitor.batches import invalid
from services.monitor.buckets import BucketWriter
from services.monitor.feedback import FeedbackCounts, Keeping, Label, apply_feedback
from services.monitor.reference import ModelReference
from services.monitor.references import References
from services.monitor.settings import MIN_JOIN_WINDOW_S

NO_ROWS_KEPT = (
    "this monitor keeps no logged predictions to join labels to (KEEL_MONITOR_JOIN_WINDOW_S=0); "
    f"labels need a join window of at least {MIN_JOIN_WINDOW_S} seconds"
)


class Feedback:
    def __init__(
        self,
        db: Database,
        references: References,
        keeping: Keeping,
        on_applied: Callable[[str], None] = lambda model: None,
    ) -> None:
        self._db = db
        self._references = references
        self._keeping = keeping
        self._on_applied = on_applied

    async def log(self, request: monitor_pb2.LogFeedbackRequest) -> FeedbackCounts:
        model = request.model.removeprefix("models/")
        if not request.model.startswith("models/") or not model:
            raise invalid("model", f"model: expected 'models/{{model}}', got '{request.model}'")
        if not self._keeping.keeps_rows:
            raise FailedPrecondition(NO_ROWS_KEPT)
        columns.check_row_count(request.row_count, self._keeping.max_batch_rows)
        versions = await self._references.versions(model)
        latest = versions[-1] if versions else await self._references.latest_version(model)
        references = {v: await self._references.get(model, v) for v in versions or [latest]}
        labels = parse_labels(request, references[latest], time.time_ns())
        now = time.time_ns()
        counts = await self._db.write(lambda c: self._apply(c, model, labels, references, now))
        self._on_applied(model)
        return counts

    def _apply(
        self,
        connection: Connection,
        model: str,
        labels: list[Label],
        references: Mapping[int, ModelReference],
        now: int,
    ) -> FeedbackCounts:
        writer = BucketWriter(connection, self._keeping.bucket_s)
        counts = apply_feedback(
            connection, writer, model, labels, references, now, self._keeping.join_window_ns
        )
        writer.flush()
        return counts


def parse_labels(
    request: monitor_pb2.LogFeedbackRequest, reference: ModelReference, now: int
) -> list[Label]:
    n = request.row_count
    ids = columns.identifiers(request.prediction_ids, n, "prediction_ids") if n else []
    texts, missing = _label_texts(request, reference, n)
    label_times = _times(request.label_time_unix_nanos, n, "label_time_unix_nanos", now)
    made = _times(request.prediction_time_unix_nanos, n, "prediction_time_unix_nanos", None)
    return [
        Label(ids[i], texts[i], label_times[i] or now, made[i]) for i in range(n) if not missing[i]
    ]


def _label_texts(
    request: monitor_pb2.LogFeedbackRequest, reference: ModelReference, n: int
) -> tuple[list[str], npt.NDArray[np.bool_]]:
    column = request.labels
    kind = column.WhichOneof("values")
    if not reference.classifier:
        values, missing = columns.numbers(column, n, "labels")
        return [repr(float(v)) for v in values], missing | ~np.isfinite(values)
    classes = reference.class_labels
    if kind in ("strings", "length_prefixed", "dictionary"):
        codes, missing, unseen = columns.category_codes(column, n, "labels", classes)
        if unseen:
            bad = next(iter(unseen))
            message = (
                f"labels: '{bad}' is not a class label of the model "
                f"(expected one of {list(classes)})"
            )
            raise invalid("labels", message)
        return [classes[c] if c >= 0 else "" for c in codes], missing
    values, missing = columns.numbers(column, n, "labels")
    present = values[~missing]
    if len(present) and (
        (present != np.floor(present)).any() or present.min() < 0 or present.max() >= len(classes)
    ):
        message = (
            f"labels: expected class indices 0..{len(classes) - 1} or class labels {list(classes)}"
        )
        raise invalid("labels", message)
    return [classes[int(v)] if not m else "" for v, m in zip(values, missing, strict=True)], missing


def _times(values: Sequence[int], n: int, name: str, default: int | None) -> list[int | None]:
    if not len(values):
        return [default] * n
    if len(values) != n:
        raise invalid(name, f"{name}: expected {n} values (or none), got {len(values)}")
    return [int(v) if v else default for v in values]
