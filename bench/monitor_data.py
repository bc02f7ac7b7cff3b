"""The monitor benchmark's data: one generator, imported by Keel's half (in .venv) and by
Evidently's half (in .bench), so both see the very same rows. It needs numpy only.

Thirteen numeric features ``f0``…``f12`` (FLOAT32): nine normal ones, two log-normal,
one uniform and one with integer values. The reference is ``reference(rows)``; the
current data comes in blocks of ``BLOCK`` rows, block ``i`` drawn from its own seed, so
either side can produce any range of it without producing what comes before. In the
current data three features drift: ``DRIFTED`` are shifted by ``SHIFT_SD`` of their
reference standard deviation; the other ten are drawn exactly as in the reference.

The model's score is a logistic function of the features (``scores``); the benchmark
trains a scikit-learn LogisticRegression on the reference and hands its coefficients to
both halves, so both log the same predictions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SEED = 20_260_505
FEATURES = tuple(f"f{j}" for j in range(13))
DRIFTED = ("f2", "f6", "f10")
SHIFT_SD = 0.5
BLOCK = 1000  # rows per current block (= rows per PredictionBatch)

Matrix = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float64]

# (kind, a, b) per feature: normal(mean a, sd b), lognormal(mu a, sigma b),
# uniform[a, b), poisson(a) + b.
_SPEC: tuple[tuple[str, float, float], ...] = (
    ("normal", 0.0, 1.0),
    ("normal", 5.0, 2.0),
    ("normal", -3.0, 0.5),
    ("normal", 100.0, 15.0),
    ("normal", 0.0, 1.0),
    ("normal", 1.0, 3.0),
    ("normal", 40.0, 12.0),
    ("normal", 0.0, 0.1),
    ("normal", -10.0, 4.0),
    ("lognormal", 0.0, 0.5),
    ("lognormal", 3.0, 0.8),
    ("uniform", 0.0, 1.0),
    ("poisson", 30.0, 18.0),
)


def _population_sd(kind: str, a: float, b: float) -> float:
    if kind == "normal":
        return b
    if kind == "lognormal":
        return float(np.sqrt((np.exp(b * b) - 1) * np.exp(2 * a + b * b)))
    if kind == "uniform":
        return (b - a) / 12**0.5
    return float(np.sqrt(a))


def _draw(rng: np.random.Generator, rows: int, drift: bool) -> Matrix:
    out = np.empty((rows, len(FEATURES)), dtype=np.float32)
    for j, (kind, a, b) in enumerate(_SPEC):
        if kind == "normal":
            column = rng.normal(a, b, rows)
        elif kind == "lognormal":
            column = rng.lognormal(a, b, rows)
        elif kind == "uniform":
            column = rng.uniform(a, b, rows)
        else:
            column = rng.poisson(a, rows).astype(np.float64) + b
        if drift and FEATURES[j] in DRIFTED:
            column = column + SHIFT_SD * _population_sd(kind, a, b)
        out[:, j] = column
    return out


def reference(rows: int) -> Matrix:
    """The reference (training) features, ``rows`` x 13."""
    return _draw(np.random.default_rng([SEED, 0]), rows, drift=False)


def holdout(rows: int) -> Matrix:
    """Held-out rows from the reference distribution (for the model's evaluation)."""
    return _draw(np.random.default_rng([SEED, 1]), rows, drift=False)


def labels(features: Matrix) -> npt.NDArray[np.int64]:
    """Ground truth: a noisy logistic function of a few standardised features."""
    z = (features - features.mean(axis=0)) / features.std(axis=0)
    logit = 1.5 * z[:, 0] + 1.0 * z[:, 2] + 0.8 * z[:, 6] + 0.6 * z[:, 10] - 0.4 * z[:, 12]
    noise = np.random.default_rng([SEED, 2]).logistic(size=len(features))
    return np.asarray(logit + noise > 0, dtype=np.int64)


def current_block(index: int) -> Matrix:
    """Current block ``index`` (0-based): ``BLOCK`` rows, three features drifted."""
    return _draw(np.random.default_rng([SEED, 3, index]), BLOCK, drift=True)


def current(rows: int) -> Matrix:
    """The first ``rows`` current rows (a multiple of ``BLOCK``)."""
    if rows % BLOCK:
        raise ValueError(f"current rows {rows}: expected a multiple of {BLOCK}")
    return np.concatenate([current_block(i) for i in range(rows // BLOCK)])


def scores(features: Matrix, coef: Vector, intercept: float) -> Vector:
    """P(class 1) of the logistic model with these coefficients."""
    logit = features.astype(np.float64) @ coef + intercept
    return 1.0 / (1.0 + np.exp(-logit))
