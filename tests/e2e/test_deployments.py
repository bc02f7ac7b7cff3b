"""Deployments through the three services as separate processes: a 70/30 split lands on
its weights, sticky keys keep their variant, a shadow that blocks never slows the caller
and is logged under its own variant, a worse canary is rolled back by the alert that
guards it, and labels sent by prediction id reach per-variant performance."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2

from keel.common.v1 import metric_pb2
from keel.inference.v1 import inference_pb2_grpc
from keel.monitor.v1 import alerts_pb2, reports_pb2
from keel.monitor.v1 import monitor_pb2 as mpb
from keel.monitor.v1 import monitor_pb2_grpc as mpb_grpc
from keel.oip.v2 import open_inference_pb2 as oip
from keel.oip.v2 import open_inference_pb2_grpc as oip_grpc
from keel.registry.v1 import deployment_pb2, event_pb2
from keel.registry.v1 import registry_pb2 as rpb
from tests.support.inference import raw_output, raw_request
from tests.support.monitor import feedback
from tests.support.registry import Client, xgboost_artifact
from tests.support.suite import (
    Suite,
    alert_events,
    fault_delays,
    first_event,
    guessing_artifact,
    infer_all,
    route,
    row_ids,
    rows,
    rows_counted,
    running_suite,
    scope,
    truth,
    until_counted,
    until_logged,
    until_served,
    wait_model_ready,
)

SHADOW_DELAY_S = 10.0
SLOW = "slow"  # the shadow test's own model: only its version 2 is delayed


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    tmp = tmp_path_factory.mktemp("suite")
    with running_suite(tmp, fault_delays({f"{SLOW}:2": SHADOW_DELAY_S})) as running:
        yield running


@dataclass
class Stubs:
    registry: Client
    inference: oip_grpc.GRPCInferenceServiceAsyncStub
    keel_inference: inference_pb2_grpc.InferenceServiceAsyncStub
    monitor: mpb_grpc.MonitorServiceAsyncStub


@asynccontextmanager
async def connected(suite: Suite) -> AsyncIterator[Stubs]:
    async with (
        grpc.aio.insecure_channel(suite.registry.address) as registry,
        grpc.aio.insecure_channel(suite.inference.address) as inference,
        grpc.aio.insecure_channel(suite.monitor.address) as monitor,
    ):
        yield Stubs(
            Client(registry),
            oip_grpc.GRPCInferenceServiceStub(inference),
            inference_pb2_grpc.InferenceServiceStub(inference),
            mpb_grpc.MonitorServiceStub(monitor),
        )


async def deploy(
    stubs: Stubs,
    name: str,
    model: str,
    routes: list[deployment_pb2.Route],
    **fields: object,
) -> deployment_pb2.Deployment:
    """Create the deployment and wait until inference serves it."""
    reply = await stubs.registry.stub.CreateDeployment(
        rpb.CreateDeploymentRequest(
            deployment=deployment_pb2.Deployment(model=f"models/{model}", routes=routes, **fields),  # type: ignore[arg-type]
            deployment_id=name,
        ),
        metadata=stubs.registry.md,
        timeout=10,
    )
    await wait_model_ready(stubs.inference, name)
    return reply.deployment


async def two_versions(stubs: Stubs, model: str, *, worse_second: bool = False) -> None:
    """Versions 1 and 2 of ``model``: two different XGBoost classifiers; with
    ``worse_second`` version 2 was trained on shuffled labels."""
    await stubs.registry.create_model(model)
    first = await stubs.registry.register(model, xgboost_artifact(trees=5, seed=0))
    second_artifact = guessing_artifact() if worse_second else xgboost_artifact(trees=9, seed=1)
    second = await stubs.registry.register(model, second_artifact)
    assert (first.version, second.version) == (1, 2)


# 1. A/B ---------------------------------------------------------------------------------
async def test_a_70_30_split_lands_within_two_points_over_10000_requests(suite: Suite) -> None:
    async with connected(suite) as stubs:
        await two_versions(stubs, "ab")
        await deploy(
            stubs,
            "ab-api",
            "ab",
            [route("ab", 1, 70, "control"), route("ab", 2, 30, "treatment")],
        )
        x = rows(2, seed=1)
        answers = await infer_all(stubs.inference, [raw_request("ab-api", x)] * 10_000)
    versions = Counter(a.model_version for a in answers)
    assert len(answers) == 10_000 and set(versions) == {"1", "2"}
    assert 0.68 <= versions["1"] / 10_000 <= 0.72, versions


# 2. Sticky ------------------------------------------------------------------------------
def keyed_request(name: str, key: str) -> oip.ModelInferRequest:
    request = raw_request(name, rows(1, seed=2))
    request.parameters["user"].string_param = key
    return request


async def test_a_sticky_key_always_gets_the_same_variant(suite: Suite) -> None:
    keys = [f"user-{i}" for i in range(300)] * 5
    order = np.random.default_rng(7).permutation(len(keys))  # a key's requests interleaved
    keys = [keys[i] for i in order]
    async with connected(suite) as stubs:
        await two_versions(stubs, "sticky")
        await deploy(
            stubs,
            "sticky-api",
            "sticky",
            [route("sticky", 1, 50, "control"), route("sticky", 2, 50, "treatment")],
            sticky_key_parameter="user",
        )
        answers = await infer_all(stubs.inference, [keyed_request("sticky-api", k) for k in keys])
    seen: defaultdict[str, set[str]] = defaultdict(set)
    for key, answer in zip(keys, answers, strict=True):
        seen[key].add(answer.model_version)
    assert len(seen) == 300
    changed = {key: versions for key, versions in seen.items() if len(versions) > 1}
    assert not changed, f"keys that changed variant: {changed}"
    shares = Counter(next(iter(versions)) for versions in seen.values())
    assert set(shares) == {"1", "2"} and min(shares.values()) > 0.3 * 300, shares


# 3. Shadow ------------------------------------------------------------------------------
async def test_a_blocked_shadow_never_slows_the_caller_and_is_logged_under_its_variant(
    suite: Suite,
) -> None:
    async with connected(suite) as stubs:
        await two_versions(stubs, SLOW)
        await deploy(
            stubs,
            "slow-api",
            SLOW,
            [route(SLOW, 1, 100, "control")],
            shadows=[deployment_pb2.Shadow(target=f"models/{SLOW}/versions/2", variant="shadow")],
        )
        sent = time.monotonic()
        answer = await stubs.inference.ModelInfer(
            raw_request("slow-api", rows(1, seed=3), request_id="shadowed-1"), timeout=30
        )
        took = time.monotonic() - sent
        # The caller gets version 1's answer at once, while version 2 blocks 10 s.
        assert (answer.model_version, answer.id) == ("1", "shadowed-1")
        assert took < 1.0, f"the call took {took:.2f}s"
        live = await until_logged(stubs.monitor, SLOW, "shadowed-1")
        # The shadow's answer follows once its model call returns, under its own variant
        # and its own id (the request's id @ the variant).
        shadow = await until_logged(stubs.monitor, SLOW, "shadowed-1@shadow", 40)
        arrived = time.monotonic() - sent
        counted = {
            variant: await rows_counted(stubs.monitor, scope(SLOW, variant=variant))
            for variant in ("control", "shadow")
        }
    assert (live.row.variant, live.row.version, live.row.deployment) == (
        "control",
        1,
        "deployments/slow-api",
    )
    assert (shadow.row.variant, shadow.row.version, shadow.row.deployment) == (
        "shadow",
        2,
        "deployments/slow-api",
    )
    assert arrived >= SHADOW_DELAY_S - 0.5, f"the shadow's row arrived after {arrived:.2f}s"
    assert counted == {"control": 1, "shadow": 1}


# 4 and 5. Canary, labels ----------------------------------------------------------------
@dataclass
class Traffic:
    """What the caller saw: per row, its prediction id, the version that answered, the
    label it got and the true label."""

    ids: list[str]
    versions: np.ndarray
    predicted: np.ndarray
    truth: np.ndarray

    def accuracy(self, version: int) -> float:
        chosen = self.versions == version
        return float(np.mean(self.predicted[chosen] == self.truth[chosen]))


async def send_traffic(
    stubs: Stubs, name: str, requests: int, rows_each: int, seed: int
) -> Traffic:
    x = rows(requests * rows_each, seed)
    batch = [
        raw_request(name, x[i * rows_each : (i + 1) * rows_each], request_id=f"{name}-{i}")
        for i in range(requests)
    ]
    answers = await infer_all(stubs.inference, batch)
    return Traffic(
        [pid for a in answers for pid in row_ids(a.id, rows_each)],
        np.repeat([int(a.model_version) for a in answers], rows_each),
        np.concatenate([raw_output(a, "label") for a in answers]),
        truth(x),
    )


async def send_labels(stubs: Stubs, model: str, traffic: Traffic) -> None:
    """Wait until the monitor holds every row, then send every true label."""
    await until_counted(stubs.monitor, scope(model), len(traffic.ids))
    reply = await stubs.monitor.LogFeedback(feedback(model, traffic.ids, traffic.truth), timeout=30)
    assert (reply.matched_count, reply.unmatched_count) == (len(traffic.ids), 0)


def accuracy_rule(model: str, deployment: str) -> alerts_pb2.AlertRule:
    return alerts_pb2.AlertRule(
        model=f"models/{model}",
        deployment=f"deployments/{deployment}",
        variant="canary",
        condition=alerts_pb2.AlertCondition(
            performance=alerts_pb2.PerformanceCondition(metric="accuracy"),
            comparator=metric_pb2.COMPARATOR_LESS,
            threshold=0.7,
        ),
        window=duration_pb2.Duration(seconds=3600),
        min_samples=100,
        severity=alerts_pb2.ALERT_SEVERITY_CRITICAL,
    )


async def test_a_worse_canary_is_rolled_back_by_the_alert_that_guards_it(
    suite: Suite,
) -> None:
    rule = "alertRules/canary-accuracy"
    async with connected(suite) as stubs:
        await two_versions(stubs, "canary", worse_second=True)
        await stubs.monitor.CreateAlertRule(
            mpb.CreateAlertRuleRequest(
                alert_rule=accuracy_rule("canary", "canary-api"), alert_rule_id="canary-accuracy"
            ),
            timeout=10,
        )
        deployed = await deploy(
            stubs,
            "canary-api",
            "canary",
            [route("canary", 1, 90, "control"), route("canary", 2, 10, "canary", canary=True)],
            guard_alert_rules=[rule],
        )
        changes = stubs.registry.stub.WatchEvents(
            rpb.WatchEventsRequest(models=["models/canary"]), timeout=120
        )
        first = await anext(aiter(changes))  # the stream starts at the current position
        assert first.WhichOneof("kind") == "heartbeat"
        watch = stubs.monitor.WatchAlerts(
            mpb.WatchAlertsRequest(model="models/canary"), timeout=120
        )
        traffic = await send_traffic(stubs, "canary-api", requests=500, rows_each=4, seed=4)
        assert (traffic.versions == 2).sum() >= 100  # the canary got its share
        assert traffic.accuracy(2) < 0.7 < traffic.accuracy(1)
        await send_labels(stubs, "canary", traffic)

        events = await alert_events(watch, rule)
        got = await stubs.registry.stub.GetDeployment(
            rpb.GetDeploymentRequest(name="deployments/canary-api"), timeout=10
        )
        change = await first_event(changes)
        audit = await stubs.registry.stub.ListAuditEntries(
            rpb.ListAuditEntriesRequest(
                filter='resource = "deployments/canary-api" '
                'AND action = "DEPLOYMENT_CANARY_ABORTED"'
            ),
            timeout=10,
        )
        served = await until_served(stubs.keel_inference, "canary-api", change.sequence)
        after = await send_traffic(stubs, "canary-api", requests=200, rows_each=1, seed=5)
        changes.cancel()
        watch.cancel()

    # The alert fired on the canary's accuracy and says what it did.
    assert events[0].type == alerts_pb2.ALERT_EVENT_TYPE_FIRED
    alert = events[-1].alert
    assert alert.state == alerts_pb2.ALERT_STATE_FIRING and alert.value < 0.7
    assert alert.variant == "canary" and alert.sample_count >= 100
    [result] = alert.action_results
    assert result.action.rollback_canary.deployment == "deployments/canary-api"
    assert result.state == alerts_pb2.ACTION_STATE_SUCCEEDED, result.message
    assert result.deployment_revision == got.deployment.revision == deployed.revision + 1
    assert "canary" in result.message
    # The registry holds the rollback: canary at 0, its weight given to control.
    weights = {r.variant: r.weight for r in got.deployment.routes}
    assert weights == {"control": 100, "canary": 0}
    # ...streamed to a watcher that was listening before the traffic...
    assert change.type == event_pb2.CHANGE_TYPE_DEPLOYMENT_CANARY_ABORTED
    assert change.resource == "deployments/canary-api" and change.actor == "keel-monitor"
    assert {r.variant: r.weight for r in change.deployment.routes} == weights
    # ...audited under the monitor's name, with the rule as the cause...
    [entry] = audit.entries
    assert (entry.sequence, entry.actor) == (change.sequence, "keel-monitor")
    assert rule in entry.reason
    after_state = deployment_pb2.Deployment()
    assert entry.after.Unpack(after_state)
    assert after_state.revision == got.deployment.revision
    # ...and followed by inference: every request now goes to control.
    assert {r.variant: r.weight for r in served.routes if not r.shadow} == weights
    assert set(after.versions.tolist()) == {1}


async def test_labels_by_prediction_id_reach_per_variant_performance(suite: Suite) -> None:
    async with connected(suite) as stubs:
        await two_versions(stubs, "labels", worse_second=True)
        await deploy(
            stubs,
            "labels-api",
            "labels",
            [route("labels", 1, 50, "control"), route("labels", 2, 50, "candidate")],
        )
        traffic = await send_traffic(stubs, "labels-api", requests=250, rows_each=4, seed=6)
        await send_labels(stubs, "labels", traffic)
        reports = {
            variant: (
                await stubs.monitor.ComputePerformance(
                    mpb.ComputePerformanceRequest(
                        scope=scope("labels", deployment="deployments/labels-api", variant=variant)
                    ),
                    timeout=10,
                )
            ).report
            for variant in ("control", "candidate")
        }
        compared = await stubs.monitor.CompareVariants(
            mpb.CompareVariantsRequest(
                scope=scope("labels", deployment="deployments/labels-api"),
                baseline_variant="control",
                candidate_variant="candidate",
                metrics=["accuracy"],
            ),
            timeout=10,
        )
    for variant, version in (("control", 1), ("candidate", 2)):
        sent = int((traffic.versions == version).sum())
        report = reports[variant]
        assert (report.prediction_count, report.labeled_count) == (sent, sent)
        accuracy = {m.name: m for m in report.metrics}["accuracy"]
        assert accuracy.sample_count == sent
        assert accuracy.value == pytest.approx(traffic.accuracy(version), abs=1e-9)
    [comparison] = compared.report.comparisons
    assert comparison.baseline.metric.sample_count == (traffic.versions == 1).sum()
    assert comparison.candidate.metric.sample_count == (traffic.versions == 2).sum()
    assert comparison.difference == pytest.approx(
        traffic.accuracy(2) - traffic.accuracy(1), abs=1e-9
    )
    assert comparison.verdict == reports_pb2.COMPARISON_VERDICT_CANDIDATE_WORSE
