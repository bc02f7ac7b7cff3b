"""Alerting's domain on a real SQLite database: rule validation, etags, paging, the
evaluation state machine of alerts.proto, acknowledgements, the event stream and the
scheduling of evaluations. Metric values come from a scripted Evaluate function."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.common.db import Database, make_engine
from services.common.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    InvalidArgument,
    NotFound,
    OutOfRange,
)
from services.monitor import alert_text
from services.monitor.alert_records import (
    HOUR_NS,
    MINUTE_NS,
    SECOND_NS,
    ActionState,
    AlertEvent,
    AlertFilter,
    AlertState,
    Condition,
    DriftMetric,
    Evaluation,
    EventType,
    FairnessMetric,
    PerformanceMetric,
    QualityMetric,
    RollbackCanary,
    RuleSpec,
    RuleState,
)
from services.monitor.alert_states import transition
from services.monitor.alert_store import ALERTS, COUNTERS, EVENTS, RULES
from services.monitor.alerts import Alerting
from services.monitor.settings import MonitorSettings
from services.monitor.tables import METADATA

START = 1_800_000_000 * SECOND_NS
F1_BELOW = Condition(PerformanceMetric("f1"), "<", 0.8)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


class Script:
    """Evaluate: returns the scripted (value, rows) pairs in turn, then the last again."""

    def __init__(self) -> None:
        self.results: list[tuple[float | None, int]] = [(None, 0)]
        self.calls = 0

    def then(self, *results: tuple[float | None, int]) -> None:
        self.results = list(results)

    async def __call__(self, spec: RuleSpec, end_ns: int) -> Evaluation:
        self.calls += 1
        value, rows = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        exemplars = [("p-1", "ab" * 16, end_ns - SECOND_NS)]
        return Evaluation(value, rows, end_ns - spec.window, end_ns, exemplars)


class Checks:
    """CheckRule: accepts every rule unless told to refuse the next one."""

    def __init__(self) -> None:
        self.refusal: DomainError | None = None

    async def __call__(self, spec: RuleSpec) -> None:
        if self.refusal is not None:
            raise self.refusal


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    engine = make_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    METADATA.create_all(engine, tables=[RULES, ALERTS, EVENTS, COUNTERS])
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def checks() -> Checks:
    return Checks()


@pytest.fixture
async def alerting(
    db: Database, tmp_path: Path, clock: Clock, script: Script, checks: Checks
) -> AsyncIterator[Alerting]:
    settings = MonitorSettings(
        data_dir=tmp_path, bucket_s=300, alert_min_eval_gap_s=0.3, event_poll_s=0.05
    )
    found = Alerting(db, settings, check_rule=checks, evaluate=script, clock=clock)
    yield found
    await found.stop()


def spec(rule_id: str = "churn-f1", **fields: object) -> RuleSpec:
    values: dict[str, object] = {"model": "churn", "condition": F1_BELOW, "variant": "canary"}
    values.update(fields)
    return RuleSpec(id=rule_id, **values)  # type: ignore[arg-type]


async def events(alerting: Alerting, after: int = 0, **filters: str) -> list[AlertEvent]:
    """Every retained event after ``after`` (the stream, cut when it goes quiet)."""
    found: list[AlertEvent] = []
    stream = alerting.watch(after, filters.get("model", ""), filters.get("min_severity", ""))
    try:
        while True:
            found.append(await asyncio.wait_for(anext(stream), 0.2))
    except TimeoutError:
        return found
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


# validation ---------------------------------------------------------------------------
def field_of(error: InvalidArgument) -> str:
    return error.violations[0].field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": "Churn_F1"}, "alert_rule_id"),
        ({"model": ""}, "alert_rule.model"),
        ({"condition": Condition(None, "<", 0.8)}, "alert_rule.condition"),
        (
            {"condition": Condition(PerformanceMetric("f1"), "", 0.8)},
            "alert_rule.condition.comparator",
        ),
        (
            {"condition": Condition(PerformanceMetric("f2"), "<", 0.8)},
            "alert_rule.condition.performance.metric",
        ),
        (
            {"condition": Condition(PerformanceMetric("f1"), "<", float("nan"))},
            "alert_rule.condition.threshold",
        ),
        (
            {"condition": Condition(QualityMetric(""), ">", 0.1)},
            "alert_rule.condition.data_quality.measure",
        ),
        (
            {"condition": Condition(QualityMetric("OUT_OF_RANGE_RATE"), ">", 0.1)},
            "alert_rule.condition.data_quality.feature",
        ),
        (
            {"condition": Condition(QualityMetric("REJECTED_RATE", "age"), ">", 0.1)},
            "alert_rule.condition.data_quality.feature",
        ),
        (
            {"condition": Condition(FairnessMetric("DEMOGRAPHIC_PARITY_RATIO"), "<", 0.8)},
            "alert_rule.condition.fairness.feature",
        ),
        (
            {"condition": Condition(DriftMetric("age", "#9"), ">", 0.2)},
            "alert_rule.condition.drift.method",
        ),
        ({"window_ns": 7 * MINUTE_NS}, "alert_rule.window"),
        ({"window_ns": 0}, "alert_rule.window"),
        ({"min_samples": -1}, "alert_rule.min_samples"),
        ({"cooldown_ns": -SECOND_NS}, "alert_rule.cooldown"),
        ({"severity": "#7"}, "alert_rule.severity"),
        ({"labels": {"team": "x" * 64}}, "alert_rule.labels"),
        ({"labels": {"": "risk"}}, "alert_rule.labels"),
        ({"variant": "Canary!"}, "alert_rule.variant"),
        ({"action": RollbackCanary("Bad Name")}, "alert_rule.action.rollback_canary.deployment"),
    ],
)
async def test_an_invalid_rule_is_refused_naming_the_field(
    alerting: Alerting, changes: dict[str, object], field: str
) -> None:
    bad = dataclasses.replace(spec(), **changes)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as refused:
        await alerting.rules.create(bad, bad.id, "alice")
    assert field_of(refused.value) == field
    assert refused.value.message.startswith(field)


async def test_a_window_that_is_not_a_multiple_of_the_bucket_says_which_bucket(
    alerting: Alerting,
) -> None:
    with pytest.raises(InvalidArgument, match=r"multiple of the base bucket \(5m\), got 420s"):
        await alerting.rules.create(spec(window_ns=7 * MINUTE_NS), "churn-f1", "alice")


async def test_defaults_are_filled_in(alerting: Alerting) -> None:
    created = await alerting.rules.create(
        spec(window_ns=None, cooldown_ns=None, min_samples=0, severity=""), "churn-f1", "alice"
    )
    assert (created.spec.window, created.spec.cooldown) == (HOUR_NS, 15 * MINUTE_NS)
    assert (created.spec.min_samples, created.spec.severity) == (100, "WARNING")
    no_cooldown = await alerting.rules.create(spec("no-cooldown", cooldown_ns=0), "", "alice")
    assert no_cooldown.spec.cooldown == 0
    assert created.status.state == RuleState.UNSPECIFIED and created.created_by == "alice"


async def test_the_model_check_is_applied_and_nothing_is_stored_when_it_refuses(
    alerting: Alerting, checks: Checks
) -> None:
    checks.refusal = InvalidArgument("alert_rule.condition: 'age' is not a feature")
    with pytest.raises(InvalidArgument, match="not a feature"):
        await alerting.rules.create(spec(), "churn-f1", "alice")
    with pytest.raises(NotFound):
        await alerting.rules.get("churn-f1")


async def test_an_update_checks_the_model_again_only_when_what_it_watches_changes(
    alerting: Alerting, checks: Checks
) -> None:
    await alerting.rules.create(spec(), "churn-f1", "alice")
    checks.refusal = NotFound("model 'models/churn' not found")
    disabled = await alerting.rules.update("churn-f1", spec(disabled=True), ["disabled"], "", "bob")
    assert disabled.spec.disabled
    with pytest.raises(NotFound):
        await alerting.rules.update("churn-f1", spec(version=2), ["version"], "", "bob")


async def test_validate_only_returns_the_rule_without_creating_it(alerting: Alerting) -> None:
    checked = await alerting.rules.create(spec(), "churn-f1", "alice", validate_only=True)
    assert checked.spec.min_samples == 100
    with pytest.raises(NotFound):
        await alerting.rules.get("churn-f1")


# create, read, etags, paging ----------------------------------------------------------
async def test_create_get_and_already_exists(alerting: Alerting) -> None:
    created = await alerting.rules.create(spec(), "churn-f1", "alice")
    assert await alerting.rules.get("churn-f1") == created
    with pytest.raises(AlreadyExists, match="alertRules/churn-f1"):
        await alerting.rules.create(spec(), "churn-f1", "bob")
    chosen = await alerting.rules.create(spec(), "", "alice")
    assert chosen.spec.id.startswith("rule-") and chosen.spec.id != "churn-f1"


async def test_update_applies_the_mask_and_checks_the_etag(alerting: Alerting) -> None:
    created = await alerting.rules.create(spec(), "churn-f1", "alice")
    patch = spec(condition=Condition(PerformanceMetric("recall"), ">=", 0.6), description="new")
    updated = await alerting.rules.update(
        "churn-f1", patch, ["condition.threshold"], created.etag, "bob"
    )
    assert updated.spec.condition == Condition(PerformanceMetric("f1"), "<", 0.6)
    assert updated.spec.description == "" and updated.updated_by == "bob"
    assert updated.etag != created.etag
    with pytest.raises(Conflict, match="stale"):
        await alerting.rules.update("churn-f1", patch, ["description"], created.etag, "bob")
    with pytest.raises(Conflict):
        await alerting.rules.delete("churn-f1", created.etag, "bob")
    replaced = await alerting.rules.update("churn-f1", patch, [], "", "bob")  # every field
    assert replaced.spec.condition == patch.condition and replaced.spec.description == "new"


@pytest.mark.parametrize("path", ["model", "name", "status.state", "create_time", "etag"])
async def test_update_of_an_immutable_or_output_only_path_is_refused(
    alerting: Alerting, path: str
) -> None:
    await alerting.rules.create(spec(), "churn-f1", "alice")
    with pytest.raises(InvalidArgument, match="output only or immutable") as refused:
        await alerting.rules.update("churn-f1", spec(model="other"), [path], "", "bob")
    assert field_of(refused.value) == "update_mask"


async def test_update_of_an_unknown_path_or_into_an_invalid_rule_is_refused(
    alerting: Alerting,
) -> None:
    await alerting.rules.create(spec(), "churn-f1", "alice")
    with pytest.raises(InvalidArgument, match="unknown field 'colour'"):
        await alerting.rules.update("churn-f1", spec(), ["colour"], "", "bob")
    with pytest.raises(InvalidArgument) as refused:
        await alerting.rules.update("churn-f1", spec(window_ns=MINUTE_NS), ["window"], "", "bob")
    assert field_of(refused.value) == "alert_rule.window"
    with pytest.raises(NotFound):
        await alerting.rules.update("missing", spec(), ["description"], "", "bob")


async def test_rules_page_by_name_with_filters(alerting: Alerting) -> None:
    for rule_id in ("e", "c", "a", "d", "b"):
        await alerting.rules.create(spec(rule_id), rule_id, "alice")
    await alerting.rules.create(spec("x", model="fraud"), "x", "alice")
    await alerting.rules.create(spec("y", action=RollbackCanary("churn-web")), "y", "alice")
    await alerting.rules.create(spec("z", deployment="churn-web"), "z", "alice")
    seen, cursor = [], None
    while True:
        page, cursor = await alerting.rules.list_page("churn", "", 2, cursor)
        seen += [r.spec.id for r in page]
        if cursor is None:
            break
    assert seen == ["a", "b", "c", "d", "e", "y", "z"]
    by_deployment, _ = await alerting.rules.list_page("", "churn-web", 0, None)
    assert [r.spec.id for r in by_deployment] == ["y", "z"]
    _, token = await alerting.rules.list_page("churn", "", 2, None)
    with pytest.raises(InvalidArgument, match="page_token"):
        await alerting.rules.list_page("fraud", "", 2, token)
    with pytest.raises(InvalidArgument, match="page_size"):
        await alerting.rules.list_page("", "", -1, None)


# the state machine --------------------------------------------------------------------
async def evaluate(alerting: Alerting, clock: Clock, rule_id: str = "churn-f1") -> None:
    clock.advance(MINUTE_NS)
    await alerting.evaluate_rule(rule_id)


async def test_a_rule_fires_once_then_resolves_when_the_condition_clears(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec(), "churn-f1", "alice")
    script.then((0.71, 2310), (0.65, 2400), (0.83, 2500))
    await evaluate(alerting, clock)
    rule = await alerting.rules.get("churn-f1")
    assert rule.status.state == RuleState.FIRING and rule.status.value == 0.71
    alert = await alerting.rules.get_alert(rule.status.firing_alert)
    assert alert.state == AlertState.FIRING and (alert.value, alert.sample_count) == (0.71, 2310)
    assert alert.message == "f1 of churn/canary is 0.71 < 0.80 over 1h (2,310 labelled rows)"
    assert (alert.window_start, alert.window_end) == (clock.now - HOUR_NS, clock.now)
    assert alert.exemplars[0].prediction_id == "p-1" and alert.fire_time == clock.now

    await evaluate(alerting, clock)  # still holds: the same alert keeps firing
    assert (await alerting.rules.get("churn-f1")).status.firing_alert == alert.id
    await evaluate(alerting, clock)  # clears
    resolved = await alerting.rules.get_alert(alert.id)
    assert resolved.state == AlertState.RESOLVED and resolved.resolve_value == 0.83
    assert resolved.resolve_time == clock.now and "resolved: f1 is 0.83" in resolved.message
    rule = await alerting.rules.get("churn-f1")
    assert (rule.status.state, rule.status.firing_alert) == (RuleState.OK, 0)
    found = await events(alerting)
    assert [(e.sequence, e.type) for e in found] == [(1, EventType.FIRED), (2, EventType.RESOLVED)]
    assert found[1].alert.last_event_sequence == 2


async def test_too_few_rows_change_nothing(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec(), "churn-f1", "alice")
    script.then((0.5, 99), (0.5, 100), (0.95, 10), (float("nan"), 5000))
    await evaluate(alerting, clock)
    rule = await alerting.rules.get("churn-f1")
    assert (rule.status.state, rule.status.value, rule.status.sample_count) == (
        RuleState.INSUFFICIENT_DATA,
        None,
        99,
    )
    await evaluate(alerting, clock)  # enough rows: fires
    await evaluate(alerting, clock)  # would clear, but too few rows: still firing
    await evaluate(alerting, clock)  # no value at all: still firing
    rule = await alerting.rules.get("churn-f1")
    assert rule.status.state == RuleState.FIRING and rule.status.value is None
    assert [e.type for e in await events(alerting)] == [EventType.FIRED]


async def test_no_new_alert_within_the_cooldown(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec(cooldown_ns=10 * MINUTE_NS), "churn-f1", "alice")
    script.then((0.7, 500), (0.9, 500), (0.7, 500))
    for _ in range(3):  # fire, resolve, holds again 1 minute after resolving
        await evaluate(alerting, clock)
    rule = await alerting.rules.get("churn-f1")
    assert (rule.status.state, rule.status.value) == (RuleState.OK, 0.7)
    clock.advance(10 * MINUTE_NS)
    await evaluate(alerting, clock)
    assert (await alerting.rules.get("churn-f1")).status.state == RuleState.FIRING
    alerts, _ = await alerting.rules.list_alerts(AlertFilter(), 0, None)
    assert [a.state for a in alerts] == [AlertState.FIRING, AlertState.RESOLVED]


async def test_without_cooldown_it_fires_again_at_once(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec(cooldown_ns=0), "churn-f1", "alice")
    script.then((0.7, 500), (0.9, 500), (0.7, 500))
    for _ in range(3):
        await evaluate(alerting, clock)
    alerts, _ = await alerting.rules.list_alerts(AlertFilter(rule="churn-f1"), 0, None)
    assert len(alerts) == 2


async def test_disabling_resolves_the_firing_alert_and_stops_evaluation(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    created = await alerting.rules.create(spec(), "churn-f1", "alice")
    script.then((0.7, 500))
    await evaluate(alerting, clock)
    firing = (await alerting.rules.get("churn-f1")).status.firing_alert
    disabled = await alerting.rules.update(
        "churn-f1", spec(disabled=True), ["disabled"], created.etag, "bob"
    )
    assert disabled.status.state == RuleState.DISABLED and disabled.status.firing_alert == 0
    alert = await alerting.rules.get_alert(firing)
    assert alert.state == AlertState.RESOLVED and alert.resolve_value is None
    assert alert.message.endswith("resolved: rule disabled")
    calls = script.calls
    await evaluate(alerting, clock)
    assert script.calls == calls
    enabled = await alerting.rules.update("churn-f1", spec(), ["disabled"], "", "bob")
    assert enabled.status.state == RuleState.UNSPECIFIED


async def test_deleting_resolves_the_firing_alert_and_keeps_past_alerts(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec(), "churn-f1", "alice")
    script.then((0.7, 500))
    await evaluate(alerting, clock)
    firing = (await alerting.rules.get("churn-f1")).status.firing_alert
    await alerting.rules.delete("churn-f1", "", "bob")
    with pytest.raises(NotFound):
        await alerting.rules.get("churn-f1")
    alert = await alerting.rules.get_alert(firing)
    assert alert.state == AlertState.RESOLVED and "rule deleted by bob" in alert.message
    with pytest.raises(NotFound):
        await alerting.rules.delete("churn-f1", "", "bob")


async def test_an_evaluation_of_an_older_revision_is_dropped(
    alerting: Alerting, clock: Clock
) -> None:
    created = await alerting.rules.create(spec(), "churn-f1", "alice")
    stale = Evaluation(0.1, 1000, clock.now - HOUR_NS, clock.now)
    fired = await alerting.core.write(
        lambda store: transition(store, "churn-f1", created.revision + 1, stale, clock.now)
    )
    assert fired is None
    assert (await alerting.rules.get("churn-f1")).status.state == RuleState.UNSPECIFIED


async def test_concurrent_evaluations_fire_one_alert(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec(), "churn-f1", "alice")
    script.then((0.7, 500))
    clock.advance(MINUTE_NS)
    fired = await asyncio.gather(*(alerting.evaluate_rule("churn-f1") for _ in range(5)))
    assert sum(alert is not None for alert in fired) == 1
    alerts, _ = await alerting.rules.list_alerts(AlertFilter(), 0, None)
    assert len(alerts) == 1


async def test_an_action_without_a_registry_fails_and_is_retried_while_firing(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec(action=RollbackCanary("churn-web")), "churn-f1", "alice")
    script.then((0.7, 500))
    await evaluate(alerting, clock)
    firing = (await alerting.rules.get("churn-f1")).status.firing_alert
    assert (await alerting.rules.get_alert(firing)).actions[0].state == ActionState.PENDING
    delay = await alerting.actions.run_once(firing)
    result = (await alerting.rules.get_alert(firing)).actions[0]
    assert result.state == ActionState.FAILED and "no registry" in result.message
    assert delay == 1.0 and result.attempts == 1
    clock.advance(SECOND_NS)
    assert await alerting.actions.run_once(firing) == 2.0  # backoff doubles
    assert [e.type for e in await events(alerting)] == [
        EventType.FIRED,
        EventType.ACTION_UPDATED,  # PENDING -> FAILED; the same failure again is no event
    ]


# alerts: acknowledging, listing -------------------------------------------------------
async def test_the_first_acknowledgement_is_kept(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec(), "churn-f1", "alice")
    script.then((0.7, 500))
    await evaluate(alerting, clock)
    firing = (await alerting.rules.get("churn-f1")).status.firing_alert
    first = await alerting.rules.acknowledge(firing, "looking into it", "carol")
    again = await alerting.rules.acknowledge(firing, "me too", "dave")
    assert again == first and (first.acknowledged_by, first.acknowledge_note) == (
        "carol",
        "looking into it",
    )
    assert first.state == AlertState.FIRING and first.acknowledge_time == clock.now
    assert [e.type for e in await events(alerting)] == [EventType.FIRED, EventType.ACKNOWLEDGED]
    with pytest.raises(InvalidArgument, match="note"):
        await alerting.rules.acknowledge(firing, "x" * 1001, "carol")
    with pytest.raises(NotFound, match="alerts/99"):
        await alerting.rules.acknowledge(99, "", "carol")


async def test_alerts_are_listed_newest_first_with_filters_and_pages(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    for rule_id, severity in (("a", "INFO"), ("b", "CRITICAL"), ("c", "WARNING")):
        await alerting.rules.create(spec(rule_id, severity=severity, cooldown_ns=0), rule_id, "x")
    script.then((0.7, 500))
    for rule_id in ("a", "b", "c"):  # three alerts with the same fire time
        await alerting.evaluate_rule(rule_id)
    clock.advance(MINUTE_NS)
    await alerting.evaluate_rule("a")  # still firing: no new alert
    seen, cursor = [], None
    while True:
        page, cursor = await alerting.rules.list_alerts(AlertFilter(), 1, cursor)
        seen += [a.rule for a in page]
        if cursor is None:
            break
    assert seen == ["c", "b", "a"]
    severe, _ = await alerting.rules.list_alerts(AlertFilter(min_severity="WARNING"), 0, None)
    assert [a.rule for a in severe] == ["c", "b"]
    resolved, _ = await alerting.rules.list_alerts(AlertFilter(state=AlertState.RESOLVED), 0, None)
    later, _ = await alerting.rules.list_alerts(AlertFilter(start_time=clock.now), 0, None)
    assert resolved == [] and later == []


# the event stream ---------------------------------------------------------------------
async def test_watch_resumes_filters_and_refuses_positions_out_of_range(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec("a", severity="INFO"), "a", "x")
    await alerting.rules.create(spec("b", model="fraud", severity="CRITICAL"), "b", "x")
    script.then((0.7, 500))
    await alerting.evaluate_rule("a")
    await alerting.evaluate_rule("b")
    assert [e.sequence for e in await events(alerting, 1)] == [2]
    assert [e.alert.rule for e in await events(alerting, model="fraud")] == ["b"]
    assert [e.alert.rule for e in await events(alerting, min_severity="WARNING")] == ["b"]
    with pytest.raises(OutOfRange, match="beyond the newest"):
        await anext(alerting.watch(3, "", ""))
    clock.advance(31 * 24 * HOUR_NS)
    await alerting.scheduler.tick()  # forgets events older than 30 days
    with pytest.raises(OutOfRange, match="older than the retained history"):
        await anext(alerting.watch(1, "", ""))
    assert await events(alerting, 0) == []
    assert await events(alerting, 2) == []


async def test_watch_from_now_gets_live_events_only(
    alerting: Alerting, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec("a"), "a", "x")
    await alerting.rules.create(spec("b"), "b", "x")
    script.then((0.7, 500))
    await alerting.evaluate_rule("a")
    stream = alerting.watch(None, "", "")
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    await alerting.evaluate_rule("b")
    live = await asyncio.wait_for(pending, 2)
    assert (live.sequence, live.alert.rule) == (2, "b")
    await stream.aclose()  # type: ignore[attr-defined]


# scheduling ---------------------------------------------------------------------------
async def test_notify_coalesces_evaluations_and_never_blocks(
    alerting: Alerting, script: Script
) -> None:
    await alerting.rules.create(spec(), "churn-f1", "alice")
    await alerting.rules.create(spec("fraud", model="fraud"), "fraud", "alice")
    await alerting.rules.create(spec("off", disabled=True), "off", "alice")
    alerting.notify("churn")  # before start: ignored
    await alerting.start()  # the first round evaluates both enabled rules
    await asyncio.sleep(0.1)
    assert script.calls == 2
    for _ in range(20):
        assert alerting.notify("churn") is None  # type: ignore[func-returns-value]
    await asyncio.sleep(0.1)
    assert script.calls == 2  # within the 0.3 s gap: waiting, folded into one
    await asyncio.sleep(0.6)
    assert script.calls == 3
    await alerting.stop()
    alerting.notify("churn")
    await asyncio.sleep(0.4)
    assert script.calls == 3


def test_messages_read_as_a_person_would_write_them() -> None:
    drift = spec(condition=Condition(DriftMetric("age", "PSI"), ">", 0.2), version=3)
    assert alert_text.fired(drift, 0.314, 1) == (
        "psi drift of 'age' of churn v3/canary is 0.31 > 0.20 over 1h (1 row)"
    )
    quality = spec(condition=Condition(QualityMetric("MISSING_RATE"), ">=", 0.05), variant="")
    assert alert_text.fired(
        dataclasses.replace(quality, window_ns=90 * MINUTE_NS), 0.001, 10_000
    ) == ("missing rate of churn is 0.001 >= 0.05 over 1h30m (10,000 rows)")


async def test_due_actions_are_retried_by_any_replica_after_a_restart(
    alerting: Alerting, db: Database, tmp_path: Path, clock: Clock, script: Script
) -> None:
    await alerting.rules.create(spec(action=RollbackCanary("churn-web")), "churn-f1", "alice")
    script.then((0.7, 500))
    await alerting.start()  # the first round fires the rule and starts its action
    async with asyncio.timeout(5):
        while not (number := (await alerting.rules.get("churn-f1")).status.firing_alert):
            await asyncio.sleep(0.01)
        while (await alerting.rules.get_alert(number)).actions[0].state == ActionState.PENDING:
            await asyncio.sleep(0.01)
    await alerting.stop()  # the replica goes away before its retry
    settings = MonitorSettings(data_dir=tmp_path, alert_eval_interval_s=3600)
    other = Alerting(db, settings, check_rule=Checks(), evaluate=script, clock=clock)
    clock.advance(MINUTE_NS)
    await other.start()
    try:
        async with asyncio.timeout(5):
            while (await other.rules.get_alert(number)).actions[0].attempts < 2:
                await asyncio.sleep(0.01)
    finally:
        await other.stop()
