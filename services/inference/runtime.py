"""Loading a served version's artifact safely and predicting with it: plain numpy.

``load_model`` checks the artifact's digest, runs the registry's safe inspection
(pickles and untrusted skops types are refused before any library reads the bytes),
checks the signature against the model, then loads it: XGBoost's own JSON/UBJSON into a
``Booster`` with a small thread count, skops with exactly the types the inspection
vetted. ``LoadedModel.predict`` answers the outputs the signature promises:

- classifiers: ``probabilities`` float32 ``[N, C]`` and ``label`` int64 ``[N]``, the
  class INDEX (argmax, in the model's class order: ``classes_`` for scikit-learn, 0..C-1
  for XGBoost); class names are ``ModelSignature.class_labels`` in that order;
- regressors: ``prediction`` float32 ``[N]``.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import json
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost
from xgboost.core import _LIB, _check_call, _ProxyDMatrix, make_jcargs  # the wrapper's own

from services.common.errors import DataLoss, InvalidArgument
from services.common.safe_load import (
    DEFAULT_TRUSTED_TYPES,
    Flavor,
    ModelInspection,
    UnsafeArtifact,
    check_signature,
    check_tree_structures,
    inspect_artifact,
)
from services.inference.explain import (
    Explanation,
    FloatArray,
    LinearExplainer,
    explain_xgboost,
    linear_explainer,
    unexplainable,
)
from services.inference.records import Features, ModelSignature, Outputs
from services.inference.trees import Compiled, check_matrix, verified

__all__ = ["Explanation", "LoadedModel", "load_model"]

logger = logging.getLogger(__name__)


def load_model(
    data: bytes,
    signature: ModelSignature,
    *,
    sha256: str,
    nthread: int = 1,
    reference_means: npt.ArrayLike | None = None,
    trusted_types: frozenset[str] = DEFAULT_TRUSTED_TYPES,
) -> LoadedModel:
    """Verify, inspect and load ``data``; ``DataLoss`` if its sha256 is not ``sha256``.

    ``nthread`` bounds XGBoost's threads per call (the gRPC loop shares the machine).
    ``reference_means`` (float, one per input) centre linear explanations; see
    ``services.inference.explain.LinearExplainer`` for what is used without them.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256.lower():
        raise DataLoss(
            f"artifact: sha256 is {digest} but {sha256} was expected; "
            f"the download or the cached file is corrupt"
        )
    if nthread < 1:
        raise InvalidArgument(f"nthread: expected at least 1, got {nthread}")
    inspection = inspect_artifact(data, trusted_types)
    names = tuple(spec.name for spec in signature.inputs)
    check_signature(inspection, names)
    _check_task(signature, inspection)
    means = _reference_means(reference_means, len(names))
    if inspection.flavor is Flavor.XGBOOST:
        booster = xgboost.Booster()
        booster.load_model(bytearray(data))
        booster.set_param({"nthread": nthread})
        return XGBoostModel(booster, signature, inspection, nthread=nthread)
    return SklearnModel(_load_skops(data, trusted_types), signature, inspection, means)


class LoadedModel(ABC):
    """A loaded version, ready to predict. ``predict`` may be called from any thread."""

    def __init__(self, signature: ModelSignature, inspection: ModelInspection) -> None:
        self.signature = signature
        self.inspection = inspection
        self.feature_names = tuple(spec.name for spec in signature.inputs)

    @abstractmethod
    def predict(self, features: Features) -> Outputs: ...

    @property
    @abstractmethod
    def engine(self) -> str:
        """What predicts, for the load's log line."""

    @abstractmethod
    def explain(self, features: Features) -> Explanation: ...

    def warm_up(self, budget_s: float = 0.0) -> int:
        """Predict synthetic rows so the first call's cost is paid at load time, and
        answer how many rows one call predicts within ``budget_s`` (0: none, or the
        budget is 0): the batcher predicts batches that small on the event loop, since
        handing a call to a thread and back costs more than predicting a few rows.

        The row is zero (clipped into declared ranges) with each categorical feature's
        first declared category. A failure is raised, unless the row had to invent a
        category the signature does not declare: then it is only logged (and no call
        runs on the loop, its cost being unknown). The cost is a straight line through
        the fastest of a few calls of 1 and of ``CALIBRATION_ROWS`` rows.
        """
        features, invented = synthetic_row(self.signature)
        try:
            self.predict(features)
        except Exception:
            if not invented:
                raise
            logger.warning("warm-up skipped: the model refused a synthetic row", exc_info=True)
            return 0
        if budget_s <= 0:
            return 0
        one = _fastest(self.predict, features)
        many = _fastest(self.predict, _repeated(features, CALIBRATION_ROWS))
        per_row = max(many - one, 0.0) / (CALIBRATION_ROWS - 1)
        fixed = max(one - per_row, 0.0)
        if fixed + per_row > budget_s:
            return 0
        if per_row == 0:
            return MAX_INLINE_ROWS
        return min(MAX_INLINE_ROWS, int((budget_s - fixed) / per_row))

    def _classified(self, probabilities: npt.NDArray[Any]) -> Outputs:
        probabilities = np.ascontiguousarray(probabilities, dtype=np.float32)
        return Outputs(
            {
                "label": np.argmax(probabilities, axis=1).astype(np.int64),
                "probabilities": probabilities,
            }
        )


