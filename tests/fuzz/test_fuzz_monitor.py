"""Every RPC of keel.monitor.v1.MonitorService, fuzzed against a real monitor.

The monitor (SQLite) follows a real registry where model ``churn`` version 1 is a
logistic regression on x0..x3 with a reference profile; it holds 200 logged predictions
(``p0``..``p199``), labels for them and alert rule ``alertRules/churn-f1``. Requests are
random messages, plausible ones, and valid ones with a field or two broken; aggregate
buckets exported by the monitor come back with their state truncated or flipped. Model
``sentinel``, which no request names, must still take a batch and report it after.

``KEEL_FUZZ_EXAMPLES=10000 .venv/bin/pytest tests/fuzz/test_fuzz_monitor.py`` runs the
slow suite (see tests/fuzz/harness.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from hypothesis import strategies as st

from keel.common.v1 import metric_pb2
from keel.monitor.v1 import aggregates_pb2, ingest_pb2
from keel.monitor.v1 import alerts_pb2 as apb
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import monitor_pb2_grpc as pb_grpc
from keel.monitor.v1 import reports_pb2 as rp
from tests.fuzz.harness import (
    TIMEOUT_S,
    Call,
    Rpc,
    Tally,
    call,
    calls,
    examples_per_rpc,
    fuzz,
    rpcs,
)
from tests.fuzz.servers import SERVING, ServerThread, channel_to, health, tracer_provider
from tests.support.fuzzing import (
    Hints,
    broken_bytes,
    broken_names,
    requests,
    sequence_mutants,
)
from tests.support.monitor import (
    batch,
    feedback,
    frame,
    labels_for,
    log_classifier,
    running_monitor,
)
from tests.support.registry import running_registry

pytestmark = pytest.mark.timeout(TIMEOUT_S)
SERVICE = pb.DESCRIPTOR.services_by_name["MonitorService"]
RPCS = rpcs(SERVICE, endless=("WatchAlerts",))
IDS = [f"p{i}" for i in range(200)]
FEATURES = ["x0", "x1", "x2", "x3"]


@dataclass(frozen=True)
class Stack:
    address: str
    batch: ingest_pb2.PredictionBatch  # of model churn, version 1, rows p0..p199
    buckets: tuple[aggregates_pb2.AggregateBucket, ...]  # exported, as another monitor's


def _rule() -> apb.AlertRule:
    condition = apb.AlertCondition(
        performance=apb.PerformanceCondition(metric="f1"),
        comparator=metric_pb2.COMPARATOR_LESS,
        threshold=0.8,
    )
    return apb.AlertRule(
        model="models/churn",
        condition=condition,
        window=duration_pb2.Duration(seconds=3600),
        labels={"team": "risk"},
    )


def timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    now = int(time.time())
    return st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.one_of(st.integers(now - 86_400, now + 600), st.integers(0, 2**33)),
        nanos=st.integers(0, 999_999_999),
    )


def durations() -> st.SearchStrategy[duration_pb2.Duration]:
    seconds = st.sampled_from([0, 1, 300, 600, 3600, 7200, 86_400, 10**9, -300])
    return st.builds(duration_pb2.Duration, seconds=seconds)


def hints(stack: Stack) -> Hints:
    states = [bucket.state for bucket in stack.buckets] or [b"\x00"]
    return {
        "model": broken_names(["models/churn"]),
        "name": broken_names(["alertRules/churn-f1", "alerts/1"]),
        "rule": broken_names(["alertRules/churn-f1"]),
        "deployment": broken_names(["deployments/churn-api"]),
        "variant": st.sampled_from(["a", "b", ""]),
        "baseline_variant": st.sampled_from(["a", "b"]),
        "candidate_variant": st.sampled_from(["a", "b"]),
        "version": st.sampled_from([1, 0, 2, -1]),
        "producer_id": st.sampled_from(["fuzz-producer", "inference-1", ""]),
        "prediction_id": st.sampled_from([*IDS[:3], "unknown"]),
        "Column.name": st.sampled_from([*FEATURES, "nope", ""]),
        "features": st.sampled_from([*FEATURES, "nope"]),
        "feature": st.sampled_from([*FEATURES, "nope"]),
        "metric": st.sampled_from(["f1", "accuracy", "auc", "precision", "log_loss", "nope"]),
        "metrics": st.sampled_from(["f1", "accuracy", "auc", "nope"]),
        "row_count": st.sampled_from([200, 1, 0, -1, 10**9]),
        "time_unix_nanos": st.just(time.time_ns()),
        "source_id": st.sampled_from(["other-monitor", ""]),
        "state_format": st.sampled_from([stack.buckets[0].state_format if stack.buckets else ""]),
        "reference_digest": st.sampled_from([b.reference_digest for b in stack.buckets] or [""]),
        "AggregateBucket.state": broken_bytes(states),
        "google.protobuf.Timestamp": timestamps(),
        "google.protobuf.Duration": durations(),
    }


def seeds(stack: Stack) -> dict[str, list[Any]]:
    """Valid requests of every RPC, to send as they are or with a field or two broken."""
    scope = rp.ReportScope(model="models/churn", version=1)
    labels = feedback("churn", IDS[:50], labels_for(frame(200, 3).to_numpy())[:50])
    mask = field_mask_pb2.FieldMask(paths=["description", "threshold"])
    rule = _rule()
    rule.name = "alertRules/churn-f1"
    return {
        "LogPredictions": [],
        "LogPredictionBatch": [pb.LogPredictionBatchRequest(batch=stack.batch)],
        "LogFeedback": [labels],
        "GetPrediction": [pb.GetPredictionRequest(model="models/churn", prediction_id="p1")],
        "ComputeDrift": [
            pb.ComputeDriftRequest(
                scope=scope, options=rp.DriftOptions(features=["x0"], include_bins=True)
            )
        ],
        "ComputeDataQuality": [pb.ComputeDataQualityRequest(scope=scope, features=["x1"])],
        "ComputePerformance": [
            pb.ComputePerformanceRequest(
                scope=scope, options=rp.PerformanceOptions(decision_threshold=0.3, per_class=True)
            )
        ],
        "ComputeFairness": [
            pb.ComputeFairnessRequest(scope=scope, options=rp.FairnessOptions(features=["x0"]))
        ],
        "CompareVariants": [
            pb.CompareVariantsRequest(scope=scope, baseline_variant="a", candidate_variant="b")
        ],
        "CreateAlertRule": [pb.CreateAlertRuleRequest(alert_rule=_rule(), alert_rule_id="r-1")],
        "GetAlertRule": [pb.GetAlertRuleRequest(name="alertRules/churn-f1")],
        "ListAlertRules": [pb.ListAlertRulesRequest(model="models/churn", page_size=1)],
        "UpdateAlertRule": [pb.UpdateAlertRuleRequest(alert_rule=rule, update_mask=mask)],
        "DeleteAlertRule": [pb.DeleteAlertRuleRequest(name="alertRules/r-1")],
        "GetAlert": [pb.GetAlertRequest(name="alerts/1")],
        "ListAlerts": [pb.ListAlertsRequest(model="models/churn", rule="alertRules/churn-f1")],
        "AcknowledgeAlert": [pb.AcknowledgeAlertRequest(name="alerts/1", note="seen")],
        "WatchAlerts": [pb.WatchAlertsRequest(after_sequence=0, model="models/churn")],
        "ExportAggregates": [
            pb.ExportAggregatesRequest(model="models/churn", version=1, include_merged=True)
        ],
        "MergeAggregates": [pb.MergeAggregatesRequest(buckets=stack.buckets)],
    }


MIN_INT64 = -(2**63)
OPEN = pb.LogPredictionsRequest(open=ingest_pb2.LogStreamOpen(producer_id="fuzz-producer"))
REGRESSIONS = {  # what the fuzzer found once, sent on every run
    "LogPredictions": [Call((OPEN, OPEN), ())],
    "LogFeedback": [call(pb.LogFeedbackRequest(model="models/churn/churn"))],
    "ListAlerts": [
        call(pb.ListAlertsRequest(end_time=timestamp_pb2.Timestamp(seconds=MIN_INT64))),
        call(pb.ListAlertsRequest(end_time=timestamp_pb2.Timestamp(seconds=9_223_372_037))),
    ],
    "ComputeDrift": [
        call(
            pb.ComputeDriftRequest(
                scope=rp.ReportScope(model="models/churn"),
                options=rp.DriftOptions(numeric_method=-(2**31)),  # type: ignore[arg-type]
            )
        ),
        call(
            pb.ComputeDriftRequest(
                scope=rp.ReportScope(
                    model="models/churn", start_time=timestamp_pb2.Timestamp(seconds=MIN_INT64)
                )
            )
        ),
    ],
    "ComputeFairness": [
        call(
            pb.ComputeFairnessRequest(
                scope=rp.ReportScope(
                    model="models/churn",
                    end_time=timestamp_pb2.Timestamp(seconds=9_007_199_254_654_500),
                )
            )
        )
    ],
    "ExportAggregates": [
        call(
            pb.ExportAggregatesRequest(
                model="models/churn", start_time=timestamp_pb2.Timestamp(seconds=MIN_INT64)
            )
        )
    ],
    "GetAlert": [call(pb.GetAlertRequest(name="alerts/²"))],
}


def log_streams(stack: Stack) -> list[list[pb.LogPredictionsRequest]]:
    opening = pb.LogPredictionsRequest(open=ingest_pb2.LogStreamOpen(producer_id="fuzz-producer"))
    first, second = ingest_pb2.PredictionBatch(), ingest_pb2.PredictionBatch()
    first.CopyFrom(stack.batch)
    first.producer_id, first.sequence = "fuzz-producer", 1
    second.CopyFrom(first)
    second.sequence = 2
    return [
        [opening, pb.LogPredictionsRequest(batch=first), pb.LogPredictionsRequest(batch=second)]
    ]


def strategy(rpc: Rpc, stack: Stack) -> st.SearchStrategy[Any]:
    found = seeds(stack)
    assert set(found) == {r.name for r in RPCS}, "a seed list for every RPC"
    hinted = hints(stack)
    streams = sequence_mutants(log_streams(stack), hinted) if rpc.method.client_streaming else None
    return calls(rpc, requests(rpc.method.input_type, hinted, found[rpc.name]), streams)


@asynccontextmanager
async def monitor_stack(root: Path) -> AsyncIterator[Stack]:
    url, traced = f"sqlite:///{root / 'r.db'}", tracer_provider()
    async with running_registry(url, root / "registry", provider=traced) as (_, port):
        registry = f"127.0.0.1:{port}"
        await log_classifier(registry, "churn")
        await log_classifier(registry, "sentinel")
        url = f"sqlite:///{root / 'm.db'}"
        async with running_monitor(registry, url, root / "m", provider=traced) as monitor:
            x = frame(200, 3).to_numpy()
            logged = batch("churn", 1, x, IDS, sequence=1, variant="a")
            await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=logged))
            await monitor.stub.LogFeedback(feedback("churn", IDS, labels_for(x)))
            await monitor.stub.CreateAlertRule(
                pb.CreateAlertRuleRequest(alert_rule=_rule(), alert_rule_id="churn-f1")
            )
            buckets: list[aggregates_pb2.AggregateBucket] = []
            export = pb.ExportAggregatesRequest(model="models/churn", version=1)
            async for part in monitor.stub.ExportAggregates(export, timeout=30):
                buckets.extend(part.buckets)
            for bucket in buckets:
                bucket.source_id = "other-monitor"
            yield Stack(monitor.address, logged, tuple(buckets))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("fuzz-monitor")
    with ServerThread(lambda: monitor_stack(root)) as found:
        yield found


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with channel_to(stack.address) as found:
        yield found


@pytest.fixture(scope="module")
def tally(tallies: dict[str, Tally]) -> Tally:
    return tallies.setdefault("monitor", Tally("monitor"))


@pytest.mark.parametrize("rpc", RPCS, ids=[rpc.name for rpc in RPCS])
def test_every_answer_is_deliberate(
    channel: grpc.Channel, stack: Stack, tally: Tally, rpc: Rpc, request: pytest.FixtureRequest
) -> None:
    nodeid, found = request.node.nodeid, REGRESSIONS.get(rpc.name, [])
    fuzz(channel, rpc, strategy(rpc, stack), examples_per_rpc(RPCS), tally, nodeid, found)
    assert health(channel, SERVICE.full_name) == SERVING


def test_the_monitor_is_healthy_and_correct_after(channel: grpc.Channel) -> None:
    assert health(channel) == SERVING
    stub = pb_grpc.MonitorServiceStub(channel)
    x = frame(120, 4).to_numpy()
    ids = [f"s{i}" for i in range(120)]
    logged = batch("sentinel", 1, x, ids, producer="sentinel-check", sequence=1)
    ack = stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=logged), timeout=30).ack
    assert ack.outcome == ingest_pb2.BATCH_OUTCOME_APPLIED and ack.applied_rows == 120
    scope = rp.ReportScope(model="models/sentinel")
    report = stub.ComputeDataQuality(pb.ComputeDataQualityRequest(scope=scope), timeout=30)
    assert report.report.row_count == 120
