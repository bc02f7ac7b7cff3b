"""Real XGBoost models for the registry benchmark: a small one that can be made unique
cheaply (a booster attribute carries an id), and a large one of deep trees."""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SMALL_FEATURES = ("f0", "f1", "f2", "f3")
LARGE_FEATURES = tuple(f"f{i}" for i in range(8))
_ID = b"0" * 16
_ID_FIELD = b'"bench_id":"' + _ID + b'"'


@dataclass(frozen=True)
class Model:
    data: bytes
    features: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class SmallModels:
    """A 5-tree classifier saved as XGBoost JSON; ``make(n)`` returns it with booster
    attribute ``bench_id`` set to ``n``, so every call gives new, valid bytes."""

    def __init__(self) -> None:
        import xgboost

        rng = np.random.default_rng(0)
        x = rng.normal(size=(300, len(SMALL_FEATURES))).astype(np.float32)
        y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(np.int64)
        model = xgboost.XGBClassifier(n_estimators=5, max_depth=3, random_state=0)
        model.fit(x, y)
        booster = model.get_booster()
        booster.set_attr(bench_id=_ID.decode())
        self.template = bytes(booster.save_raw("json"))
        if self.template.count(_ID_FIELD) != 1:
            raise RuntimeError("XGBoost did not write the bench_id attribute as expected")

    def make(self, n: int) -> Model:
        unique = _ID_FIELD.replace(_ID, f"{n:016x}".encode())
        return Model(self.template.replace(_ID_FIELD, unique), SMALL_FEATURES)


def large_model(target_bytes: int) -> tuple[Model, str]:
    """A real XGBoost JSON model of at least ``target_bytes`` (deep trees on noise), and a
    note on how it was obtained. Built once, then cached in the temporary folder."""
    import xgboost

    cache = Path(tempfile.gettempdir(), "keel-bench", f"xgb-{target_bytes}-{xgboost.__version__}")
    if cache.exists():
        data = cache.read_bytes()
        return Model(data, LARGE_FEATURES), f"cached at {cache}"
    started = time.perf_counter()
    data, trees = _train_large(target_bytes)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(cache)
    took = time.perf_counter() - started
    return Model(data, LARGE_FEATURES), f"{trees} trees of depth 12, built in {took:.0f} s"


def _train_large(target_bytes: int) -> tuple[bytes, int]:
    import xgboost

    rng = np.random.default_rng(1)
    x = rng.normal(size=(16384, len(LARGE_FEATURES))).astype(np.float32)
    y = rng.integers(0, 2, size=len(x))  # noise: every tree grows to full depth
    train = xgboost.DMatrix(x, label=y, feature_names=list(LARGE_FEATURES))
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": 12,
        "min_child_weight": 0,
        "lambda": 0,
        "eta": 0.05,
        "nthread": 2,
    }
    booster = xgboost.train(params, train, num_boost_round=20)
    data = bytes(booster.save_raw("json"))
    while len(data) < target_bytes:  # later trees are smaller: top up until big enough
        trees = booster.num_boosted_rounds()
        more = math.ceil(1.05 * (target_bytes - len(data)) / (len(data) / trees)) + 1
        booster = xgboost.train(params, train, num_boost_round=more, xgb_model=booster)
        data = bytes(booster.save_raw("json"))
    return data, booster.num_boosted_rounds()
