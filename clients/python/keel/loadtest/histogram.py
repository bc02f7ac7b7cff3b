"""A log-linear latency histogram in the manner of HdrHistogram, small and exact enough
for a load generator.

Values are non-negative integers (the load generator records nanoseconds). Below
``2**bits`` every value has a bucket of its own; above, each power of two is split into
``2**(bits - 1)`` equal buckets, so a bucket's width is at most ``1 / 2**(bits - 1)``
of the values in it: with the default ``bits=8``, any reported percentile is within
0.8 % of the true value (HdrHistogram's "2 significant digits"). Memory grows with the
number of distinct buckets touched (a few hundred for real latencies), not with the
number of values, so a 30-minute soak costs the same as a 10-second run.

Percentiles follow HdrHistogram: the value at percentile ``q`` is the highest value
equivalent to (in the same bucket as) the smallest recorded value ``v`` such that at
least ``q`` % of the values are ``<= v``; it is capped at the exact maximum, so
``value_at(100) == max``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class LogLinearHistogram:
    """Counts of non-negative integer values in log-linear buckets."""

    def __init__(self, bits: int = 8) -> None:
        if not 2 <= bits <= 24:
            raise ValueError(f"bits {bits}: expected 2..24")
        self.bits = bits
        self._linear = 1 << bits  # values below this are exact
        self._half = 1 << (bits - 1)  # buckets per power of two above it
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    # Buckets ---------------------------------------------------------------------------

    def bucket_of(self, value: int) -> int:
        """The index of the bucket holding ``value``; indices grow with values."""
        if value < self._linear:
            return value
        shift = value.bit_length() - self.bits
        mantissa = value >> shift  # in [2**(bits-1), 2**bits)
        return self._linear + (shift - 1) * self._half + (mantissa - self._half)

    def bucket_bounds(self, index: int) -> tuple[int, int]:
        """The lowest and highest value of bucket ``index`` (both inclusive)."""
        if index < self._linear:
            return index, index
        shift, offset = divmod(index - self._linear, self._half)
        shift += 1
        mantissa = self._half + offset
        return mantissa << shift, ((mantissa + 1) << shift) - 1

    # Recording -------------------------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        """Counts ``value`` (``count`` times)."""
        if value < 0:
            raise ValueError(f"value {value}: expected >= 0")
        if count < 1:
            raise ValueError(f"count {count}: expected >= 1")
        index = self.bucket_of(value)
        self._counts[index] = self._counts.get(index, 0) + count
        self.count += count
        self.total += value * count
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    def record_all(self, values: Iterable[int]) -> None:
        for value in values:
            self.record(value)

    def merge(self, other: LogLinearHistogram) -> None:
        """Adds every value counted by ``other`` (which must use the same ``bits``)."""
        if other.bits != self.bits:
            raise ValueError(
                f"cannot merge a {other.bits}-bit histogram into a {self.bits}-bit one"
            )
        for index, count in other._counts.items():
            self._counts[index] = self._counts.get(index, 0) + count
        self.count += other.count
        self.total += other.total
        for bound in (other.min, other.max):
            if bound is not None:
                self.min = bound if self.min is None else min(self.min, bound)
                self.max = bound if self.max is None else max(self.max, bound)

    # Reading ---------------------------------------------------------------------------

    def value_at(self, percentile: float) -> int | None:
        """The value at ``percentile`` (0–100; see the module docstring); None when empty."""
        if not 0 <= percentile <= 100:
            raise ValueError(f"percentile {percentile}: expected 0..100")
        if self.count == 0 or self.max is None or self.min is None:
            return None
        if percentile == 0:
            return self.min
        # rounded first, so that 99.9 % of 1000 values is rank 999, not 1000
        rank = max(1, math.ceil(round(percentile * self.count / 100, 9)))
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            if seen >= rank:
                return min(self.bucket_bounds(index)[1], self.max)
        return self.max

    def values_at(self, percentiles: Iterable[float]) -> dict[float, int | None]:
        return {p: self.value_at(p) for p in percentiles}

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def __len__(self) -> int:
        return self.count
