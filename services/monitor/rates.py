"""How fast one producer may log rows (``KEEL_MONITOR_MAX_ROWS_PER_S``, 0: no limit): a
token bucket per producer holding one second's worth of rows (at least one batch).

A ``LogPredictions`` stream over the rate is paced: the monitor stops reading it until
the rows are due, so HTTP/2 flow control holds the producer back and nothing is lost. A
``LogPredictionBatch`` call over the rate is refused with RESOURCE_EXHAUSTED saying when
to retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.common.errors import ResourceExhausted

MAX_PRODUCERS = 100_000  # buckets kept; the idlest are forgotten beyond it (a full bucket)


@dataclass
class _Bucket:
    rows: float
    at: float


class RowRates:
    def __init__(
        self, rows_per_s: float, burst_rows: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rows_per_s = rows_per_s
        self._capacity = max(rows_per_s, float(burst_rows))
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def reserve(self, producer: str, rows: int) -> float:
        """Take ``rows`` for ``producer``; the seconds to wait before they are due (0 when
        they are within the rate)."""
        if self.rows_per_s <= 0:
            return 0.0
        bucket = self._refilled(producer)
        bucket.rows -= max(rows, 0)
        return 0.0 if bucket.rows >= 0 else -bucket.rows / self.rows_per_s

    def take_now(self, producer: str, rows: int) -> None:
        """Take ``rows`` at once, or ResourceExhausted (and nothing taken)."""
        wait = self.reserve(producer, rows)
        if wait > 0:
            self._buckets[producer].rows += rows
            raise ResourceExhausted(
                f"producer '{producer}': over this monitor's limit of {self.rows_per_s:g} rows "
                f"per second; retry in {wait:.2f} s, or stream with LogPredictions (paced)"
            )

    def _refilled(self, producer: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(producer)
        if bucket is None:
            if len(self._buckets) >= MAX_PRODUCERS:
                self._buckets.pop(min(self._buckets, key=lambda p: self._buckets[p].at))
            bucket = self._buckets[producer] = _Bucket(self._capacity, now)
        bucket.rows = min(self._capacity, bucket.rows + (now - bucket.at) * self.rows_per_s)
        bucket.at = now
        return bucket
