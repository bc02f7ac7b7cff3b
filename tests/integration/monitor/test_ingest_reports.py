"""Predictions logged over gRPC, labels joined later, and the reports a user reads."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp
from tests.support.monitor import Monitor, batch, feedback, frame, labels_for, log_classifier
from tests.support.registry import rpc_error


def scope(name: str) -> rp.ReportScope:
    return rp.ReportScope(model=f"models/{name}")


async def test_drift_flags_exactly_the_shifted_feature(
    monitor: Monitor, registry_address: str
) -> None:
    version = await log_classifier(registry_address, "churn")
    x = frame(5000, 7, shift=0.8).to_numpy()
    ids = [f"p{i}" for i in range(len(x))]
    ack = (
        await monitor.stub.LogPredictionBatch(
            pb.LogPredictionBatchRequest(batch=batch("churn", version, x, ids, sequence=1)),
            timeout=30,
        )
    ).ack
    assert ack.outcome == ingest_pb2.BATCH_OUTCOME_APPLIED and ack.applied_rows == 5000
    reply = await monitor.stub.ComputeDrift(
        pb.ComputeDriftRequest(scope=scope("churn")), timeout=30
    )
    drifted = {f.feature: f.drifted for f in reply.report.features}
    assert drifted == {"x0": True, "x1": False, "x2": False, "x3": False}
    x0 = reply.report.features[0]
    assert x0.method == rp.DRIFT_METHOD_WASSERSTEIN and x0.threshold == pytest.approx(0.1)
    assert 0.6 < x0.statistic < 1.0
    assert reply.report.row_count == 5000 and reply.report.version == version
    assert reply.report.drifted_feature_count == 1 and not reply.report.dataset_drifted


async def test_resent_batch_is_counted_once(monitor: Monitor, registry_address: str) -> None:
    version = await log_classifier(registry_address, "churn")
    x = frame(200, 3).to_numpy()
    message = batch("churn", version, x, [f"p{i}" for i in range(200)], sequence=1)
    first = await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
    again = await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
    assert first.ack.outcome == ingest_pb2.BATCH_OUTCOME_APPLIED
    assert again.ack.outcome == ingest_pb2.BATCH_OUTCOME_DUPLICATE
    assert again.ack.duplicate_rows == 200 and again.ack.applied_through_sequence == 1
    # Unsequenced, the same ids are recognised within the join window.
    message.sequence = 0
    third = await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
    assert third.ack.applied_rows == 0 and third.ack.duplicate_rows == 200
    quality = await monitor.stub.ComputeDataQuality(
        pb.ComputeDataQualityRequest(scope=scope("churn"))
    )
    assert quality.report.row_count == 200


async def test_feedback_gives_performance_matching_sklearn(
    monitor: Monitor, registry_address: str
) -> None:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    objectives = ["f1 >= 0.99", "accuracy >= 0.5"]
    version = await log_classifier(registry_address, "churn", objectives=objectives)
    x = frame(3000, 11).to_numpy()
    ids = [f"p{i}" for i in range(len(x))]
    message = batch("churn", version, x, ids, sequence=1)
    await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
    rng = np.random.default_rng(5)
    truth = np.where(rng.random(len(x)) < 0.15, 1 - labels_for(x), labels_for(x))
    # Labels for unknown ids wait; a label sent twice counts once.
    reply = await monitor.stub.LogFeedback(feedback("churn", [*ids, "later"], [*truth, 1]))
    assert (reply.matched_count, reply.unmatched_count) == (3000, 1)
    again = await monitor.stub.LogFeedback(feedback("churn", ids[:10], truth[:10]))
    assert again.duplicate_count == 10 and again.matched_count == 0
    perf = await monitor.stub.ComputePerformance(pb.ComputePerformanceRequest(scope=scope("churn")))
    metrics = {m.name: m.value for m in perf.report.metrics}
    score = 1 / (1 + np.exp(-(x[:, 0] + 0.5 * x[:, 1])))
    predicted = (score >= 0.5).astype(int)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    assert metrics["f1"] == pytest.approx(f1_score(truth, predicted), abs=1e-12)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, score), abs=2e-3)
    assert perf.report.labeled_count == 3000 and perf.report.label_coverage == 1.0
    # The model's objectives, checked against production figures.
    f1, accuracy = perf.report.objectives
    assert f1.objective.metric == "f1" and not f1.passed
    assert f1.actual == pytest.approx(metrics["f1"])
    assert f1.message == f"f1 is {metrics['f1']:.4g} in production, not >= 0.99"
    assert accuracy.passed and accuracy.message == ""


async def test_unknown_model_and_bad_columns_are_refused(
    monitor: Monitor, registry_address: str
) -> None:
    version = await log_classifier(registry_address, "churn")
    x = frame(10, 3).to_numpy()
    missing = batch("nope", 1, x, [f"p{i}" for i in range(10)])
    error = await rpc_error(
        monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=missing))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    short = batch("churn", version, x, [f"p{i}" for i in range(10)])
    short.features[1].raw.data = short.features[1].raw.data[:-8]
    error = await rpc_error(
        monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=short))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x1" in (error.details() or "") and "Traceback" not in (error.details() or "")
    too_many = ingest_pb2.PredictionBatch(
        producer_id="p", model="models/churn", version=version, row_count=10_001
    )
    error = await rpc_error(
        monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=too_many))
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "row_count: expected at most 10000 rows, got 10001"
    error = await rpc_error(monitor.stub.ComputeDrift(pb.ComputeDriftRequest(scope=scope("ghost"))))
    assert error.code() == grpc.StatusCode.NOT_FOUND
