"""The benchmark's model and MLServer's model repository.

One 100-tree XGBoost binary classifier (20 features, depth 6) is trained here. Keel
gets its UBJ bytes through the registry; MLServer's xgboost runtime reads the very same
bytes from ``model.ubj``. Swap versions are the same booster with a different
attribute, so each is a distinct artifact (its own digest, download, load and warm-up)
that predicts exactly the same and costs exactly the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost

FEATURES = 20
TREES = 100
DEPTH = 6
MODEL = "bench-xgb"

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BenchModel:
    booster: xgboost.Booster
    ubj: bytes

    def expected(self, rows: FloatArray) -> FloatArray:
        """P(class 1) per row, as the booster itself predicts it."""
        return np.asarray(self.booster.inplace_predict(rows), dtype=np.float32)

    def variant(self, index: int) -> bytes:
        """The same model as a distinct artifact (a different attribute, a new digest)."""
        copy = self.booster.copy()
        copy.set_attr(bench_variant=str(index))
        return bytes(copy.save_raw("ubj"))


def request_rows(rows: int, seed: int = 1) -> FloatArray:
    """The rows every load generator sends: the same for every server."""
    return np.random.default_rng(seed).normal(size=(rows, FEATURES)).astype(np.float32)


def train() -> BenchModel:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, FEATURES)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] ** 2 > 0).astype(np.int64)
    model = xgboost.XGBClassifier(
        n_estimators=TREES, max_depth=DEPTH, random_state=0, n_jobs=2, tree_method="hist"
    )
    model.fit(x, y)
    booster = model.get_booster()
    return BenchModel(booster, bytes(booster.save_raw("ubj")))


# MLServer's two configurations (server-wide settings.json, model-settings.json).
MLSERVER_CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "mlserver-default": ({}, {}),
    "mlserver-best": (
        {"parallel_workers": 0, "debug": False, "metrics_endpoint": None},
        {"max_batch_size": 64, "max_batch_time": 0.002},
    ),
}


def write_mlserver_repository(
    folder: Path, config: str, model: BenchModel, ports: tuple[int, int, int]
) -> Path:
    """A folder ``mlserver start`` serves: settings.json plus ``MODEL/model-settings.json``
    and ``MODEL/model.ubj``. ``ports`` are (http, grpc, metrics)."""
    server, extra = MLSERVER_CONFIGS[config]
    http, grpc_port, metrics = ports
    settings = {
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc_port,
        "metrics_port": metrics,
        **server,
    }
    model_dir = folder / MODEL
    model_dir.mkdir(parents=True)
    (model_dir / "model.ubj").write_bytes(model.ubj)
    model_settings = {
        "name": MODEL,
        "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": "./model.ubj", "version": "1"},
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, FEATURES]}],
        **extra,
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return folder
