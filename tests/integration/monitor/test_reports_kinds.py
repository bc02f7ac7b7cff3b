"""Reports for every kind of model a user logs: a regressor's errors and a multiclass
model's per-class figures match scikit-learn, fairness per group of a protected feature,
two variants compared, a logged row read back, drift in p-value mode."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import numpy as np
import pytest

from keel.monitor.v1 import ingest_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.monitor.v1 import reports_pb2 as rp
from tests.support.monitor import Monitor, batch, feedback, frame, labels_for, log_classifier
from tests.support.monitor_batches import column_raw, column_strings
from tests.support.registry import rpc_error


def scope(**fields: object) -> rp.ReportScope:
    return rp.ReportScope(model="models/m", **fields)  # type: ignore[arg-type]


async def log_model(registry_address: str, model: Any, x: Any, y: Any, **extra: Any) -> int:
    from keel.client import Keel

    def register() -> int:
        client = Keel(registry=registry_address)
        try:
            return int(client.log_model(model, "m", x, y, x, y, cv=None, **extra).version)
        finally:
            client.close()

    return await asyncio.to_thread(register)


def outputs_batch(version: int, x: np.ndarray, ids: list[str]) -> ingest_pb2.PredictionBatch:
    n = len(x)
    return ingest_pb2.PredictionBatch(
        producer_id="p",
        model="models/m",
        version=version,
        row_count=n,
        prediction_ids=column_strings("", ids),
        time_unix_nanos=[time.time_ns()] * n,
        features=[column_raw(f"x{i}", x[:, i].astype(np.float64)) for i in range(x.shape[1])],
    )


async def test_regression_errors_match_sklearn(monitor: Monitor, registry_address: str) -> None:
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    train = frame(1000, 1)
    y = 3 * train["x0"] - train["x1"] + np.random.default_rng(0).normal(0, 0.5, 1000)
    model = LinearRegression().fit(train, y)
    version = await log_model(registry_address, model, train, y)
    current = frame(2000, 2)
    x = current.to_numpy()
    predicted = model.predict(current)
    message = outputs_batch(version, x, [f"r{i}" for i in range(2000)])
    message.outputs.prediction.CopyFrom(column_raw("", predicted))
    await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
    truth = 3 * x[:, 0] - x[:, 1] + np.random.default_rng(1).normal(0, 0.7, 2000)
    request = pb.LogFeedbackRequest(model="models/m", row_count=2000)
    request.prediction_ids.CopyFrom(column_strings("", [f"r{i}" for i in range(2000)]))
    request.labels.CopyFrom(column_raw("", truth))
    await monitor.stub.LogFeedback(request)
    report = (
        await monitor.stub.ComputePerformance(pb.ComputePerformanceRequest(scope=scope()))
    ).report
    found = {m.name: m.value for m in report.metrics}
    assert found["rmse"] == pytest.approx(mean_squared_error(truth, predicted) ** 0.5, rel=1e-9)
    assert found["mae"] == pytest.approx(mean_absolute_error(truth, predicted), rel=1e-9)
    assert found["r2"] == pytest.approx(r2_score(truth, predicted), rel=1e-9)
    drift = (await monitor.stub.ComputeDrift(pb.ComputeDriftRequest(scope=scope()))).report
    assert drift.label.current_count == 2000 and not drift.label.drifted


async def test_multiclass_per_class_figures_match_sklearn(
    monitor: Monitor, registry_address: str
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    train = frame(1500, 3)
    y = np.digitize(train["x0"] + train["x1"], [-0.7, 0.7])
    model = LogisticRegression(max_iter=500).fit(train, y)
    version = await log_model(registry_address, model, train, y)
    current = frame(1500, 4)
    x = current.to_numpy()
    probabilities = model.predict_proba(current)
    predicted = probabilities.argmax(axis=1)
    ids = [f"c{i}" for i in range(1500)]
    message = outputs_batch(version, x, ids)
    message.outputs.label.CopyFrom(column_raw("", predicted.astype(np.int64)))
    message.outputs.probabilities.extend(column_raw("", probabilities[:, k]) for k in range(3))
    await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
    truth = np.digitize(
        x[:, 0] + x[:, 1] + np.random.default_rng(2).normal(0, 0.4, 1500), [-0.7, 0.7]
    )
    request = pb.LogFeedbackRequest(model="models/m", row_count=1500)
    request.prediction_ids.CopyFrom(column_strings("", ids))
    request.labels.CopyFrom(column_strings("", [str(t) for t in truth]))
    await monitor.stub.LogFeedback(request)
    report = (
        await monitor.stub.ComputePerformance(pb.ComputePerformanceRequest(scope=scope()))
    ).report
    found = {m.name: m.value for m in report.metrics}
    assert found["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert found["f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    precision, recall, _, support = precision_recall_fscore_support(
        truth, predicted, zero_division=0
    )
    assert [c.support for c in report.per_class] == list(support)
    per_class_precision = [
        next(m.value for m in c.metrics if m.name == "precision") for c in report.per_class
    ]
    assert per_class_precision == pytest.approx(list(precision))
    assert list(report.confusion.counts) == list(np.bincount(truth * 3 + predicted, minlength=9))


async def test_fairness_per_group_of_a_protected_feature(
    monitor: Monitor, registry_address: str
) -> None:
    version = await log_classifier(
        registry_address, "m", protected=["x1"], objectives=["demographic_parity_ratio >= 0.8"]
    )
    x = frame(4000, 5).to_numpy()
    ids = [f"f{i}" for i in range(4000)]
    await monitor.stub.LogPredictionBatch(
        pb.LogPredictionBatchRequest(batch=batch("m", version, x, ids))
    )
    await monitor.stub.LogFeedback(feedback("m", ids, labels_for(x)))
    report = (await monitor.stub.ComputeFairness(pb.ComputeFairnessRequest(scope=scope()))).report
    (feature,) = report.features
    assert feature.feature == "x1" and len(feature.groups) >= 5
    score = 1 / (1 + np.exp(-(x[:, 0] + 0.5 * x[:, 1])))
    rates = [g.selection_rate for g in feature.groups if not g.excluded]
    # The score rises with x1, so the groups' selection rates differ widely.
    assert feature.demographic_parity_difference == pytest.approx(max(rates) - min(rates))
    assert feature.demographic_parity_difference > 0.2 and not feature.four_fifths_passed
    (objective,) = report.objectives
    assert not objective.passed
    assert objective.actual == pytest.approx(feature.demographic_parity_ratio)
    assert objective.message.startswith("feature 'x1': demographic_parity_ratio is ")
    assert objective.message.endswith(", not >= 0.8")
    assert sum(g.row_count for g in feature.groups) == 4000
    assert sum(g.true_positives for g in feature.groups) == int(
        ((score >= 0.5) & (labels_for(x) == 1)).sum()
    )
    error = await rpc_error(
        monitor.stub.ComputeFairness(
            pb.ComputeFairnessRequest(scope=scope(), options=rp.FairnessOptions(features=["x0"]))
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "x0" in (error.details() or "")


async def test_two_variants_compared(monitor: Monitor, registry_address: str) -> None:
    version = await log_classifier(registry_address, "m")
    rng = np.random.default_rng(6)
    for variant, flip in (("control", 0.1), ("canary", 0.35)):
        x = frame(3000, 7 if variant == "control" else 8).to_numpy()
        ids = [f"{variant}{i}" for i in range(3000)]
        message = batch("m", version, x, ids, variant=variant, deployment="deployments/m")
        await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
        truth = labels_for(x)
        wrong = rng.random(3000) < flip
        truth[wrong] = 1 - truth[wrong]
        await monitor.stub.LogFeedback(feedback("m", ids, truth))
    reply = await monitor.stub.CompareVariants(
        pb.CompareVariantsRequest(
            scope=scope(),
            baseline_variant="control",
            candidate_variant="canary",
            metrics=["accuracy", "f1", "roc_auc", "log_loss"],
        )
    )
    verdicts = {c.metric: c.verdict for c in reply.report.comparisons}
    assert verdicts == {m: rp.COMPARISON_VERDICT_CANDIDATE_WORSE for m in verdicts}
    accuracy = reply.report.comparisons[0]
    assert accuracy.test == rp.COMPARISON_TEST_TWO_PROPORTION_Z
    assert (
        accuracy.difference_interval.lower
        < accuracy.difference
        < accuracy.difference_interval.upper
        < 0
    )
    assert accuracy.baseline.variant == "control" and list(accuracy.candidate.versions) == [version]
    error = await rpc_error(
        monitor.stub.CompareVariants(
            pb.CompareVariantsRequest(
                scope=scope(), baseline_variant="control", candidate_variant="shadow"
            )
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_a_logged_row_is_read_back_with_its_trace(
    monitor: Monitor, registry_address: str
) -> None:
    version = await log_classifier(registry_address, "m")
    x = frame(3, 9).to_numpy()
    message = batch("m", version, x, ["a", "b", "c"])
    message.trace_ids = bytes(range(16)) * 3
    await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message))
    await monitor.stub.LogFeedback(feedback("m", ["b"], [1]))
    got = (
        await monitor.stub.GetPrediction(
            pb.GetPredictionRequest(model="models/m", prediction_id="b")
        )
    ).prediction
    assert list(got.row.prediction_ids.strings.values) == ["b"]
    assert got.row.trace_ids == bytes(range(16))
    assert list(got.label.strings.values) == ["1"] and got.HasField("label_time")
    assert got.row.features[0].doubles.values[0] == pytest.approx(x[1, 0])
    error = await rpc_error(
        monitor.stub.GetPrediction(pb.GetPredictionRequest(model="models/m", prediction_id="zz"))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_p_value_mode_uses_ks_with_correction(
    monitor: Monitor, registry_address: str
) -> None:
    version = await log_classifier(registry_address, "m")
    x = frame(3000, 10, shift=0.3).to_numpy()
    await monitor.stub.LogPredictionBatch(
        pb.LogPredictionBatchRequest(batch=batch("m", version, x, [f"k{i}" for i in range(3000)]))
    )
    options = rp.DriftOptions(numeric_method=rp.DRIFT_METHOD_KS, mode=rp.DRIFT_TEST_MODE_P_VALUE)
    report = (
        await monitor.stub.ComputeDrift(pb.ComputeDriftRequest(scope=scope(), options=options))
    ).report
    x0 = report.features[0]
    assert x0.method == rp.DRIFT_METHOD_KS and x0.drifted and x0.adjusted_p_value < 0.05
    assert x0.HasField("p_value") and x0.threshold == pytest.approx(0.05)
    distance = rp.DriftOptions(
        mode=rp.DRIFT_TEST_MODE_P_VALUE, numeric_method=rp.DRIFT_METHOD_WASSERSTEIN
    )
    error = await rpc_error(
        monitor.stub.ComputeDrift(pb.ComputeDriftRequest(scope=scope(), options=distance))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
