"""The monitor benchmark's model: a scikit-learn pipeline (standard scaler, logistic
regression) trained on the reference rows of ``bench.monitor_data``, registered with the
Python client's ``log_model`` so the version carries a signature (``f0``…``f12``,
FLOAT32) and a reference profile computed on those same rows, the rows Evidently gets
as its reference.

The scaler folds into the regression, so the model's score is a logistic function of
the raw features: ``coef`` and ``intercept`` here are what ``monitor_data.scores``
needs, on both halves of the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench import monitor_data as data
from bench.monitor_batches import LoggedModel
from keel.client import Keel

MODEL_ID = "bench-monitor"
HOLDOUT_ROWS = 20_000


@dataclass(frozen=True)
class Trained:
    pipeline: Any
    coef: data.Vector
    intercept: float
    reference: data.Matrix
    labels: npt.NDArray[np.int64]

    def as_json(self) -> dict[str, object]:
        return {"coef": self.coef.tolist(), "intercept": self.intercept}


def train(reference_rows: int) -> Trained:
    reference = data.reference(reference_rows)
    labels = data.labels(reference)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression())
    pipeline.fit(reference, labels)
    scaler, regression = pipeline[0], pipeline[1]
    coef = np.asarray(regression.coef_[0], dtype=np.float64) / scaler.scale_
    intercept = float(regression.intercept_[0] - (coef * scaler.mean_).sum())
    expected = pipeline.predict_proba(reference[:1000])[:, 1]
    if not np.allclose(data.scores(reference[:1000], coef, intercept), expected, atol=1e-5):
        raise SystemExit("monitor bench: the folded coefficients do not reproduce the model")
    return Trained(pipeline, coef, intercept, reference, labels)


def register(registry: str, trained: Trained) -> LoggedModel:
    """Registers the model (version 1 of a new model) and returns what the batches say."""
    holdout = data.holdout(HOLDOUT_ROWS)
    with Keel(registry=registry, timeout=120, user="bench") as keel:
        version = keel.log_model(
            trained.pipeline,
            MODEL_ID,
            trained.reference,
            trained.labels,
            holdout,
            data.labels(holdout),
            task="binary",
            cv=None,
            description="python -m bench monitor",
        )
    if version.status != "READY":
        raise SystemExit(f"monitor bench: version {version.resource_name} is {version.status}")
    return LoggedModel(f"models/{MODEL_ID}", version.version, trained.coef, trained.intercept)
