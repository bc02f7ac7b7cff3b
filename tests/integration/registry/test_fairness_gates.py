"""Objectives on fairness metrics gate promotions: a version's disparity across the
groups of its protected features (measured on the holdout by `log_model`) is checked at
its worst over the protected features."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from keel.client import FailedPrecondition, Keel
from tests.support.registry import running_registry


def applicants(rows: int, seed: int, *, biased: bool) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, rows)
    score = rng.normal(size=rows) + (2.0 * group if biased else 0.0)
    frame = pd.DataFrame({"score": score, "group": group.astype(np.float64)})
    return frame, (score > 0.5).astype(np.int64)


def log_and_promote(address: str, name: str, *, biased: bool) -> str:
    train, y_train = applicants(2000, 1, biased=biased)
    test, y_test = applicants(1000, 2, biased=biased)
    model = LogisticRegression().fit(train, y_train)
    with Keel(registry=address) as keel:
        version = keel.log_model(
            model,
            name,
            train,
            y_train,
            test,
            y_test,
            protected=["group"],
            objectives=["demographic_parity_ratio >= 0.8"],
            cv=None,
        )
        try:
            keel.promote(name, version.version, "production")
        except FailedPrecondition as refused:
            return f"refused: {refused}"
        return "promoted"


async def test_a_fairness_objective_lets_a_fair_model_through_and_stops_a_biased_one(
    tmp_path: Path,
) -> None:
    async with running_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "a") as (_, port):
        address = f"127.0.0.1:{port}"
        fair = await asyncio.to_thread(log_and_promote, address, "fair", biased=False)
        biased = await asyncio.to_thread(log_and_promote, address, "biased", biased=True)
    assert fair == "promoted"
    assert biased.startswith("refused:")
    assert "demographic_parity_ratio >= 0.8: not met (demographic_parity_ratio = 0." in biased
