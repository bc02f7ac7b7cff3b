"""Safe format detection and inspection of model artifacts: nothing is ever unpickled.

Accepted: XGBoost's own JSON and UBJSON model files (read by ``xgboost.Booster`` from a
buffer) and skops files whose every type skops does not trust by itself is on the
server's allowlist. Pickle streams (joblib, cloudpickle, compressed or not) and anything
unrecognised are refused before any library sees them. Library errors are logged, never
passed to the caller: a message names what was found and what is accepted.
"""

from __future__ import annotations

import bz2
import io
import json
import logging
import lzma
import pickletools
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from services.common.errors import InvalidArgument

logger = logging.getLogger(__name__)

ACCEPTED = "accepted formats: XGBoost JSON, XGBoost UBJSON, skops"

# Types skops does not trust by itself (it trusts every public scikit-learn estimator
# and numpy/scipy primitives) that common fitted models contain. Tree and TreePredictor
# are refused by skops because their node indices are not bounds-checked by
# scikit-learn; this module checks every node of both before accepting a file.
DEFAULT_TRUSTED_TYPES: frozenset[str] = frozenset(
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

_MAX_UNZIPPED_BYTES = 4 << 30  # a skops archive may not expand beyond this
_SNIFF_BYTES = 1 << 16  # decompressed prefix looked at to name a compressed file
_MAX_PICKLE_OPS = 10_000  # opcodes read (never executed) to name a pickle stream


class ArtifactFormat(StrEnum):
    XGBOOST_JSON = "xgboost_json"
    XGBOOST_UBJSON = "xgboost_ubjson"
    SKOPS = "skops"


class Flavor(StrEnum):
    XGBOOST = "xgboost"
    SKLEARN = "sklearn"


class UnsafeArtifact(InvalidArgument):
    """The artifact is of a format that could run code when loaded, or is not accepted."""

    reason = "UNSAFE_ARTIFACT"


class CorruptArtifact(InvalidArgument):
    """The artifact claims an accepted format but cannot be read (truncated, damaged)."""

    reason = "CORRUPT_ARTIFACT"


@dataclass(frozen=True)
class ModelInspection:
    """What the server learnt by loading an artifact safely."""

    format: ArtifactFormat
    flavor: Flavor
    flavor_version: str
    n_features: int | None
    feature_names: tuple[str, ...] | None
    n_classes: int | None
    model_type: str


def accepted_format(head: bytes) -> ArtifactFormat | None:
    """The accepted format the first bytes of a file announce, or None. Only a claim:
    ``inspect_artifact`` proves it (and refuses what it is not)."""
    if head.startswith(b"PK\x03\x04"):
        return ArtifactFormat.SKOPS
    start = head[:16].lstrip()
    if start.startswith(b"{"):
        after = start[1:].lstrip()[:1]
        if after in (b'"', b"}"):
            return ArtifactFormat.XGBOOST_JSON
        if after in (b"i", b"U", b"I", b"l", b"L", b"$", b"#"):
            return ArtifactFormat.XGBOOST_UBJSON
    return None


def inspect_artifact(
    data: bytes, trusted_types: frozenset[str] = DEFAULT_TRUSTED_TYPES
) -> ModelInspection:
    """Detect the format of ``data`` from its bytes and read the model's shape safely."""
    head = data[:16].lstrip()
    if data.startswith(b"PK\x03\x04"):
        return _inspect_skops(data, trusted_types)
    if head.startswith(b"{"):
        after = head[1:].lstrip()[:1]
        if after in (b'"', b"}"):
            return _inspect_xgboost(data, ArtifactFormat.XGBOOST_JSON)
        if after in (b"i", b"U", b"I", b"l", b"L", b"$", b"#"):
            return _inspect_xgboost(data, ArtifactFormat.XGBOOST_UBJSON)
    raise UnsafeArtifact(f"artifact: {_describe(data)} is refused; {ACCEPTED}")


def check_signature(inspection: ModelInspection, feature_names: Sequence[str]) -> None:
    """Refuse a signature whose inputs do not match what the model was trained with."""
    if inspection.n_features is not None and inspection.n_features != len(feature_names):
        raise InvalidArgument(
            f"signature: {len(feature_names)} inputs, but the model was trained with "
            f"{inspection.n_features} features"
        )
    if inspection.feature_names is None:
        return
    if len(inspection.feature_names) != len(feature_names):
        raise InvalidArgument(
            f"signature: {len(feature_names)} inputs, but the model was trained with "
            f"{len(inspection.feature_names)} named features"
        )
    for i, (given, trained) in enumerate(zip(feature_names, inspection.feature_names, strict=True)):
        if given != trained:
            raise InvalidArgument(
                f"signature input {i} is {given!r} but the model was trained with {trained!r}"
            )


# --- what is refused -------------------------------------------------------------------

_COMPRESSED: tuple[tuple[bytes, str, Callable[[bytes], bytes]], ...] = (
    (b"\x1f\x8b", "gzip", lambda d: zlib.decompressobj(31).decompress(d, _SNIFF_BYTES)),
    (b"\xfd7zXZ\x00", "xz", lambda d: lzma.LZMADecompressor().decompress(d, _SNIFF_BYTES)),
    (b"\x5d\x00\x00", "lzma", lambda d: lzma.LZMADecompressor().decompress(d, _SNIFF_BYTES)),
    (b"BZh", "bz2", lambda d: bz2.BZ2Decompressor().decompress(d, _SNIFF_BYTES)),
    (b"\x04\x22\x4d\x18", "lz4", lambda d: b""),
)


def _describe(data: bytes) -> str:
    """A short name of what ``data`` is, for a refusal message."""
    if not data:
        return "an empty file"
    kind = _pickle_kind(data)
    if kind:
        return kind
    for magic, codec, prefix in _COMPRESSED:
        if data.startswith(magic):
            return _compressed(codec, prefix, data)
    if len(data) > 1 and data[0] == 0x78 and (data[0] << 8 | data[1]) % 31 == 0:
        return _compressed("zlib", lambda d: zlib.decompressobj().decompress(d, _SNIFF_BYTES), data)
    if data.startswith(b"binf") or data[4:8] == b"binf":
        return "a legacy binary XGBoost model"
    if data.startswith(b"PK"):
        return "a zip archive that is not a skops file"
    if data.lstrip()[:1] in (b"{", b"["):
        return "a JSON document that is not an XGBoost model"
    return "a file of an unrecognised format"


def _compressed(codec: str, prefix: Callable[[bytes], bytes], data: bytes) -> str:
    try:
        inner = prefix(data)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
        inner = b""
    article = "an" if codec in ("xz", "lzma", "lz4") else "a"
    kind = _pickle_kind(inner) if inner else None
    if kind:
        return f"{article} {codec}-compressed {kind.removeprefix('a ')} (as joblib writes them)"
    return f"{article} {codec}-compressed file (joblib writes pickles this way)"


def _pickle_kind(data: bytes) -> str | None:
    """Name a pickle stream from its opcodes, read but never executed; None if not one."""
    if not (data[:1] == b"\x80" and len(data) > 1 and 2 <= data[1] <= 5):
        if not data.rstrip().endswith(b".") or not _parses_as_pickle(data):
            return None
    names = " ".join(_pickle_strings(data))
    if "cloudpickle" in names:
        return "a cloudpickle stream"
    if "joblib" in names:
        return "a joblib file (a pickle stream)"
    return "a pickle stream"


def _parses_as_pickle(data: bytes) -> bool:
    try:
        return any(op.name == "STOP" for op, _, _ in pickletools.genops(io.BytesIO(data)))
    except Exception:
        return False


def _pickle_strings(data: bytes) -> Iterator[str]:
    try:
        for count, (_, arg, _) in enumerate(pickletools.genops(io.BytesIO(data))):
            if count >= _MAX_PICKLE_OPS:
                return
            if isinstance(arg, str):
                yield arg
    except Exception:
        return


# --- XGBoost ---------------------------------------------------------------------------

_UBJ_VERSION = re.compile(rb"\x07version\[#L\x00{7}\x03[iU](.)[iU](.)[iU](.)\}\s*$", re.S)
_JSON_VERSION = re.compile(rb'"version"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]\s*\}\s*$')


def _inspect_xgboost(data: bytes, fmt: ArtifactFormat) -> ModelInspection:
    import xgboost

    label = "XGBoost JSON" if fmt is ArtifactFormat.XGBOOST_JSON else "XGBoost UBJSON"
    key = b'"learner"' if fmt is ArtifactFormat.XGBOOST_JSON else b"\x07learner"
    if key not in data:
        raise UnsafeArtifact(f"artifact: {_describe(data)} is refused; {ACCEPTED}")
    try:
        booster = xgboost.Booster(model_file=bytearray(data))
        config = json.loads(booster.save_config())["learner"]
        objective = str(config["objective"]["name"])
        num_class = int(config["learner_model_param"]["num_class"])
        n_features = booster.num_features()
        names = booster.feature_names
    except Exception as error:
        logger.info("XGBoost could not load an artifact: %s", error)
        raise CorruptArtifact(
            f"artifact: the {label} model is truncated or corrupt (XGBoost cannot load it)"
        ) from None
    if objective.startswith("binary:"):
        n_classes: int | None = 2
    elif objective.startswith("multi:"):
        n_classes = num_class
    else:
        n_classes = None
    return ModelInspection(
        format=fmt,
        flavor=Flavor.XGBOOST,
        flavor_version=_xgboost_version(data, fmt, xgboost.__version__),
        n_features=n_features or None,
        feature_names=tuple(names) if names else None,
        n_classes=n_classes,
        model_type=objective,
    )


def _xgboost_version(data: bytes, fmt: ArtifactFormat, default: str) -> str:
    """The version of XGBoost that wrote the file, from its trailing ``version`` key."""
    tail = data[-128:]
    if fmt is ArtifactFormat.XGBOOST_JSON:
        match = _JSON_VERSION.search(tail)
        return ".".join(g.decode() for g in match.groups()) if match else default
    match = _UBJ_VERSION.search(tail)
    return ".".join(str(g[0]) for g in match.groups()) if match else default


# --- skops -----------------------------------------------------------------------------


def _inspect_skops(data: bytes, trusted_types: frozenset[str]) -> ModelInspection:
    import sklearn
    import skops.io
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    schema = _skops_schema(data)
    try:
        found = skops.io.get_untrusted_types(data=data)
    except Exception as error:
        logger.info("skops could not audit an artifact: %s", error)
        raise CorruptArtifact("artifact: the skops file is truncated or corrupt") from None
    refused = sorted(t for t in found if t not in trusted_types)
    if refused:
        shown = ", ".join(repr(t[:120]) for t in refused[:10])
        more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
        raise UnsafeArtifact(
            f"artifact: the skops file contains types that are not on the server's "
            f"allowlist: {shown}{more}; it was not loaded"
        )
    try:
        model = skops.io.loads(data, trusted=found)
    except Exception as error:
        logger.info("skops could not load an artifact: %s", error)
        raise CorruptArtifact("artifact: the skops file is truncated or corrupt") from None
    if not callable(getattr(model, "predict", None)):
        raise UnsafeArtifact(
            f"artifact: the skops file holds a {type(model).__name__}, not a model "
            f"with a predict method"
        )
    try:
        check_is_fitted(model)
    except (NotFittedError, TypeError):
        raise InvalidArgument(
            f"artifact: the {type(model).__name__} in the skops file is not fitted"
        ) from None
    check_tree_structures(model)
    return ModelInspection(
        format=ArtifactFormat.SKOPS,
        flavor=Flavor.SKLEARN,
        flavor_version=_sklearn_version(schema) or sklearn.__version__,
        n_features=_optional_int(getattr(model, "n_features_in_", None)),
        feature_names=_feature_names(getattr(model, "feature_names_in_", None)),
        n_classes=_n_classes(getattr(model, "classes_", None)),
        model_type=type(model).__name__,
    )


def _skops_schema(data: bytes) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if "schema.json" not in names:
                raise UnsafeArtifact(
                    f"artifact: a zip archive that is not a skops file (no schema.json) "
                    f"is refused; {ACCEPTED}"
                )
            if sum(info.file_size for info in archive.infolist()) > _MAX_UNZIPPED_BYTES:
                raise InvalidArgument(
                    f"artifact: the skops file expands beyond {_MAX_UNZIPPED_BYTES} bytes"
                )
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        logger.info("an artifact is not a readable zip archive: %s", error)
        raise CorruptArtifact("artifact: the skops file is truncated or corrupt") from None
    if not isinstance(schema, dict):
        raise CorruptArtifact("artifact: the skops file's schema.json is not a JSON object")
    return schema


def _sklearn_version(schema: dict[str, Any]) -> str | None:
    try:
        node = schema["content"]["content"]["_sklearn_version"]
        version = json.loads(node["content"])
    except (KeyError, TypeError, ValueError):
        return None
    return version if isinstance(version, str) and len(version) <= 40 else None


def _optional_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | np.integer) else None