class DensePredictor:
    """``Booster.inplace_predict`` for a C-contiguous float32 matrix, minus its overhead.

    It is the same XGBoost C call (``XGBoosterPredictFromDense``) with the same
    arguments, but the JSON arguments are made once, the array interface is one format
    string, the answer is copied out with one ``memmove``, and each thread hands XGBoost
    a proxy matrix of its own, made once. The wrapper re-derives its arguments (and
    checks for pandas, Arrow, polars, cuDF) on every call, and without a proxy XGBoost
    makes one per call, with a fresh context that reads the cgroup CPU quota from disk
    and compiles a regular expression: measured here with a 100-tree model, 410 µs of
    CPU per one-row call against 55 µs this way. The answer's shape is XGBoost's, as
    ``inplace_predict`` returns it. Thread-safe as ``inplace_predict`` is: the proxy is
    per thread, and the output buffer XGBoost fills belongs to the calling thread and
    is copied before returning.
    """

    def __init__(self, booster: xgboost.Booster, *, margin: bool = False) -> None:
        self._booster = booster  # keeps the handle alive
        self._handle = booster.handle
        self._function = _LIB.XGBoosterPredictFromDense
        self._width = booster.num_features()
        self._margin = margin
        self._local = threading.local()
        # The arguments inplace_predict passes, made by the wrapper's own helper.
        self._config = make_jcargs(
            type=1 if margin else 0,
            training=False,
            iteration_begin=0,
            iteration_end=0,
            missing=math.nan,
            strict_shape=False,
            cache_id=0,
        )

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        check_matrix(x, self._width)
        if not len(x):  # XGBoost's C answer has another shape for no rows: keep the wrapper's
            kind = "margin" if self._margin else "value"
            return np.asarray(self._booster.inplace_predict(x, predict_type=kind))
        interface = (
            f'{{"data":[{x.ctypes.data},true],"shape":[{x.shape[0]},{x.shape[1]}],'
            f'"strides":null,"typestr":"<f4","version":3}}'
        ).encode()
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()  # bst_ulong
        out = ctypes.POINTER(ctypes.c_float)()
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            proxy = self._local.proxy = _ProxyDMatrix()
        _check_call(
            self._function(
                self._handle,
                interface,
                self._config,
                proxy.handle,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(out),
            )
        )
        dimensions = tuple(int(shape[i]) for i in range(dims.value))
        size = math.prod(dimensions)
        answer = np.empty(dimensions, dtype=np.float32)
        ctypes.memmove(answer.ctypes.data, out, size * 4)
        return answer


# With XGBoost threads per call (nthread > 1), batches of at least this many rows predict
# through XGBoost rather than the one-thread compiled walk.
THREADED_ROWS = 256


