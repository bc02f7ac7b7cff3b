"""The log-linear histogram: exact below 2**bits, within 1/2**(bits-1) above, and
percentiles as HdrHistogram defines them (the smallest value with at least p % of the
values at or below it)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from keel.loadtest.histogram import LogLinearHistogram
from keel.loadtest.recorder import Recorder, latency_ms


def exact_percentile(ordered: np.ndarray, percentile: float) -> int:
    """The value of rank ceil(p * n / 100), in exact arithmetic (numpy's inverted_cdf
    computes the rank in floats: 99.9 % of 50,000 comes out as 49,951)."""
    rank = math.ceil(Fraction(str(percentile)) * len(ordered) / 100)
    return int(ordered[max(rank, 1) - 1])


def test_small_values_are_exact_and_percentiles_follow_the_hdr_definition() -> None:
    histogram = LogLinearHistogram()
    histogram.record_all(range(1, 101))
    assert histogram.value_at(50) == 50
    assert histogram.value_at(90) == 90
    assert histogram.value_at(99) == 99
    assert histogram.value_at(99.9) == 100
    assert histogram.value_at(0) == 1
    assert histogram.value_at(100) == 100
    assert histogram.mean == pytest.approx(50.5)


def test_rank_is_not_pushed_up_by_float_rounding() -> None:
    # 99.9 % of 1000 values is the 999th value; 99.9 / 100 * 1000 is 999.0000000000001.
    histogram = LogLinearHistogram()
    histogram.record_all(range(1, 1001))
    assert histogram.value_at(99.9) == 999


def test_buckets_tile_the_integers_in_order() -> None:
    histogram = LogLinearHistogram(bits=4)
    previous_high = -1
    for index in range(400):
        low, high = histogram.bucket_bounds(index)
        assert low == previous_high + 1
        assert histogram.bucket_of(low) == histogram.bucket_of(high) == index
        if low >= 2**3:
            assert (high - low + 1) / low <= 1 / 2**3
        else:
            assert high == low
        previous_high = high


@pytest.mark.parametrize("bits", [6, 8, 11])
def test_percentiles_are_within_the_bucket_precision_of_the_true_values(bits: int) -> None:
    rng = np.random.default_rng(bits)
    values = np.round(rng.lognormal(mean=14, sigma=1.2, size=50_000)).astype(np.int64)
    ordered = np.sort(values)
    histogram = LogLinearHistogram(bits=bits)
    histogram.record_all(int(v) for v in values)
    for percentile in (50, 90, 99, 99.9):
        exact = exact_percentile(ordered, percentile)
        reported = histogram.value_at(percentile)
        assert reported is not None
        assert exact <= reported <= exact * (1 + 1 / 2 ** (bits - 1)), percentile
    assert histogram.value_at(100) == values.max() == histogram.max
    assert histogram.min == values.min()
    assert histogram.count == len(values)
    assert histogram.total == int(values.sum())


def test_merge_equals_recording_everything_in_one() -> None:
    rng = np.random.default_rng(3)
    first, second = (rng.integers(0, 10**9, size=2000) for _ in range(2))
    a, b, both = LogLinearHistogram(), LogLinearHistogram(), LogLinearHistogram()
    a.record_all(int(v) for v in first)
    b.record_all(int(v) for v in second)
    both.record_all(int(v) for v in np.concatenate([first, second]))
    a.merge(b)
    for percentile in (0, 25, 50, 90, 99, 99.9, 100):
        assert a.value_at(percentile) == both.value_at(percentile)
    assert (a.count, a.total, a.min, a.max) == (both.count, both.total, both.min, both.max)
    with pytest.raises(ValueError, match="merge"):
        a.merge(LogLinearHistogram(bits=6))


def test_empty_and_invalid_input() -> None:
    histogram = LogLinearHistogram()
    assert histogram.value_at(50) is None
    assert histogram.mean is None
    with pytest.raises(ValueError, match="expected >= 0"):
        histogram.record(-1)
    with pytest.raises(ValueError, match="percentile"):
        histogram.value_at(101)
    with pytest.raises(ValueError, match="bits"):
        LogLinearHistogram(bits=1)


def test_recorder_reports_milliseconds_per_operation_and_errors_by_code() -> None:
    recorder = Recorder()
    for ms in range(1, 1001):
        recorder.record("ModelInfer", ms / 1000, rows=2)
    recorder.fail("ModelInfer", 10.0, "DEADLINE_EXCEEDED")
    recorder.fail("GetModel", 0.001, "UNAVAILABLE")
    infer = recorder.operations["ModelInfer"]
    assert (infer.ok, infer.rows, dict(infer.errors)) == (1000, 2000, {"DEADLINE_EXCEEDED": 1})
    figures = latency_ms(infer.latency_ns)
    # within the histogram's 0.8 % of the exact 500, 990, 999 ms
    assert figures["p50"] == pytest.approx(500, rel=0.008)
    assert figures["p99"] == pytest.approx(990, rel=0.008)
    assert figures["p99.9"] == pytest.approx(999, rel=0.008)
    assert figures["max"] == 1000
    total = recorder.total()
    assert (total.ok, total.error_count) == (1000, 2)
    assert dict(total.errors) == {"DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 1}
