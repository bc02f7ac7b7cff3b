"""``keel drift|perf|fairness|alerts|predict`` against a real registry, monitor and
inference service in-process: the JSON a script reads and the exit codes it relies on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import duration_pb2

from keel.common.v1 import metric_pb2
from keel.monitor.v1 import alerts_pb2
from keel.monitor.v1 import monitor_pb2 as pb
from tests.support.inference import running_inference
from tests.support.monitor import (
    Monitor,
    batch,
    feedback,
    frame,
    labels_for,
    log_classifier,
    running_monitor,
)
from tests.support.suite import wait_model_ready
from tests.unit.cli.conftest import Registry
from tests.unit.cli.runner import keel, keel_json


@pytest.fixture
async def monitor(registry: Registry, tmp_path: Path) -> AsyncIterator[Monitor]:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    async with running_monitor(registry.address, url, tmp_path / "monitor") as found:
        yield found


def flags(registry: Registry, monitor: Monitor) -> tuple[str, ...]:
    return ("--registry", registry.address, "--monitor", monitor.address)


async def log_rows(
    monitor: Monitor, version: int, x: np.ndarray, prefix: str, sequence: int = 0
) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(len(x))]
    message = batch("churn", version, x, ids, producer=prefix, sequence=sequence)
    await monitor.stub.LogPredictionBatch(pb.LogPredictionBatchRequest(batch=message), timeout=30)
    return ids


async def test_drift_of_production_and_fail_on_drift(registry: Registry, monitor: Monitor) -> None:
    first = await log_classifier(registry.address, "churn")
    second = await log_classifier(registry.address, "churn")
    await registry.client.set_alias("churn", "production", first)
    shifted = frame(3000, 7).to_numpy(copy=True)
    shifted[:, :2] += 1.0  # x0 and x1: half the features, dataset drift at the 0.5 default
    await log_rows(monitor, first, shifted, "a")
    await log_rows(monitor, second, frame(3000, 8).to_numpy(), "b")
    where = flags(registry, monitor)

    report = await keel_json("drift", "churn", *where)  # exits 0 whatever it finds
    assert (report["version"], report["row_count"]) == (first, 3000)
    assert report["dataset_drift"] is True and report["drifted_share"] == 0.5
    features = {f["feature"]: f for f in report["features"]}
    assert list(features) == ["x0", "x1", "x2", "x3"]
    assert {name: f["drift"] for name, f in features.items()} == {
        "x0": True,
        "x1": True,
        "x2": False,
        "x3": False,
    }
    assert features["x0"]["method"] == "wasserstein" and features["x0"]["threshold"] == 0.1
    assert features["x0"]["statistic"] > 0.5 > features["x2"]["statistic"]

    failed = await keel("drift", "churn", "--fail-on-drift", "--json", *where)
    assert failed.exit_code == 1 and json.loads(failed.stdout)["dataset_drift"] is True
    table = await keel("drift", "churn", "--fail-on-drift", *where)
    assert table.exit_code == 1 and "Dataset drift" in table.stdout and "x0" in table.stdout

    steady = await keel_json("drift", "churn", "--version", str(second), "--fail-on-drift", *where)
    assert steady["version"] == second and steady["dataset_drift"] is False

    # A range before the rows were logged: nothing to compare, no drift, exit 0.
    empty = await keel_json(
        "drift", "churn", "--since", "3h", "--until", "2h", "--fail-on-drift", *where
    )
    assert empty["row_count"] == 0 and empty["dataset_drift"] is False

    missing = await keel("drift", "nope", *where)
    assert missing.exit_code == 3 and missing.stderr.startswith("keel: NOT_FOUND: ")
    backwards = await keel("drift", "churn", "--since", "1h", "--until", "2h", *where)
    assert backwards.exit_code == 2 and backwards.stdout == ""
    down = await keel("drift", "churn", "--registry", registry.address, "--monitor", "127.0.0.1:1")
    assert down.exit_code == 5 and down.stderr.startswith("keel: UNAVAILABLE: ")


async def test_perf_and_fairness(registry: Registry, monitor: Monitor) -> None:
    version = await log_classifier(
        registry.address, "churn", protected=["x1"], objectives=["f1 >= 0.99"]
    )
    await registry.client.set_alias("churn", "production", version)
    x = frame(2000, 11).to_numpy()
    ids = await log_rows(monitor, version, x, "p")
    truth = labels_for(x)
    truth[::5] = 1 - truth[::5]  # a fifth of the labels contradict the model
    await monitor.stub.LogFeedback(feedback("churn", ids, truth), timeout=30)
    where = flags(registry, monitor)

    perf = await keel_json("perf", "churn", *where)
    assert (perf["version"], perf["prediction_count"], perf["labeled_count"]) == (1, 2000, 2000)
    assert perf["metrics"]["accuracy"] == pytest.approx(0.8, abs=1e-9)
    assert {"f1", "roc_auc", "precision", "recall"} <= set(perf["metrics"])
    (objective,) = perf["objectives"]
    assert objective["metric"] == "f1" and objective["passed"] is False
    table = await keel("perf", "churn", *where)
    assert table.exit_code == 0 and "accuracy" in table.stdout and "Objectives" in table.stdout

    fairness = await keel_json("fairness", "churn", *where)
    (feature,) = fairness["features"]
    assert feature["feature"] == "x1" and sum(g["row_count"] for g in feature["groups"]) == 2000
    assert feature["demographic_parity_difference"] > 0.2
    table = await keel("fairness", "churn", *where)
    assert table.exit_code == 0 and "demographic parity difference" in table.stdout
    unprotected = await keel("fairness", "churn", "--feature", "x0", *where)
    assert unprotected.exit_code == 2 and unprotected.stderr.startswith("keel: INVALID_ARGUMENT")


async def fired(monitor: Monitor, rule: str) -> None:
    async with asyncio.timeout(20):
        while not (
            await monitor.stub.ListAlerts(pb.ListAlertsRequest(rule=rule), timeout=10)
        ).alerts:
            await asyncio.sleep(0.2)


async def test_alerts(registry: Registry, monitor: Monitor) -> None:
    version = await log_classifier(registry.address, "churn")
    condition = alerts_pb2.AlertCondition(
        drift=alerts_pb2.DriftCondition(feature="x0"),
        comparator=metric_pb2.COMPARATOR_GREATER_OR_EQUAL,
        threshold=0.1,
    )
    rule = alerts_pb2.AlertRule(
        model="models/churn",
        condition=condition,
        window=duration_pb2.Duration(seconds=3600),
        min_samples=100,
        severity=alerts_pb2.ALERT_SEVERITY_CRITICAL,
    )
    await monitor.stub.CreateAlertRule(
        pb.CreateAlertRuleRequest(alert_rule=rule, alert_rule_id="x0-drift")
    )
    where = flags(registry, monitor)
    assert await keel_json("alerts", *where) == {"alerts": []}

    await log_rows(monitor, version, frame(2000, 9, shift=1.0).to_numpy(), "d")
    await fired(monitor, "alertRules/x0-drift")
    found = await keel_json("alerts", "churn", "--state", "firing", *where)
    (alert,) = found["alerts"]
    assert (alert["rule"], alert["state"], alert["severity"]) == (
        "alertRules/x0-drift",
        "firing",
        "critical",
    )
    assert alert["model"] == "churn" and alert["value"] >= 0.1
    assert await keel_json("alerts", "--state", "resolved", *where) == {"alerts": []}
    table = await keel("alerts", *where)
    assert table.exit_code == 0 and "x0-drift" in table.stdout and "drift(x0" in table.stdout
    bad = await keel("alerts", "--state", "smouldering", *where)
    assert bad.exit_code == 2 and "smouldering" in bad.stderr


async def test_predict_from_csv_and_json(
    registry: Registry, monitor: Monitor, tmp_path: Path
) -> None:
    version = await log_classifier(registry.address, "churn")
    await registry.client.set_alias("churn", "production", version)
    port = int(registry.address.rsplit(":", 1)[1])
    async with running_inference(
        port, tmp_path / "inference", monitor_address=monitor.address
    ) as served:
        await wait_model_ready(served.stub, "churn")
        where = ("--registry", registry.address, "--inference", served.address)
        x = frame(3, 21)
        csv_file = tmp_path / "rows.csv"
        x.to_csv(csv_file, index=False)
        from_csv = await keel_json(
            "predict", "churn", "--input", str(csv_file), "--batch-size", "2", *where
        )
        rows = from_csv["predictions"]
        assert from_csv["model"] == "churn" and len(rows) == 3
        assert len({r["id"] for r in rows}) == 3 and {r["version"] for r in rows} == {version}
        expected = labels_for(x.to_numpy())  # the model learnt this rule
        assert [r["label"] for r in rows] == [str(v) for v in expected]
        for row in rows:
            assert set(row["probabilities"]) == {"0", "1"}
            assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)

        records = tmp_path / "rows.json"
        records.write_text(x.to_json(orient="records"))
        columns = tmp_path / "columns.json"
        columns.write_text(json.dumps({c: x[c].tolist() for c in x.columns}))
        for path in (records, columns):
            again = await keel_json("predict", "churn", "--input", str(path), *where)
            assert [r["label"] for r in again["predictions"]] == [r["label"] for r in rows]

        table = await keel("predict", "churn", "-i", str(csv_file), *where)
        assert table.exit_code == 0 and "P(1)" in table.stdout, table.stdout
        cells = [line.split("│") for line in table.stdout.splitlines() if line.startswith("│")]
        assert [(c[1].strip(), c[4].strip()) for c in cells] == [
            (str(i), r["label"]) for i, r in enumerate(rows)
        ]

        absent = await keel("predict", "churn", "--input", str(tmp_path / "none.csv"), *where)
        assert absent.exit_code == 2 and "no such file" in absent.stderr
        unknown = await keel("predict", "nope", "--input", str(csv_file), *where)
        assert unknown.exit_code == 3 and unknown.stderr.startswith("keel: NOT_FOUND: ")
        wrong = tmp_path / "wrong.csv"
        wrong.write_text("a,b\n1,2\n")
        refused = await keel("predict", "churn", "--input", str(wrong), *where)
        assert refused.exit_code == 2, refused.stderr