class XGBoostModel(LoadedModel):
    """A ``Booster`` predicting through its trees compiled for Keel's own walk when they
    answer exactly what XGBoost does (``services.inference.trees``), else through
    ``DensePredictor`` (no DMatrix per call)."""

    def __init__(
        self,
        booster: xgboost.Booster,
        signature: ModelSignature,
        inspection: ModelInspection,
        *,
        nthread: int,
    ) -> None:
        super().__init__(signature, inspection)
        self.booster = booster
        self.nthread = nthread
        self.objective = str(json.loads(booster.save_config())["learner"]["objective"]["name"])
        # multi:softmax answers labels: its probabilities come from the margins
        margin = self.objective == "multi:softmax"
        self.compiled: Compiled | None = verified(booster, margin=margin)
        self._dense = DensePredictor(booster, margin=margin)
        # A classifier whose walk answers probabilities gets its whole answer in one call.
        self._classify = None
        if self.compiled is not None and self.compiled.classifies and signature.is_classifier:
            self._classify = self.compiled.classify

    @property
    def engine(self) -> str:
        if self.compiled is None:
            return "XGBoost"
        if self.nthread > 1:
            return f"Keel's tree walk, XGBoost from {THREADED_ROWS} rows"
        return "Keel's tree walk"

    def _walks(self, rows: int) -> bool:
        # The walk is one thread: XGBoost's own threads (KEEL_INFERENCE_MODEL_THREADS > 1)
        # predict large batches faster.
        return self.compiled is not None and (self.nthread == 1 or rows < THREADED_ROWS)

    def _predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self.compiled is not None and self._walks(len(x)):
            return self.compiled(x)
        return self._dense(x)

    def predict(self, features: Features) -> Outputs:
        x = np.ascontiguousarray(features.numeric, dtype=np.float32)
        if self._classify is not None and self._walks(len(x)):
            labels, probabilities = self._classify(x)
            return Outputs({"label": labels, "probabilities": probabilities})
        if self.objective == "multi:softmax":
            margin = self._predict(x)
            shifted = np.exp(margin - margin.max(axis=1, keepdims=True))
            return self._classified(shifted / shifted.sum(axis=1, keepdims=True))
        raw = self._predict(x)
        if not self.signature.is_classifier:
            return Outputs({"prediction": raw.reshape(len(x))})
        if raw.ndim == 2:
            return self._classified(raw)
        if self.objective == "binary:logitraw":
            raw = (1.0 / (1.0 + np.exp(-raw))).astype(np.float32)
        return self._classified(np.stack([1.0 - raw, raw], axis=1))

    def explain(self, features: Features) -> Explanation:
        return explain_xgboost(
            self.booster, features.numeric, self.feature_names, nthread=self.nthread
        )


class SklearnModel(LoadedModel):
    """A scikit-learn estimator or Pipeline: ``predict_proba`` / ``predict``.

    Its input is built as it was fitted: a pandas DataFrame in signature order if the
    model recorded ``feature_names_in_`` and pandas is importable; otherwise a numpy
    object array with the raw strings of categorical features, or the float32 matrix
    when every feature is numeric.
    """

    def __init__(
        self,
        model: Any,
        signature: ModelSignature,
        inspection: ModelInspection,
        reference_means: npt.NDArray[np.float64] | None,
    ) -> None:
        super().__init__(signature, inspection)
        self.model = model
        self._pandas = _pandas() if hasattr(model, "feature_names_in_") else None
        self._categorical = [
            (i, spec.name) for i, spec in enumerate(signature.inputs) if spec.kind == "CATEGORICAL"
        ]
        if signature.is_classifier and not hasattr(model, "predict_proba"):
            raise InvalidArgument(
                f"artifact: the {type(model).__name__} classifier has no predict_proba; "
                f"the signature promises probabilities"
            )
        self._explainer: LinearExplainer | None = None
        if signature.all_numeric:
            self._explainer = linear_explainer(
                model,
                names=self.feature_names,
                outputs=1 if len(getattr(model, "classes_", ())) <= 2 else len(model.classes_),
                reference_means=reference_means,
                to_input=self._numeric_input,
            )

    @property
    def engine(self) -> str:
        return "scikit-learn"

    def predict(self, features: Features) -> Outputs:
        x = self._input(features)
        if self.signature.is_classifier:
            return self._classified(self.model.predict_proba(x))
        prediction = np.asarray(self.model.predict(x), dtype=np.float32)
        return Outputs({"prediction": prediction.reshape(features.rows)})

    def explain(self, features: Features) -> Explanation:
        if self._explainer is None:
            raise unexplainable(type(self.model).__name__)
        return self._explainer.explain(features.numeric)

    def _numeric_input(self, numeric: FloatArray) -> Any:
        if self._pandas is None:
            return numeric
        return self._pandas.DataFrame(numeric, columns=list(self.feature_names), copy=False)

    def _input(self, features: Features) -> Any:
        if not self._categorical:
            return self._numeric_input(features.numeric)
        raw = {name: self._raw_column(features, name) for _, name in self._categorical}
        if self._pandas is not None:
            columns: dict[str, Any] = {
                name: features.numeric[:, i] for i, name in enumerate(self.feature_names)
            }
            columns.update(raw)
            return self._pandas.DataFrame(columns, copy=False)
        mixed = features.numeric.astype(object)
        for i, name in self._categorical:
            mixed[:, i] = raw[name]
        return mixed

    @staticmethod
    def _raw_column(features: Features, name: str) -> npt.NDArray[Any]:
        column = features.columns.get(name)
        if column is None or column.shape != (features.rows,):
            raise InvalidArgument(
                f"input '{name}': expected the raw values of a categorical feature "
                f"[{features.rows}], got {'none' if column is None else list(column.shape)}"
            )
        return column


