"""The prediction-log hook: every answered request becomes a record on a bounded queue
that never blocks the caller. Delivery to the monitor comes with issue #6; until then
records wait here (the oldest dropped and counted when the queue is full)."""

from __future__ import annotations

import collections
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class PredictionRecord:
    prediction_id: str
    model: str
    version: int
    variant: str
    inputs: dict[str, npt.NDArray[np.generic]]
    outputs: dict[str, npt.NDArray[np.generic]]
    latency_s: float
    trace_id: str
    shadow: bool = False
    time_ns: int = field(default_factory=time.time_ns)


def new_prediction_id() -> str:
    return uuid.uuid4().hex


class PredictionLog:
    """A bounded, non-blocking queue of records."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._records: collections.deque[PredictionRecord] = collections.deque(maxlen=capacity)
        self.dropped = 0
        self.accepted = 0

    def put(self, record: PredictionRecord) -> None:
        if len(self._records) == self._records.maxlen:
            self.dropped += 1
        self._records.append(record)
        self.accepted += 1

    def drain(self, limit: int) -> list[PredictionRecord]:
        taken: list[PredictionRecord] = []
        while self._records and len(taken) < limit:
            taken.append(self._records.popleft())
        return taken

    def __len__(self) -> int:
        return len(self._records)
