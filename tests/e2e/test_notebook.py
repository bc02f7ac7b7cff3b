"""A data scientist's notebook against the suite running as separate processes, written
the way they would write it: train, log_model, promote, predict on a DataFrame, send the
true labels, then check what the monitor says against what they can compute themselves,
and load the production model back into the notebook."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from keel.client import Keel, PerformanceResult
from tests.support.suite import running_suite


@pytest.fixture
def keel(tmp_path: Path) -> Iterator[Keel]:
    with running_suite(tmp_path) as suite:
        client = Keel(
            registry=suite.registry.address,
            inference=suite.inference.address,
            monitor=suite.monitor.address,
            user="dana",
        )
        with client:
            yield client


def dataset() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    data = load_breast_cancer(as_frame=True)
    frame = data.data.iloc[:, :10].copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return train_test_split(frame, data.target, test_size=0.3, random_state=0)  # type: ignore[no-any-return]


def labelled(keel: Keel, name: str, rows: int, timeout_s: float = 30) -> PerformanceResult:
    """The performance report, once the monitor has joined ``rows`` labels (the
    prediction log and the labels travel separately: a user re-runs the cell)."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = keel.performance(name)
        if report.labeled_count >= rows or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


def test_log_promote_predict_label_and_watch(keel: Keel) -> None:
    x_train, x_test, y_train, y_test = dataset()
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=3, random_state=0)
    model.fit(x_train, y_train)

    version = keel.log_model(
        model, "cancer", x_train, y_train, x_test, y_test, objectives=["roc_auc >= 0.9"], cv=None
    )
    keel.promote("cancer", version.version, "production")
    keel.wait_ready("cancer")

    prediction = keel.predict("cancer", x_test)
    assert prediction.model == "cancer" and prediction.version == version.version
    assert len(prediction.ids) == len(x_test) == len(set(prediction.ids))
    table = prediction.to_pandas()
    assert table.index.equals(x_test.index)
    assert set(table["label"]) <= {"0", "1"}

    sent = keel.feedback(prediction, y_test)
    assert sent.total == len(y_test) and sent.duplicate == 0

    report = labelled(keel, "cancer", len(y_test))
    mine = float((table["label"].astype(int) == y_test).mean())
    assert report.labeled_count == report.prediction_count == len(y_test)
    assert report.metrics["accuracy"] == pytest.approx(mine)
    assert [(o.metric, o.passed) for o in report.objectives] == [("roc_auc", True)]

    drift = keel.drift("cancer")
    entries = drift.to_dict()["features"]
    assert [e["feature"] for e in entries] == list(x_test.columns)
    assert all({"feature", "drift", "method", "statistic", "threshold"} <= set(e) for e in entries)
    assert drift.version == version.version and drift.row_count == len(x_test)
    assert not drift.dataset_drift  # the holdout comes from the training distribution

    loaded = keel.load_model("cancer@production")
    assert isinstance(loaded, xgboost.XGBClassifier)
    assert prediction.probabilities is not None
    np.testing.assert_allclose(loaded.predict_proba(x_test), prediction.probabilities, atol=1e-6)
    assert loaded.predict(x_test).astype(str).tolist() == prediction.label.tolist()  # type: ignore[union-attr]