CALIBRATION_ROWS = 64
CALIBRATION_CALLS = 5
MAX_INLINE_ROWS = 4096


def _fastest(predict: Callable[[Features], Outputs], features: Features) -> float:
    """Seconds of the fastest of a few calls (the others met a cold cache or the
    scheduler)."""
    best = math.inf
    for _ in range(CALIBRATION_CALLS):
        started = time.perf_counter()
        predict(features)
        best = min(best, time.perf_counter() - started)
    return best


def _repeated(features: Features, rows: int) -> Features:
    return Features(
        numeric=np.ascontiguousarray(np.repeat(features.numeric, rows, axis=0)),
        columns={name: np.repeat(column, rows) for name, column in features.columns.items()},
    )


def synthetic_row(signature: ModelSignature) -> tuple[Features, bool]:
    """One valid-looking row for warm-up, and whether a category had to be invented."""
    numeric = np.zeros((1, len(signature.inputs)), dtype=np.float32)
    columns: dict[str, npt.NDArray[np.generic]] = {}
    invented = False
    for i, spec in enumerate(signature.inputs):
        if spec.kind == "CATEGORICAL":
            invented = invented or not spec.categories
            value = spec.categories[0] if spec.categories else ""
            columns[spec.name] = np.array([value], dtype=object)
            continue
        low = spec.min if spec.min is not None else -np.inf
        high = spec.max if spec.max is not None else np.inf
        numeric[0, i] = np.clip(0.0, low, high)
        columns[spec.name] = numeric[:, i].copy()
    return Features(numeric=numeric, columns=columns), invented


def _check_task(signature: ModelSignature, inspection: ModelInspection) -> None:
    found = inspection.n_classes
    what = f"the artifact holds a {inspection.model_type}"
    if signature.is_classifier and found is None:
        raise InvalidArgument(f"signature: task {signature.task}, but {what} (a regressor)")
    if not signature.is_classifier and found is not None:
        raise InvalidArgument(f"signature: task REGRESSION, but {what} with {found} classes")
    if signature.task == "BINARY_CLASSIFICATION" and found != 2:
        raise InvalidArgument(
            f"signature: task BINARY_CLASSIFICATION, but {what} with {found} classes"
        )
    if signature.class_labels and len(signature.class_labels) != found:
        raise InvalidArgument(
            f"signature: {len(signature.class_labels)} class labels, but {what} "
            f"with {found} classes"
        )


def _reference_means(value: npt.ArrayLike | None, width: int) -> npt.NDArray[np.float64] | None:
    if value is None:
        return None
    means = np.asarray(value, dtype=np.float64)
    if means.shape != (width,) or not np.isfinite(means).all():
        raise InvalidArgument(
            f"reference_means: expected {width} finite values, got shape {list(means.shape)}"
        )
    return means


def _load_skops(data: bytes, trusted_types: frozenset[str]) -> Any:
    import skops.io

    found = skops.io.get_untrusted_types(data=data)
    refused = sorted(set(found) - trusted_types)
    if refused:  # inspect_artifact refused these already; never load what it did not vet
        raise UnsafeArtifact(f"artifact: the skops file contains untrusted types {refused}")
    model = skops.io.loads(data, trusted=found)
    check_tree_structures(model)
    return model


def _pandas() -> ModuleType | None:
    try:
        return importlib.import_module("pandas")
    except ImportError:
        return None
