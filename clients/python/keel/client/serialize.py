"""Safe serialisation of a fitted model: XGBoost's own UBJSON for XGBoost's
scikit-learn API models, skops for scikit-learn estimators. Nothing is ever pickled;
anything else is refused with a TypeError."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keel.client._optional import optional, require
from keel.registry.v1 import model_pb2


@dataclass(frozen=True)
class SerializedModel:
    """A model file and what the registry needs to know to load it."""

    data: bytes
    flavor: model_pb2.Flavor.ValueType
    flavor_version: str


def serialize(model: Any) -> SerializedModel:
    """The safe bytes of ``model``: XGBoost UBJSON (flavor xgboost) for an
    ``xgboost.XGBModel`` (XGBClassifier, XGBRegressor …), skops (flavor sklearn) for a
    scikit-learn estimator or pipeline."""
    xgboost = optional("xgboost")
    if xgboost is not None:
        if isinstance(model, xgboost.XGBModel):
            raw = model.get_booster().save_raw(raw_format="ubj")
            return SerializedModel(bytes(raw), model_pb2.FLAVOR_XGBOOST, str(xgboost.__version__))
        if isinstance(model, xgboost.Booster):
            raise TypeError(
                "a bare xgboost.Booster is not supported: train with the scikit-learn API "
                "(xgboost.XGBClassifier / XGBRegressor) so Keel can evaluate it"
            )
    sklearn_base = optional("sklearn.base")
    if sklearn_base is not None and isinstance(model, sklearn_base.BaseEstimator):
        skops_io = require("skops.io")
        sklearn = require("sklearn")
        return SerializedModel(
            bytes(skops_io.dumps(model)), model_pb2.FLAVOR_SKLEARN, str(sklearn.__version__)
        )
    raise TypeError(
        f"cannot serialise {type(model).__module__}.{type(model).__qualname__} safely: "
        "Keel takes XGBoost scikit-learn API models (saved as UBJSON) and scikit-learn "
        "estimators (saved with skops); it never pickles"
    )