def _feature_names(value: object) -> tuple[str, ...] | None:
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return tuple(str(name) for name in value)
    return None


def _n_classes(value: object) -> int | None:
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return len(value)
    return None


# --- tree structures -------------------------------------------------------------------


def check_tree_structures(model: object) -> None:
    """Bounds-check every decision tree in ``model`` before anything predicts with it.

    scikit-learn walks tree nodes without bounds checks, so a crafted file with child
    or feature indices out of range would read outside its arrays. Each internal node's
    children must come after it (no cycles) and its feature must be below the width of
    the input the tree is given: the tree's own, and its ensemble's, which checks the
    input for all of its trees.
    """
    from sklearn.ensemble._forest import BaseForest
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import (
        BaseHistGradientBoosting,
    )
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree import BaseDecisionTree
    from sklearn.tree._tree import Tree

    owners = (BaseDecisionTree, BaseForest, BaseGradientBoosting, BaseHistGradientBoosting)
    stack: list[tuple[object, float]] = [(model, float("inf"))]
    seen: set[int] = set()
    while stack:
        obj, limit = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tree | TreePredictor) and limit == float("inf"):
            raise _bad_tree("a decision tree outside a model that records its input width")
        if isinstance(obj, Tree):
            _check_tree(obj, min(limit, obj.n_features))
            continue
        if isinstance(obj, TreePredictor):
            _check_predictor(obj, limit)
        if isinstance(obj, owners):
            width = vars(obj).get("n_features_in_")  # the trees of a forest have none
            if isinstance(width, int | np.integer):
                limit = min(limit, int(width))
        elif not isinstance(obj, dict | list | tuple | np.ndarray):
            limit = float("inf")  # any other estimator checks its own input
        stack.extend((child, limit) for child in _children(obj))


