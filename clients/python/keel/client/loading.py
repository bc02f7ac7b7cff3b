"""``load_model``: a registered version's artifact, downloaded, verified and loaded
in-process without ever unpickling.

- The bytes must hash to the version's registered sha256 (``ArtifactRefused``
  otherwise): they are then exactly the bytes the registry inspected when it accepted
  the version (its safe loader also bounds-checks every tree of a scikit-learn model).
- XGBoost JSON/UBJSON files are read by XGBoost itself into its scikit-learn API class
  (``XGBClassifier`` or ``XGBRegressor``, by the model's task).
- skops files load only when every type skops does not trust by itself is on
  ``TRUSTED_TYPES`` (the server's allowlist); anything else, pickles included, is refused
  before a library reads it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from keel.client._optional import require
from keel.client.errors import ArtifactRefused
from keel.common.v1 import schema_pb2
from keel.registry.v1 import model_pb2

DEFAULT_ALIAS = "production"
_MODEL_ID = re.compile(r"[a-z0-9-]{1,63}")
_ALIAS = re.compile(r"[a-z0-9-]{1,63}")
# Types skops does not trust by itself that common fitted models contain: the same
# list as the services' safe loader (services/common/safe_load.py).
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.utils._bunch.Bunch",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.feature_selection._univariate_selection.chi2",
    }
)
_XGBOOST_JSON_NEXT = (b'"', b"}")
_XGBOOST_UBJSON_NEXT = (b"i", b"U", b"I", b"l", b"L", b"$", b"#")


@dataclass(frozen=True)
class ModelReference:
    """``name@alias``, ``name@3`` or ``name`` (the ``production`` alias)."""

    model: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, reference: str) -> ModelReference:
        model, sep, rest = reference.strip().partition("@")
        if not _MODEL_ID.fullmatch(model):
            raise ValueError(
                f"reference {reference!r}: expected name, name@alias or name@version "
                "(names are 1-63 of a-z, 0-9 and '-')"
            )
        if not sep:
            return cls(model, alias=DEFAULT_ALIAS)
        if rest.isdigit() and int(rest) > 0:
            return cls(model, version=int(rest))
        if rest.isdigit() or not _ALIAS.fullmatch(rest):
            raise ValueError(f"reference {reference!r}: {rest!r} is not a version or an alias")
        return cls(model, alias=rest)


def load_artifact(
    data: bytes,
    *,
    sha256: str,
    flavor: model_pb2.Flavor.ValueType,
    task: schema_pb2.Task.ValueType,
    trusted_types: frozenset[str] = TRUSTED_TYPES,
) -> Any:
    """The model in ``data``, once its digest and format are checked."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256.lower():
        raise ArtifactRefused(
            f"artifact: sha256 is {digest} but the version records {sha256}; "
            "the download is corrupt, nothing was loaded"
        )
    head = data[:16].lstrip()
    if data.startswith(b"PK\x03\x04") and flavor == model_pb2.FLAVOR_SKLEARN:
        return _load_skops(data, trusted_types)
    after = head[1:].lstrip()[:1]
    xgboost_file = head.startswith(b"{") and after in _XGBOOST_JSON_NEXT + _XGBOOST_UBJSON_NEXT
    if xgboost_file and flavor == model_pb2.FLAVOR_XGBOOST:
        return _load_xgboost(data, task)
    raise ArtifactRefused(
        f"artifact: not an XGBoost JSON/UBJSON or skops file of flavor "
        f"{model_pb2.Flavor.Name(flavor)}; it was not loaded"
    )


def _load_xgboost(data: bytes, task: schema_pb2.Task.ValueType) -> Any:
    xgboost = require("xgboost")
    if task == schema_pb2.TASK_REGRESSION:
        model = xgboost.XGBRegressor()
    elif task in (schema_pb2.TASK_BINARY_CLASSIFICATION, schema_pb2.TASK_MULTICLASS_CLASSIFICATION):
        model = xgboost.XGBClassifier()
    else:
        raise ArtifactRefused("artifact: the model has no task; cannot tell which XGBoost class")
    try:
        model.load_model(bytearray(data))
    except xgboost.core.XGBoostError as error:
        raise ArtifactRefused(f"artifact: XGBoost cannot read it ({error})") from None
    return model


def _load_skops(data: bytes, trusted_types: frozenset[str]) -> Any:
    skops_io = require("skops.io")
    try:
        found = skops_io.get_untrusted_types(data=data)
    except Exception as error:  # noqa: BLE001 - any failure to audit refuses the file
        raise ArtifactRefused(f"artifact: the skops file cannot be audited ({error})") from None
    refused = sorted(t for t in found if t not in trusted_types)
    if refused:
        raise ArtifactRefused(
            "artifact: the skops file contains types that are not on the allowlist: "
            + ", ".join(repr(t[:120]) for t in refused[:10])
        )
    return skops_io.loads(data, trusted=found)
