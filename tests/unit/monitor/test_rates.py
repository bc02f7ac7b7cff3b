"""A producer's rows per second: within the rate nothing waits; past it, the wait is what
the excess takes to become due; a refused call takes nothing."""

from __future__ import annotations

import pytest

from services.common.errors import ResourceExhausted
from services.monitor.rates import RowRates


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rows_within_the_rate_never_wait_and_the_excess_waits_its_time() -> None:
    clock = Clock()
    rates = RowRates(1000, burst_rows=500, clock=clock)
    assert rates.reserve("p", 1000) == 0  # one second's worth at once
    assert rates.reserve("p", 500) == pytest.approx(0.5)  # due half a second later
    clock.now += 1.5
    assert rates.reserve("p", 1000) == 0  # the debt is paid, the bucket refilled
    assert rates.reserve("other", 1000) == 0  # producers are apart


def test_a_refused_call_takes_nothing_and_says_when_to_retry() -> None:
    clock = Clock()
    rates = RowRates(100, burst_rows=100, clock=clock)
    rates.take_now("p", 100)
    with pytest.raises(
        ResourceExhausted, match=r"producer 'p': over .* 100 rows per second; retry in 0\.50 s"
    ):
        rates.take_now("p", 50)
    clock.now += 0.5
    rates.take_now("p", 50)  # the refused rows were not counted


def test_no_limit_when_the_rate_is_zero() -> None:
    rates = RowRates(0, burst_rows=10)
    assert rates.reserve("p", 10**9) == 0
