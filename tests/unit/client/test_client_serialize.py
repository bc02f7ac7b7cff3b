"""Safe serialisation: XGBoost UBJSON, skops, and nothing else."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import skops.io as sio
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from keel.client.serialize import serialize
from keel.registry.v1 import model_pb2

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 4))
Y = (X[:, 0] + X[:, 1] > 0).astype(int)


def test_xgboost_models_become_ubjson_that_xgboost_loads_back() -> None:
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, Y)
    saved = serialize(model)
    assert saved.flavor == model_pb2.FLAVOR_XGBOOST
    assert saved.flavor_version == xgb.__version__
    assert saved.data[:1] == b"{"  # UBJSON object marker
    booster = xgb.Booster()
    booster.load_model(bytearray(saved.data))
    np.testing.assert_allclose(
        booster.predict(xgb.DMatrix(X)), model.predict_proba(X)[:, 1], rtol=1e-6
    )


def test_sklearn_estimators_become_skops_files_that_skops_loads_back() -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y)
    saved = serialize(model)
    assert saved.flavor == model_pb2.FLAVOR_SKLEARN
    assert saved.data[:2] == b"PK"  # a skops file is a zip archive, not a pickle
    loaded = sio.loads(saved.data, trusted=sio.get_untrusted_types(data=saved.data))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


class Homemade:
    def predict(self, x: Any) -> Any:
        return x


@pytest.mark.parametrize(
    "thing",
    [Homemade(), {"weights": [1, 2]}, lambda x: x, np.zeros(3), pickle.dumps(1)],
    ids=["object", "dict", "lambda", "array", "pickle-bytes"],
)
def test_anything_else_is_refused(thing: object) -> None:
    with pytest.raises(TypeError, match="never pickles"):
        serialize(thing)


def test_a_bare_booster_is_refused_with_a_hint() -> None:
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=Y), num_boost_round=2)
    with pytest.raises(TypeError, match="XGBClassifier"):
        serialize(booster)
