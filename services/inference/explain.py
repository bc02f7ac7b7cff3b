"""Per-feature contributions for a request: TreeSHAP for XGBoost, coefficient × centred
value for linear scikit-learn models. Plain numpy; no protobuf.

Every explanation adds up: for each output class ``k`` and row ``i``,
``contributions[k][i].sum() + expected_value[k]`` is the model's margin for that row — the
log-odds of the positive class for a binary classifier, the class's raw score for a
multiclass one (before softmax), the linear predictor for a regressor (its prediction,
except for GLMs such as ``PoissonRegressor`` whose prediction applies a link function).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import xgboost

from services.common.errors import InvalidArgument, Unimplemented

Method = Literal["TREE_SHAP", "LINEAR"]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Explanation:
    """Contributions of each input feature to each output of a model for N rows.

    ``contributions`` holds one float32 ``[N, F]`` array per explained output: one for a
    binary classifier (the positive class, index 1) or a regressor, one per class (in
    class index order) for a multiclass classifier. ``expected_value[k]`` is what output
    ``k`` would be with every contribution zero; rows sum to the margin (module doc).
    """

    feature_names: tuple[str, ...]
    contributions: list[FloatArray]
    expected_value: tuple[float, ...]
    method: Method


def explain_xgboost(
    booster: xgboost.Booster, numeric: FloatArray, names: tuple[str, ...], *, nthread: int
) -> Explanation:
    """TreeSHAP values from XGBoost itself (``pred_contribs``); its last column is the bias."""
    _require_rows(numeric)
    types = booster.feature_types
    matrix = xgboost.DMatrix(
        numeric,
        missing=np.nan,
        feature_names=booster.feature_names,
        feature_types=types,
        enable_categorical=bool(types and "c" in types),
        nthread=nthread,
    )
    raw = np.asarray(booster.predict(matrix, pred_contribs=True), dtype=np.float32)
    per_class = [raw] if raw.ndim == 2 else [raw[:, k, :] for k in range(raw.shape[1])]
    return Explanation(
        feature_names=names,
        contributions=[np.ascontiguousarray(c[:, :-1]) for c in per_class],
        expected_value=tuple(float(c[0, -1]) for c in per_class),
        method="TREE_SHAP",
    )


# Per-feature affine transforms: an explanation of the final linear step in the
# transformed space is an explanation in the original features, one to one.
_AFFINE_STEPS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")


class LinearExplainer:
    """Coefficient × (x − reference) for a linear model, bare or at the end of a
    Pipeline whose earlier steps are per-feature scalers (``_AFFINE_STEPS``).

    The reference row is ``reference_means`` if given, else the training mean of a
    leading ``StandardScaler``, else zeros: ``expected_value`` is then the model's margin
    at that row (for zeros, an all-zero input in the features' own units).
    """

    def __init__(
        self,
        model: Any,
        reference: npt.NDArray[np.float64],
        names: tuple[str, ...],
        to_input: Callable[[FloatArray], Any],
    ) -> None:
        self._steps, final = _split(model)
        self._names = names
        self._to_input = to_input
        self._coef = np.atleast_2d(np.asarray(final.coef_, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(final.intercept_, dtype=np.float64))
        self._intercept = np.broadcast_to(intercept, (self._coef.shape[0],))
        self._reference = self._transform(reference.astype(np.float32).reshape(1, -1))

    def explain(self, numeric: FloatArray) -> Explanation:
        _require_rows(numeric)
        centred = self._transform(numeric) - self._reference
        return Explanation(
            feature_names=self._names,
            contributions=[(centred * coef).astype(np.float32) for coef in self._coef],
            expected_value=tuple(
                float(b + coef @ self._reference[0])
                for b, coef in zip(self._intercept, self._coef, strict=True)
            ),
            method="LINEAR",
        )

    def _transform(self, numeric: FloatArray) -> npt.NDArray[np.float64]:
        if not self._steps:
            return numeric.astype(np.float64)
        data = self._to_input(numeric)
        for step in self._steps:
            data = step.transform(data)
        return np.asarray(data, dtype=np.float64)


def linear_explainer(
    model: Any,
    *,
    names: tuple[str, ...],
    outputs: int,
    reference_means: npt.NDArray[np.float64] | None,
    to_input: Callable[[FloatArray], Any],
) -> LinearExplainer | None:
    """A LinearExplainer if ``model`` is one this module can explain exactly, else None."""
    split = _try_split(model)
    if split is None:
        return None
    steps, final = split
    coef = np.atleast_2d(np.asarray(final.coef_))
    if coef.shape != (outputs, len(names)):
        return None  # multi-output regression, or a width the signature does not name
    if reference_means is None:
        scaler = steps[0] if steps else None
        mean = getattr(scaler, "mean_", None) if type(scaler).__name__ == "StandardScaler" else None
        reference_means = np.zeros(len(names)) if mean is None else np.asarray(mean, np.float64)
    return LinearExplainer(model, reference_means, names, to_input)


def unexplainable(model_type: str) -> Unimplemented:
    return Unimplemented(
        f"explain: a {model_type} model has no explanation method here; offered are "
        f"TreeSHAP for XGBoost models and coefficient × centred value for linear "
        f"scikit-learn models (bare, or after per-feature scalers in a Pipeline) "
        f"with numeric inputs"
    )


def _split(model: Any) -> tuple[list[Any], Any]:
    split = _try_split(model)
    if split is None:
        raise unexplainable(type(model).__name__)
    return split


def _try_split(model: Any) -> tuple[list[Any], Any] | None:
    from sklearn.pipeline import Pipeline

    steps: list[Any] = []
    final = model
    if isinstance(model, Pipeline):
        final = model.steps[-1][1]
        for _, step in model.steps[:-1]:
            if step is None or step == "passthrough":
                continue
            if not _is_affine(step):
                return None
            steps.append(step)
    if not type(final).__module__.startswith("sklearn.linear_model"):
        return None
    if getattr(final, "coef_", None) is None or getattr(final, "intercept_", None) is None:
        return None
    return steps, final


def _is_affine(step: Any) -> bool:
    if not type(step).__module__.startswith("sklearn.preprocessing"):
        return False
    if type(step).__name__ not in _AFFINE_STEPS:
        return False
    return not getattr(step, "clip", False)  # a clipping MinMaxScaler is not affine


def _require_rows(numeric: FloatArray) -> None:
    if numeric.shape[0] == 0:
        raise InvalidArgument("explain: the request has no rows; expected at least 1")
