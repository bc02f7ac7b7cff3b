"""The alert RPCs over a real grpc.aio server that serves only them (every other RPC of
MonitorService answers UNIMPLEMENTED), on a database built by the monitor's migrations;
and the rollback action against a real registry. Metric values come from a scripted
Evaluate function."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.sdk.trace import TracerProvider

from keel.common.v1 import metric_pb2
from keel.monitor.v1 import alerts_pb2 as apb
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import monitor_pb2_grpc as pb_grpc
from keel.registry.v1 import deployment_pb2, event_pb2
from keel.registry.v1 import registry_pb2 as rpb
from keel.registry.v1 import registry_pb2_grpc as rpb_grpc
from services.common.db import Database, make_engine, upgrade
from services.common.server import ServerDeps, ServiceBinding, build_server
from services.monitor.actions import RegistryCanaries
from services.monitor.alert_records import Canaries, Evaluation, RuleSpec
from services.monitor.alerts import Alerting
from services.monitor.alerts_servicer import AlertRpcs
from services.monitor.settings import MonitorSettings
from tests.support.postgres import SKIP_REASON, admin_url, fresh_database
from tests.support.registry import Client, rpc_error, running_registry, xgboost_artifact

if TYPE_CHECKING:  # what the generated stubs are on a grpc.aio channel
    from keel.monitor.v1.monitor_pb2_grpc import MonitorServiceAsyncStub

MIGRATIONS = Path(__file__).parents[3] / "services" / "monitor" / "migrations"
SERVICE = pb.DESCRIPTOR.services_by_name["MonitorService"].full_name
USER = (("x-keel-user", "carol"),)


class AlertsOnly(AlertRpcs, pb_grpc.MonitorServiceServicer):
    def __init__(self, alerting: Alerting) -> None:
        self.alerting = alerting


class Script:
    """Evaluate: the same scripted (value, rows) for every rule until told otherwise."""

    def __init__(self) -> None:
        self.value: float | None = None
        self.rows = 0

    async def __call__(self, spec: RuleSpec, end_ns: int) -> Evaluation:
        return Evaluation(self.value, self.rows, end_ns - spec.window, end_ns)


async def accept(spec: RuleSpec) -> None:
    return None


@dataclass
class Served:
    stub: MonitorServiceAsyncStub
    alerting: Alerting
    script: Script


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
        return
    url = admin_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    with fresh_database(url) as database:
        yield database


@asynccontextmanager
async def serving(
    database_url: str, data_dir: Path, canaries: Canaries | None = None
) -> AsyncIterator[Served]:
    settings = MonitorSettings(port=0, metrics_port=None, data_dir=data_dir, event_poll_s=0.05)
    engine = make_engine(database_url)
    upgrade(engine, MIGRATIONS)
    script = Script()
    db = Database(engine)
    alerting = Alerting(db, settings, check_rule=accept, evaluate=script, canaries=canaries)
    servicer = AlertsOnly(alerting)  # type: ignore[abstract]  # the other RPCs: UNIMPLEMENTED
    binding = ServiceBinding(
        SERVICE, lambda server: pb_grpc.add_MonitorServiceServicer_to_server(servicer, server)
    )
    deps = ServerDeps("monitor", [binding])
    server, port = build_server(settings, tracer_provider=TracerProvider(), deps=deps)
    await server.start()
    await alerting.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(pb_grpc.MonitorServiceStub(channel), alerting, script)
    finally:
        await server.stop(None)
        await alerting.stop()
        # Waits for database work still running in threads, then disposes the engine: a
        # connection checked in after a bare dispose is left to the garbage collector, and
        # an open PostgreSQL connection then warns (ResourceWarning) in a later test.
        await db.aclose()


@pytest.fixture
async def served(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(database_url, tmp_path) as found:
        yield found


def rule(model: str = "churn", **fields: object) -> apb.AlertRule:
    condition = apb.AlertCondition(
        performance=apb.PerformanceCondition(metric="f1"),
        comparator=metric_pb2.COMPARATOR_LESS,
        threshold=0.8,
    )
    return apb.AlertRule(model=f"models/{model}", condition=condition, **fields)  # type: ignore[arg-type]


async def create(
    served: Served, rule_id: str, message: apb.AlertRule | None = None
) -> apb.AlertRule:
    request = pb.CreateAlertRuleRequest(alert_rule=message or rule(), alert_rule_id=rule_id)
    reply = await served.stub.CreateAlertRule(request, metadata=USER, timeout=10)
    return reply.alert_rule


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    return [v.field for d in status.details if d.Unpack(bad) for v in bad.field_violations]


# status codes -------------------------------------------------------------------------
async def test_rule_rpcs_answer_the_contract_status_codes(served: Served) -> None:
    created = await create(served, "churn-f1")
    assert created.name == "alertRules/churn-f1" and created.etag
    assert created.window.ToSeconds() == 3600 and created.min_samples == 100
    again = await rpc_error(create(served, "churn-f1"))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS
    missing = await rpc_error(served.stub.GetAlertRule(pb.GetAlertRuleRequest(name="alertRules/x")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    changed = apb.AlertRule(
        name=created.name, etag=created.etag, description="canary f1 below objective"
    )
    mask = field_mask_pb2.FieldMask(paths=["description"])
    updated = await served.stub.UpdateAlertRule(
        pb.UpdateAlertRuleRequest(alert_rule=changed, update_mask=mask)
    )
    assert updated.alert_rule.description == "canary f1 below objective"
    stale = await rpc_error(
        served.stub.UpdateAlertRule(pb.UpdateAlertRuleRequest(alert_rule=changed, update_mask=mask))
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    stale_delete = pb.DeleteAlertRuleRequest(name=created.name, etag=created.etag)
    assert (await rpc_error(served.stub.DeleteAlertRule(stale_delete))).code() == (
        grpc.StatusCode.ABORTED
    )
    immutable = field_mask_pb2.FieldMask(paths=["model"])
    changed.etag = ""
    refused = await rpc_error(
        served.stub.UpdateAlertRule(
            pb.UpdateAlertRuleRequest(alert_rule=changed, update_mask=immutable)
        )
    )
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(refused) == ["update_mask"]
    await served.stub.DeleteAlertRule(pb.DeleteAlertRuleRequest(name=created.name))
    gone = await rpc_error(
        served.stub.DeleteAlertRule(pb.DeleteAlertRuleRequest(name=created.name))
    )
    assert gone.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("message", "rule_id", "field"),
    [
        (rule(window=duration_pb2.Duration(seconds=420)), "r", "alert_rule.window"),
        (rule(), "Not An Id", "alert_rule_id"),
        (apb.AlertRule(model="models/churn"), "r", "alert_rule.condition"),
        (rule(deployment="churn-web"), "r", "alert_rule.deployment"),
        (rule(severity=9), "r", "alert_rule.severity"),
    ],
)
async def test_an_invalid_rule_is_invalid_argument_naming_the_field(
    served: Served, message: apb.AlertRule, rule_id: str, field: str
) -> None:
    refused = await rpc_error(create(served, rule_id, message))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(refused) == [field]
    assert (refused.details() or "").startswith(field)


async def test_bad_names_tokens_and_unserved_rpcs(served: Served) -> None:
    bad_name = await rpc_error(served.stub.GetAlert(pb.GetAlertRequest(name="alerts/seven")))
    assert bad_name.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(bad_name) == ["name"]
    bad_token = await rpc_error(
        served.stub.ListAlertRules(pb.ListAlertRulesRequest(page_token="garbage"))
    )
    assert violated_fields(bad_token) == ["page_token"]
    missing = await rpc_error(served.stub.GetAlert(pb.GetAlertRequest(name="alerts/7")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    unserved = await rpc_error(served.stub.ComputeDrift(pb.ComputeDriftRequest()))
    assert unserved.code() == grpc.StatusCode.UNIMPLEMENTED


# acknowledging and watching -------------------------------------------------------------
async def fire(served: Served, rule_id: str, value: float) -> int:
    served.script.value, served.script.rows = value, 500
    await served.alerting.evaluate_rule(rule_id)
    return (await served.alerting.rules.get(rule_id)).status.firing_alert


async def take(
    call: grpc.aio.UnaryStreamCall[pb.WatchAlertsRequest, pb.WatchAlertsResponse], n: int
) -> list[apb.AlertEvent]:
    """The next ``n`` events of a WatchAlerts call (the test fails if they do not come)."""
    found: list[apb.AlertEvent] = []
    async with asyncio.timeout(10):
        async for reply in call:
            found.append(reply.event)
            if len(found) == n:
                return found
    raise AssertionError(f"the stream ended after {found}")


async def test_acknowledging_records_the_caller_and_keeps_the_first(served: Served) -> None:
    await create(served, "churn-f1")
    number = await fire(served, "churn-f1", 0.5)
    name = f"alerts/{number}"
    first = await served.stub.AcknowledgeAlert(
        pb.AcknowledgeAlertRequest(name=name, note="rolling back"), metadata=USER
    )
    assert (first.alert.acknowledged_by, first.alert.acknowledge_note) == ("carol", "rolling back")
    assert first.alert.state == apb.ALERT_STATE_FIRING
    second = await served.stub.AcknowledgeAlert(
        pb.AcknowledgeAlertRequest(name=name, note="me too"), metadata=(("x-keel-user", "dave"),)
    )
    assert second.alert == first.alert
    listed = await served.stub.ListAlerts(pb.ListAlertsRequest(rule="alertRules/churn-f1"))
    assert [a.name for a in listed.alerts] == [name]
    assert listed.alerts[0].message == "f1 of churn is 0.50 < 0.80 over 1h (500 labelled rows)"


async def test_watch_resumes_after_a_disconnect_with_every_event_once_in_order(
    served: Served,
) -> None:
    for rule_id in ("a", "b", "c", "d"):
        await create(served, rule_id, rule(cooldown=duration_pb2.Duration(seconds=0)))
    first_alert = await fire(served, "a", 0.5)
    await fire(served, "b", 0.5)
    await served.stub.AcknowledgeAlert(pb.AcknowledgeAlertRequest(name=f"alerts/{first_alert}"))
    call = served.stub.WatchAlerts(pb.WatchAlertsRequest(after_sequence=0))
    before = await take(call, 2)
    call.cancel()  # the subscriber goes away having seen 2 events
    await fire(served, "c", 0.5)
    await fire(served, "a", 0.9)  # a resolves
    call = served.stub.WatchAlerts(pb.WatchAlertsRequest(after_sequence=before[-1].sequence))
    replayed = await take(call, 3)
    await fire(served, "d", 0.5)  # live
    live = await take(call, 1)
    call.cancel()
    events = before + replayed + live
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.type for e in events] == [
        apb.ALERT_EVENT_TYPE_FIRED,
        apb.ALERT_EVENT_TYPE_FIRED,
        apb.ALERT_EVENT_TYPE_ACKNOWLEDGED,
        apb.ALERT_EVENT_TYPE_FIRED,
        apb.ALERT_EVENT_TYPE_RESOLVED,
        apb.ALERT_EVENT_TYPE_FIRED,
    ]
    assert events[4].alert.resolve_value == 0.9 and events[4].alert.last_event_sequence == 5
    beyond = served.stub.WatchAlerts(pb.WatchAlertsRequest(after_sequence=7))
    refused = await rpc_error(take(beyond, 1))
    assert refused.code() == grpc.StatusCode.OUT_OF_RANGE


async def test_watch_from_now_and_filters(served: Served) -> None:
    await create(served, "churn-f1")
    await create(served, "fraud-f1", rule(model="fraud", severity=apb.ALERT_SEVERITY_CRITICAL))
    await fire(served, "churn-f1", 0.5)
    call = served.stub.WatchAlerts(pb.WatchAlertsRequest())
    severe = served.stub.WatchAlerts(
        pb.WatchAlertsRequest(after_sequence=0, min_severity=apb.ALERT_SEVERITY_CRITICAL)
    )
    await asyncio.sleep(0.3)  # both streams have taken their position
    await fire(served, "fraud-f1", 0.5)
    assert [e.sequence for e in await take(call, 1)] == [2]
    assert [e.alert.model for e in await take(severe, 1)] == ["models/fraud"]
    call.cancel()
    severe.cancel()


# the rollback action against a real registry --------------------------------------------
async def deploy_canary(registry: Client) -> None:
    await registry.create_model("churn")
    await registry.register("churn", xgboost_artifact(trees=5, seed=0))
    await registry.register("churn", xgboost_artifact(trees=9, seed=1))
    routes = [
        deployment_pb2.Route(target="models/churn/versions/1", weight=90, variant="control"),
        deployment_pb2.Route(
            target="models/churn/versions/2", weight=10, variant="canary", canary=True
        ),
    ]
    deployment = deployment_pb2.Deployment(model="models/churn", routes=routes)
    await registry.stub.CreateDeployment(
        rpb.CreateDeploymentRequest(deployment=deployment, deployment_id="churn"),
        metadata=registry.md,
    )


def rollback_rule(deployment: str) -> apb.AlertRule:
    action = apb.AlertAction(rollback_canary=apb.RollbackCanaryAction(deployment=deployment))
    return rule(variant="canary", action=action, severity=apb.ALERT_SEVERITY_CRITICAL)


async def settled_action(served: Served, number: int) -> apb.ActionResult:
    async with asyncio.timeout(10):
        while True:
            reply = await served.stub.GetAlert(pb.GetAlertRequest(name=f"alerts/{number}"))
            result = reply.alert.action_results[0]
            if result.state != apb.ACTION_STATE_PENDING:
                return result
            await asyncio.sleep(0.05)


async def canary_aborted_event(registry: Client) -> event_pb2.Event:
    call = registry.stub.WatchEvents(rpb.WatchEventsRequest(after_sequence=0))
    try:
        async with asyncio.timeout(10):
            async for reply in call:
                if reply.event.type == event_pb2.CHANGE_TYPE_DEPLOYMENT_CANARY_ABORTED:
                    return reply.event
    finally:
        call.cancel()
    raise AssertionError("no DEPLOYMENT_CANARY_ABORTED event")


async def test_rollback_canary_takes_the_canary_to_weight_zero_in_the_registry(
    database_url: str, tmp_path: Path
) -> None:
    registry_url = f"sqlite:///{tmp_path / 'registry.db'}"
    async with running_registry(registry_url, tmp_path / "registry") as (registry, port):
        await deploy_canary(registry)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            canaries = RegistryCanaries(rpb_grpc.RegistryServiceStub(channel))
            async with serving(database_url, tmp_path / "monitor", canaries) as served:
                missing = await rpc_error(create(served, "x", rollback_rule("deployments/nope")))
                assert missing.code() == grpc.StatusCode.NOT_FOUND
                await create(served, "canary-f1", rollback_rule("deployments/churn"))
                result = await settled_action(served, await fire(served, "canary-f1", 0.6))
                assert result.state == apb.ACTION_STATE_SUCCEEDED
                assert result.deployment_revision == 2
                assert result.message == (
                    "deployment 'churn': route 'canary' 10 -> 0, 'control' 90 -> 100 (revision 2)"
                )
                await create(served, "canary-recall", rollback_rule("deployments/churn"))
                again = await settled_action(served, await fire(served, "canary-recall", 0.6))
                assert again.state == apb.ACTION_STATE_SKIPPED and again.deployment_revision == 0
                events = await take(
                    served.stub.WatchAlerts(pb.WatchAlertsRequest(after_sequence=0)), 4
                )
        got = await registry.stub.GetDeployment(rpb.GetDeploymentRequest(name="deployments/churn"))
        assert {r.variant: r.weight for r in got.deployment.routes} == {"control": 100, "canary": 0}
        event = await canary_aborted_event(registry)
        assert event.actor == "keel-monitor" and event.deployment.revision == 2
        audit = await registry.stub.ListAuditEntries(
            rpb.ListAuditEntriesRequest(order_by="sequence desc")
        )
        assert "alertRules/canary-f1" in audit.entries[0].reason
    assert [e.type for e in events] == [
        apb.ALERT_EVENT_TYPE_FIRED,
        apb.ALERT_EVENT_TYPE_ACTION_UPDATED,
        apb.ALERT_EVENT_TYPE_FIRED,
        apb.ALERT_EVENT_TYPE_ACTION_UPDATED,
    ]


# several replicas on one database -------------------------------------------------------
async def test_replicas_fire_each_rule_once_and_number_events_without_gaps(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        serving(database_url, tmp_path / "a") as a,
        serving(database_url, tmp_path / "b") as b,
    ):
        rule_ids = [f"rule-{i}" for i in range(8)]
        for rule_id in rule_ids:
            await create(a, rule_id)
        watch_b = b.stub.WatchAlerts(pb.WatchAlertsRequest(after_sequence=0))
        for replica in (a, b):
            replica.script.value, replica.script.rows = 0.5, 500
        await asyncio.gather(*(r.alerting.evaluate_rule(i) for i in rule_ids for r in (a, b, a, b)))
        listed = await b.stub.ListAlerts(pb.ListAlertsRequest())
        assert sorted(x.rule for x in listed.alerts) == [f"alertRules/{i}" for i in rule_ids]
        await asyncio.gather(
            *(
                r.stub.AcknowledgeAlert(pb.AcknowledgeAlertRequest(name=x.name))
                for x in listed.alerts
                for r in (a, b)
            )
        )
        seen = await take(watch_b, 16)  # 8 fired, 8 acknowledged, from both replicas
        watch_b.cancel()
    assert [e.sequence for e in seen] == list(range(1, 17))
    assert (
        sorted(e.type for e in seen)
        == [apb.ALERT_EVENT_TYPE_FIRED] * 8 + [apb.ALERT_EVENT_TYPE_ACKNOWLEDGED] * 8
    )
