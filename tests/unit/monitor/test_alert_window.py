"""The window an alert rule is evaluated over holds the bucket being written, even in the
first second of that bucket."""

from __future__ import annotations

from typing import cast

import pytest

from services.common.errors import NotFound
from services.monitor.alert_metrics import AlertMetrics
from services.monitor.alert_records import Condition, DriftMetric, RuleSpec
from services.monitor.references import References
from services.monitor.scope import Aggregates, Scope

NS = 1_000_000_000
BASE_S = 300
BOUNDARY_S = 1_764_316_800  # a multiple of 300: the start of a 5-minute bucket
WINDOW_S = 3600


class Recording:
    """Aggregates that record the scope asked for and hold no rows."""

    base_s = BASE_S

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def select(self, scope: Scope) -> object:
        self.scopes.append(scope)
        raise NotFound("no rows")


@pytest.mark.parametrize("into_bucket_s", [0.0, 0.25, 0.999, 1.5, 299.9])
async def test_the_window_holds_the_bucket_being_written(into_bucket_s: float) -> None:
    aggregates = Recording()
    metrics = AlertMetrics(cast(Aggregates, aggregates), cast(References, None))
    rule = RuleSpec(
        id="x0-drift",
        model="churn",
        condition=Condition(DriftMetric("x0"), ">=", 0.1),
        window_ns=WINDOW_S * NS,
    )
    now_ns = BOUNDARY_S * NS + int(into_bucket_s * NS)
    evaluation = await metrics.evaluate(rule, now_ns)
    (scope,) = aggregates.scopes
    assert scope.end_s == BOUNDARY_S + BASE_S  # the bucket holding "now" is in
    assert scope.start_s == BOUNDARY_S + BASE_S - WINDOW_S
    assert evaluation.window_end_ns == scope.end_s * NS
