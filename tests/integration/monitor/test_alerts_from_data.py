"""Alert rules evaluated on real logged data: a performance rule fires when the labels
show the model is wrong, a drift rule when a feature shifts; both reach WatchAlerts."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
from google.protobuf import duration_pb2

from keel.common.v1 import metric_pb2
from keel.monitor.v1 import alerts_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.registry.v1 import deployment_pb2
from keel.registry.v1 import registry_pb2 as rpb
from keel.registry.v1 import registry_pb2_grpc as rpb_grpc
from tests.support.monitor import Monitor, batch, feedback, frame, labels_for, log_classifier


def rule(condition: alerts_pb2.AlertCondition, **fields: object) -> alerts_pb2.AlertRule:
    return alerts_pb2.AlertRule(
        model="models/churn",
        condition=condition,
        window=duration_pb2.Duration(seconds=3600),
        min_samples=100,
        severity=alerts_pb2.ALERT_SEVERITY_CRITICAL,
        **fields,  # type: ignore[arg-type]
    )


async def fired(monitor: Monitor, rule_name: str, timeout_s: float = 20) -> pb.ListAlertsResponse:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await monitor.stub.ListAlerts(pb.ListAlertsRequest(rule=rule_name), timeout=10)
        if found.alerts or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_a_worse_model_fires_the_f1_rule_and_watchers_see_it(
    monitor: Monitor, registry_address: str
) -> None:
    version = await log_classifier(registry_address, "churn")
    condition = alerts_pb2.AlertCondition(
        performance=alerts_pb2.PerformanceCondition(metric="f1"),
        comparator=metric_pb2.COMPARATOR_LESS,
        threshold=0.8,
    )
    created = await monitor.stub.CreateAlertRule(
        pb.CreateAlertRuleRequest(alert_rule=rule(condition), alert_rule_id="churn-f1")
    )
    assert created.alert_rule.name == "alertRules/churn-f1"
    watch = monitor.stub.WatchAlerts(pb.WatchAlertsRequest(after_sequence=0), timeout=30)
    x = frame(1000, 4).to_numpy()
    ids = [f"p{i}" for i in range(1000)]
    await monitor.stub.LogPredictionBatch(
        pb.LogPredictionBatchRequest(batch=batch("churn", version, x, ids))
    )
    # Half the labels contradict the model: its F1 falls far below 0.8.
    truth = labels_for(x)
    truth[::2] = 1 - truth[::2]
    await monitor.stub.LogFeedback(feedback("churn", ids, truth))
    found = await fired(monitor, "alertRules/churn-f1")
    assert len(found.alerts) == 1
    alert = found.alerts[0]
    assert alert.state == alerts_pb2.ALERT_STATE_FIRING and alert.value < 0.8
    assert alert.sample_count == 1000 and "f1" in alert.message
    event = await asyncio.wait_for(watch.read(), 10)
    assert isinstance(event, pb.WatchAlertsResponse)
    assert event.event.type == alerts_pb2.ALERT_EVENT_TYPE_FIRED
    assert event.event.alert.name == alert.name
    watch.cancel()


async def test_a_shifted_feature_fires_the_drift_rule(
    monitor: Monitor, registry_address: str
) -> None:
    version = await log_classifier(registry_address, "churn")
    condition = alerts_pb2.AlertCondition(
        drift=alerts_pb2.DriftCondition(feature="x0"),
        comparator=metric_pb2.COMPARATOR_GREATER_OR_EQUAL,
        threshold=0.1,
    )
    await monitor.stub.CreateAlertRule(
        pb.CreateAlertRuleRequest(alert_rule=rule(condition), alert_rule_id="x0-drift")
    )
    steady = frame(500, 8).to_numpy()
    await monitor.stub.LogPredictionBatch(
        pb.LogPredictionBatchRequest(
            batch=batch("churn", version, steady, [f"s{i}" for i in range(500)])
        )
    )
    # Evaluated after the data arrived: enough rows, no drift.
    async with asyncio.timeout(15):
        while True:
            status = await monitor.stub.GetAlertRule(
                pb.GetAlertRuleRequest(name="alertRules/x0-drift")
            )
            if status.alert_rule.status.state == alerts_pb2.ALERT_RULE_STATE_OK:
                break
            await asyncio.sleep(0.1)
    assert status.alert_rule.status.sample_count == 500
    shifted = frame(2000, 9, shift=1.0).to_numpy()
    await monitor.stub.LogPredictionBatch(
        pb.LogPredictionBatchRequest(
            batch=batch("churn", version, shifted, [f"d{i}" for i in range(2000)])
        )
    )
    found = await fired(monitor, "alertRules/x0-drift")
    assert found.alerts and found.alerts[0].value >= 0.1
    assert np.isfinite(found.alerts[0].value)


async def test_a_rule_guarding_a_deployment_rolls_its_canary_back(
    monitor: Monitor, registry_address: str
) -> None:
    await log_classifier(registry_address, "churn")
    canary = await log_classifier(registry_address, "churn")
    routes = [
        deployment_pb2.Route(target="models/churn/versions/1", weight=90, variant="control"),
        deployment_pb2.Route(
            target=f"models/churn/versions/{canary}", weight=10, variant="canary", canary=True
        ),
    ]
    async with grpc.aio.insecure_channel(registry_address) as channel:
        registry = rpb_grpc.RegistryServiceStub(channel)
        await registry.CreateDeployment(
            rpb.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(
                    model="models/churn", routes=routes, guard_alert_rules=["alertRules/canary-f1"]
                ),
                deployment_id="churn",
            )
        )
        condition = alerts_pb2.AlertCondition(
            performance=alerts_pb2.PerformanceCondition(metric="f1"),
            comparator=metric_pb2.COMPARATOR_LESS,
            threshold=0.8,
        )
        # No action on the rule itself: the deployment names it as a guard.
        await monitor.stub.CreateAlertRule(
            pb.CreateAlertRuleRequest(
                alert_rule=rule(condition, variant="canary"), alert_rule_id="canary-f1"
            )
        )
        await asyncio.sleep(1.5)  # the monitor reads the deployments' guards (every 0.2 s)
        x = frame(500, 12).to_numpy()
        ids = [f"c{i}" for i in range(500)]
        message = batch("churn", canary, x, ids, variant="canary", deployment="deployments/churn")
        await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
        await monitor.stub.LogFeedback(feedback("churn", ids, 1 - labels_for(x)))
        found = await fired(monitor, "alertRules/canary-f1")
        assert found.alerts, "the guarding rule did not fire"
        async with asyncio.timeout(15):
            while True:
                got = await registry.GetDeployment(
                    rpb.GetDeploymentRequest(name="deployments/churn")
                )
                weights = {r.variant: r.weight for r in got.deployment.routes}
                if weights["canary"] == 0:
                    break
                await asyncio.sleep(0.1)
        assert weights == {"control": 100, "canary": 0}
        alert = (await monitor.stub.GetAlert(pb.GetAlertRequest(name=found.alerts[0].name))).alert
        assert [r.action.rollback_canary.deployment for r in alert.action_results] == [
            "deployments/churn"
        ]
