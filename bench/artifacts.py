"""Real XGBoost models for the registry benchmark: a small one that can be made unique
cheaply (a booster attribute carries an id), and a large one of deep trees."""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def large_model(target_bytes: int) -> tuple[Model, Model, str]:
    """A real XGBoost model of at least ``target_bytes`` as JSON (deep trees on noise),
    the same model as UBJSON, and a note on how they were obtained. Built once, then
    cached in the temporary folder."""
    import xgboost

    cache = Path(tempfile.gettempdir(), "keel-bench", f"xgb-{target_bytes}-{xgboost.__version__}")
    json_file, ubj_file = cache.with_suffix(".json"), cache.with_suffix(".ubj")
    if json_file.exists() and ubj_file.exists():
        note = f"cached in {cache.parent}"
    else:
        started = time.perf_counter()
        booster = _train_large(target_bytes)
        _write(json_file, bytes(booster.save_raw("json")))
        _write(ubj_file, bytes(booster.save_raw("ubj")))
        note = f"built in {time.perf_counter() - started:.0f} s"
    json_model = Model(json_file.read_bytes(), LARGE_FEATURES)
    trees = re.search(rb'"num_trees":\s*"(\d+)"', json_model.data)
    note = f"{trees[1].decode() if trees else '?'} trees of depth 12, {note}"
    return json_model, Model(ubj_file.read_bytes(), LARGE_FEATURES), note


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)


def _train_large(target_bytes: int) -> Any:
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
        "eta": 0.001,  # tiny steps: the noise stays unfitted, later trees stay full
        "nthread": 2,
    }
    booster = xgboost.train(params, train, num_boost_round=20)
    size, more = len(booster.save_raw("json")), 50
    while size < target_bytes:  # later trees grow larger: close in on the target
        booster = xgboost.train(params, train, num_boost_round=more, xgb_model=booster)
        grown = len(booster.save_raw("json"))
        per_tree, size = (grown - size) / more, grown
        more = math.ceil(0.6 * (target_bytes - size) / per_tree) + 1
    return booster
