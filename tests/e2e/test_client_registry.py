"""A data scientist's first calls against a real registry process: log_model registers
a READY version with metrics, profile and fairness under the canonical names; promote
moves an alias, and a gate refusal arrives as GateRefused carrying the report."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import train_test_split

from keel.client import GateRefused, Keel
from keel.registry.v1 import gate_pb2, model_pb2
from keel.registry.v1 import registry_pb2 as pb
from tests.support.processes import serve_argv, spawn, wait_ready


@pytest.fixture
def registry_address(tmp_path: Path) -> Iterator[str]:
    ready = tmp_path / "registry.json"
    argv = serve_argv("registry", tmp_path / "data", ready)
    proc: subprocess.Popen[str] = spawn(argv)
    try:
        yield wait_ready(proc, ready).address
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output


def dataset() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    data = load_breast_cancer(as_frame=True)
    frame = data.data.iloc[:, :8].copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["site"] = np.random.default_rng(0).integers(0, 2, len(frame))
    return train_test_split(frame, data.target, test_size=0.3, random_state=0)  # type: ignore[no-any-return]


def test_log_model_then_promote_through_the_gates(registry_address: str) -> None:
    x_train, x_test, y_train, y_test = dataset()
    with Keel(registry=registry_address, user="dana") as keel:
        model = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(x_train, y_train)
        first = keel.log_model(
            model,
            "cancer",
            x_train,
            y_train,
            x_test,
            y_test,
            objectives=["f1 >= 0.80"],
            protected=["site"],
            cv=3,
        )
        assert (first.name, first.version, first.status) == ("cancer", 1, "READY")
        assert first.metrics["f1"] >= 0.8 and {"accuracy", "roc_auc", "log_loss"} <= set(
            first.metrics
        )

        stored = keel.registry._stub.GetModelVersion(  # the registry's own view of it
            pb.GetModelVersionRequest(name="models/cancer/versions/1"), timeout=10
        ).model_version
        assert stored.author == "dana" and stored.flavor == model_pb2.FLAVOR_XGBOOST
        assert [f.name for f in stored.signature.inputs] == list(x_train.columns)
        assert len(stored.reference_profile.features) == len(x_train.columns)
        assert {m.group for m in stored.fairness_metrics} >= {"site=0", "site=1", "site"}
        assert {m.name for m in stored.cross_validation.metrics} >= {"f1", "accuracy"}

        keel.promote("cancer", first.version, "production")
        weak = DummyClassifier(strategy="constant", constant=0).fit(x_train, y_train)
        second = keel.log_model(weak, "cancer", x_train, y_train, x_test, y_test, cv=None)
        assert second.version == 2
        with pytest.raises(GateRefused) as refused:
            keel.promote("cancer", second.version, "production")
        report = refused.value.report
        assert not report.allowed and report.target_version == 2 and report.current_version == 1
        failed = {c.kind for c in report.checks if c.outcome == gate_pb2.GATE_CHECK_OUTCOME_FAILED}
        assert gate_pb2.GATE_CHECK_KIND_OBJECTIVE in failed

        keel.log_model(
            model,
            "cancer",
            x_train,
            y_train,
            x_test,
            y_test,
            objectives=["roc_auc >= 0.9"],
            cv=None,
        )
        objectives = keel.registry.get_model("cancer").objectives
        assert [(o.metric, o.threshold) for o in objectives] == [("roc_auc", 0.9)]
