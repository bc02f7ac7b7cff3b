"""What a load run saw: per operation, the latency of every answered call (in a
log-linear histogram), the rows answered, and the failed calls by gRPC status code."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from keel.loadtest.histogram import LogLinearHistogram

NS_PER_S = 1_000_000_000
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)


class Sink(Protocol):
    """Where the schedulers report each call's outcome."""

    def record(self, operation: str, latency_s: float, rows: int) -> None:
        """An answered call: its latency and the rows it answered."""

    def fail(self, operation: str, latency_s: float, code: str) -> None:
        """A failed call: its latency and its status code's name (``UNAVAILABLE``)."""


@dataclass
class OperationStats:
    """One operation's figures (``ModelInfer``, ``GetModel``…)."""

    latency_ns: LogLinearHistogram = field(default_factory=LogLinearHistogram)
    rows: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return self.latency_ns.count

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def merge(self, other: OperationStats) -> None:
        self.latency_ns.merge(other.latency_ns)
        self.rows += other.rows
        self.errors.update(other.errors)


def latency_ms(histogram: LogLinearHistogram) -> dict[str, float | None]:
    """p50/p90/p99/p99.9, max, min and mean of a nanosecond histogram, in milliseconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value / 1e6, 4)

    figures = {name: ms(histogram.value_at(p)) for name, p in PERCENTILES}
    figures.update(max=ms(histogram.max), min=ms(histogram.min), mean=ms(histogram.mean))
    return figures


class Recorder:
    """A ``Sink`` that keeps ``OperationStats`` per operation. Failed calls are counted
    by code but their latencies are not mixed into the answered calls' percentiles."""

    def __init__(self) -> None:
        self.operations: dict[str, OperationStats] = {}

    def _stats(self, operation: str) -> OperationStats:
        stats = self.operations.get(operation)
        if stats is None:
            stats = self.operations[operation] = OperationStats()
        return stats

    def record(self, operation: str, latency_s: float, rows: int) -> None:
        stats = self._stats(operation)
        stats.latency_ns.record(max(0, round(latency_s * NS_PER_S)))
        stats.rows += rows

    def fail(self, operation: str, latency_s: float, code: str) -> None:
        self._stats(operation).errors[code] += 1

    def total(self) -> OperationStats:
        """Every operation's figures pooled."""
        pooled = OperationStats()
        for stats in self.operations.values():
            pooled.merge(stats)
        return pooled


def stats_dict(stats: OperationStats, elapsed_s: float) -> dict[str, Any]:
    """An operation's figures as plain JSON values."""
    attempted = stats.ok + stats.error_count
    return {
        "requests": attempted,
        "ok": stats.ok,
        "rows": stats.rows,
        "errors": dict(sorted(stats.errors.items())),
        "error_count": stats.error_count,
        "error_rate": round(stats.error_count / attempted, 6) if attempted else 0.0,
        "throughput_rps": round(stats.ok / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        "rows_per_s": round(stats.rows / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        "latency_ms": latency_ms(stats.latency_ns),
    }
