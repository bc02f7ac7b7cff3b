"""The client's calls against real registry, inference and monitor servers in-process:
predictions from a DataFrame, an array or rows, read back by name and matched with the
model's own answers; feedback that performance then counts; explanations that add up;
predictions logged from outside Keel that drift, fairness, variant comparison and alerts
report on; typed errors; a model loaded back in-process that predicts the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pytest
from google.protobuf import duration_pb2
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from keel.client import (
    AlertList,
    InvalidArgument,
    Keel,
    NotFound,
    Unimplemented,
)
from keel.common.v1 import metric_pb2
from keel.monitor.v1 import alerts_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from keel.registry.v1 import deployment_pb2, registry_pb2
from tests.support.inference import running_inference
from tests.support.monitor import Monitor, frame, labels_for, running_monitor
from tests.support.registry import running_registry

pytestmark = pytest.mark.integration
T = TypeVar("T")


@dataclass
class Suite:
    keel: Keel
    monitor: Monitor


@asynccontextmanager
async def running(tmp: Path) -> AsyncIterator[Suite]:
    """Registry, monitor and inference in-process, and a client of the three."""
    async with running_registry(f"sqlite:///{tmp / 'r.db'}", tmp / "registry") as (_, port):
        registry = f"127.0.0.1:{port}"
        async with running_monitor(registry, f"sqlite:///{tmp / 'm.db'}", tmp / "m") as monitor:
            async with running_inference(
                port,
                tmp / "inference",
                monitor_address=monitor.address,
                prediction_log_flush_s=0.05,
                prediction_log_retry_s=0.1,
            ) as served:
                keel = Keel(registry, served.address, monitor.address, user="dana", timeout_s=20)
                try:
                    yield Suite(keel, monitor)
                finally:
                    keel.close()


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking client call, off the event loop that runs the servers."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def until(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 20) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await call(read)
        if done(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def promoted(keel: Keel, name: str, model: Any, x: Any, y: Any, **extra: Any) -> int:
    def register() -> int:
        version = keel.log_model(model, name, x, y, x, y, cv=None, **extra).version
        keel.promote(name, version, "production")
        keel.wait_ready(name)
        return version

    return await call(register)


def churn() -> tuple[LogisticRegression, pd.DataFrame, Any]:
    train = frame(2000, 1)
    truth = labels_for(train)
    return LogisticRegression().fit(train, truth), train, truth


async def test_a_dataframe_is_predicted_labelled_and_reported_on(tmp_path: Path) -> None:
    model, train, truth = churn()
    async with running(tmp_path) as suite:
        keel = suite.keel
        assert await promoted(keel, "churn", model, train, truth) == 1
        x = frame(40, 7)
        x.index = pd.Index([f"c{i}" for i in range(40)], name="customer")
        answer = await call(keel.predict, "churn", x[["x3", "x1", "x0", "x2"]])  # by name
        result = await call(keel.feedback, answer, labels_for(x))
        report = await until(lambda: keel.performance("churn"), lambda r: r.labeled_count == 40)
        loaded = await call(keel.load_model, "churn@production")
    assert (answer.model, answer.version, len(answer)) == ("churn", 1, 40)
    assert answer.ids == [f"{answer.id}/{i}" for i in range(40)]
    assert answer.class_labels == ("0", "1")
    assert answer.label is not None
    assert answer.label.tolist() == [str(v) for v in model.predict(x)]
    assert answer.probabilities is not None and answer.prediction is None
    np.testing.assert_allclose(answer.probabilities, model.predict_proba(x), atol=1e-5)
    table = answer.to_pandas()
    assert list(table.columns) == ["id", "label", "probability_0", "probability_1"]
    assert table.index.equals(x.index) and table.loc["c3", "id"] == f"{answer.id}/3"
    assert result.total == 40 and result.duplicate == 0
    accuracy = float(np.mean(model.predict(x) == labels_for(x)))
    assert report.version == 1 and report.prediction_count == 40
    assert report.metrics["accuracy"] == pytest.approx(accuracy)
    assert report.task == "binary_classification"
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x))


async def test_arrays_rows_and_one_row_and_explanations(tmp_path: Path) -> None:
    model, train, truth = churn()
    x = frame(5, 3)
    async with running(tmp_path) as suite:
        keel = suite.keel
        await promoted(keel, "churn", model, train, truth)
        from_array = await call(keel.predict, "churn", x.to_numpy())
        from_rows = await call(keel.predict, "churn", x.to_numpy().tolist(), version=1)
        one = await call(keel.predict, "churn", x.to_numpy()[:1], version="production")
        explained = await call(keel.explain, "churn", x)
        with pytest.raises(NotFound):
            await call(keel.predict, "nope", x)
        with pytest.raises(ValueError, match="takes 4 columns, got 3"):
            await call(keel.predict, "churn", x.to_numpy()[:, :3])
        with pytest.raises(InvalidArgument, match="input 'age': unknown input"):
            await call(keel.predict, "churn", x.assign(age=1.0))
    assert from_array.probabilities is not None and from_rows.probabilities is not None
    np.testing.assert_array_equal(from_array.probabilities, from_rows.probabilities)
    assert from_array.to_pandas().index.tolist() == [0, 1, 2, 3, 4]
    assert one.ids == [one.id] and len(one.id) == 32
    assert explained.method == "linear" and explained.output_space == "margin"
    assert explained.feature_names == ["x0", "x1", "x2", "x3"]
    assert explained.contributions.shape == (5, 4) and explained.class_labels == ["1"]
    assert isinstance(explained.expected_value, float)
    added = explained.contributions.sum(axis=1) + explained.expected_value
    np.testing.assert_allclose(added, explained.outputs, atol=1e-6)
    np.testing.assert_allclose(explained.outputs, model.decision_function(x), atol=1e-4)
    assert list(explained.to_pandas().columns) == ["x0", "x1", "x2", "x3"]


async def test_categorical_columns_are_sent_by_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = frame(600, 5).assign(segment=rng.choice(["retail", "sme", "corporate"], 600))
    truth = labels_for(train[["x0", "x1"]]) ^ (train["segment"] == "sme").to_numpy()
    prepare = ColumnTransformer([("s", OneHotEncoder(), ["segment"])], remainder="passthrough")
    model = Pipeline([("prepare", prepare), ("model", LogisticRegression())]).fit(train, truth)
    x = train.iloc[:25].copy()
    x["segment"] = x["segment"].astype("category")
    async with running(tmp_path) as suite:
        keel = suite.keel
        await promoted(keel, "mixed", model, train, truth)
        answer = await call(keel.predict, "mixed", x[["segment", "x2", "x0", "x3", "x1"]])
        with pytest.raises(Unimplemented):  # no explainer for a pipeline with categories
            await call(keel.explain, "mixed", x)
        with pytest.raises(InvalidArgument, match="segment"):
            await call(keel.predict, "mixed", x.assign(segment="unknown-kind"))
    assert answer.probabilities is not None
    np.testing.assert_allclose(answer.probabilities, model.predict_proba(x), atol=1e-5)


async def test_predictions_logged_from_outside_keel_are_reported_on(tmp_path: Path) -> None:
    model, train, truth = churn()
    async with running(tmp_path) as suite:
        keel = suite.keel
        version = await promoted(keel, "churn", model, train, truth, protected=["x3"])
        await suite.monitor.stub.CreateAlertRule(
            pb.CreateAlertRuleRequest(alert_rule=accuracy_rule("churn"), alert_rule_id="acc")
        )
        same, shifted = frame(1500, 11), frame(1500, 12, shift=2.0)
        ids_a = await call(
            keel.log_predictions,
            "churn",
            version,
            same,
            model.predict(same),
            variant="a",
            probabilities=model.predict_proba(same),
        )
        ids_b = await call(
            keel.log_predictions,
            "churn",
            version,
            shifted.to_numpy(),
            [str(v) for v in model.predict(shifted)],
            variant="b",
            ids=[f"b-{i}" for i in range(1500)],
        )
        fed = await call(
            keel.feedback,
            ids_a + ids_b,
            np.r_[labels_for(same), labels_for(shifted)],
            model="churn",
        )
        with pytest.raises(ValueError, match="model is required"):
            await call(keel.feedback, ids_b, labels_for(shifted))
        drift_b = await call(keel.drift, "churn", variant="b", include_bins=True)
        drift_a = await call(
            keel.drift, "churn", version=1, variant="a", since="2000-01-01T00:00:00Z"
        )
        fairness = await call(keel.fairness, "churn")
        compared = await call(keel.compare_variants, "churn", "a", "b", "accuracy", min_samples=10)
        alerts = await until(lambda: keel.alerts("churn", state="firing"), bool)
    assert len(ids_a) == 1500 and ids_b[:2] == ["b-0", "b-1"]
    assert fed.matched + fed.unmatched == 3000
    drifted = {f.feature: f.drift for f in drift_b.features}
    assert drifted == {"x0": True, "x1": False, "x2": False, "x3": False}
    assert drift_b.version == 1 and drift_b.row_count == 1500
    entry = drift_b.to_dict()["features"][0]
    assert list(entry)[:5] == ["feature", "drift", "method", "statistic", "threshold"]
    assert (entry["feature"], entry["method"]) == ("x0", "wasserstein") and entry["drift"]
    bins = drift_b.features[0].bins
    assert bins is not None and sum(bins.current_counts) == 1500
    assert not drift_a.dataset_drift and drift_a.start is not None and drift_a.start.year == 2000
    assert list(drift_a.to_pandas()["feature"])[:4] == ["x0", "x1", "x2", "x3"]
    assert [f.feature for f in fairness.features] == ["x3"]
    assert sum(g.row_count for g in fairness.features[0].groups) == 3000
    [comparison] = compared.comparisons
    assert (comparison.baseline.variant, comparison.candidate.variant) == ("a", "b")
    assert comparison.baseline.sample_count == 1500 and comparison.verdict != ""
    assert isinstance(alerts, AlertList) and alerts[0].state == "firing"
    assert alerts[0].condition == "accuracy < 2" and alerts[0].rule == "alertRules/acc"
    assert alerts.to_pandas()["severity"].tolist() == ["critical"]


def accuracy_rule(model: str) -> alerts_pb2.AlertRule:
    """A rule that holds as soon as ten labelled rows arrive (accuracy is always < 2)."""
    return alerts_pb2.AlertRule(
        model=f"models/{model}",
        condition=alerts_pb2.AlertCondition(
            performance=alerts_pb2.PerformanceCondition(metric="accuracy"),
            comparator=metric_pb2.COMPARATOR_LESS,
            threshold=2.0,
        ),
        window=duration_pb2.Duration(seconds=3600),
        min_samples=10,
        severity=alerts_pb2.ALERT_SEVERITY_CRITICAL,
    )


async def test_a_deployment_name_predicts_with_its_models_class_labels(tmp_path: Path) -> None:
    model, train, truth = churn()
    async with running(tmp_path) as suite:
        keel = suite.keel
        await promoted(keel, "churn", model, train, truth)
        route = deployment_pb2.Route(target="models/churn/aliases/production", weight=100)
        request = registry_pb2.CreateDeploymentRequest(
            deployment=deployment_pb2.Deployment(model="models/churn", routes=[route]),
            deployment_id="churn-api",
        )
        await call(keel.registry.call, keel.registry.stub.CreateDeployment, request)
        await call(keel.wait_ready, "churn-api")
        x = frame(5, 3)
        answer = await call(keel.predict, "churn-api", x)
    assert answer.class_labels == ("0", "1")  # learnt from the deployment's model
    assert answer.label is not None
    assert answer.label.tolist() == [str(v) for v in model.predict(x)]