def _children(obj: object) -> list[object]:
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, list | tuple):
        return list(obj)
    if isinstance(obj, np.ndarray):
        return list(obj.flat) if obj.dtype == object else []
    if type(obj).__module__.startswith("sklearn") and hasattr(obj, "__dict__"):
        return list(vars(obj).values())
    return []


def _check_tree(tree: Any, limit: float) -> None:
    n = int(tree.node_count)
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    if not (left.shape == right.shape == feature.shape == (n,)) or tree.value.shape[0] != n:
        raise _bad_tree("a decision tree whose node arrays disagree in length")
    _check_nodes(left, right, feature, left == -1, limit)


def _check_predictor(predictor: Any, limit: float) -> None:
    nodes = predictor.nodes
    leaf = nodes["is_leaf"].astype(bool)
    _check_nodes(nodes["left"], nodes["right"], nodes["feature_idx"], leaf, limit)
    categorical = ~leaf & nodes["is_categorical"].astype(bool)
    bitsets = min(len(predictor.raw_left_cat_bitsets), len(predictor.binned_left_cat_bitsets))
    if categorical.any() and int(nodes["bitset_idx"][categorical].max()) >= bitsets:
        raise _bad_tree("a histogram tree whose category index is out of range")


def _check_nodes(left: Any, right: Any, feature: Any, leaf: Any, limit: float) -> None:
    inner = np.flatnonzero(~leaf)
    n = len(leaf)
    for child in (left[inner], right[inner]):
        if ((child <= inner) | (child >= n)).any():
            raise _bad_tree("a decision tree with a child index out of range")
    if ((feature[inner] < 0) | (feature[inner] >= limit)).any():
        raise _bad_tree("a decision tree that reads a feature beyond its input")


def _bad_tree(what: str) -> UnsafeArtifact:
    return UnsafeArtifact(f"artifact: the skops file contains {what}; it was refused")
