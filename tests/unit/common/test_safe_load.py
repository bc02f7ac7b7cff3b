"""Safe loading: real tiny models are inspected; pickles and untrusted types never run."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import pathlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn
import skops.io
import xgboost
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.tree._tree import Tree

from services.common.errors import InvalidArgument
from services.common.safe_load import (
    ArtifactFormat,
    CorruptArtifact,
    Flavor,
    ModelInspection,
    UnsafeArtifact,
    check_signature,
    inspect_artifact,
)

joblib: Any = pytest.importorskip("joblib")
cloudpickle: Any = pytest.importorskip("cloudpickle")

NAMES = ("age", "income", "tenure", "visits")
ACCEPTED = "accepted formats: XGBoost JSON, XGBoost UBJSON, skops"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 4))
    binary = (x[:, 0] + x[:, 1] > 0).astype(int)
    three = np.digitize(x[:, 2], [-0.5, 0.5])
    return x, binary, three


def _booster(model: Any, names: tuple[str, ...] | None = None) -> Any:
    booster = model.get_booster()
    if names is not None:
        booster.feature_names = list(names)
    return booster


class Exploit:
    """Unpickling this calls ``Path.touch`` on ``target``: code runs on load."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (pathlib.Path.touch, (self.target,))


class Custom:
    """A class skops has never heard of."""

    def __init__(self) -> None:
        self.weights = [1.0, 2.0]

    def predict(self, x: Any) -> Any:
        return x


# --- accepted formats ------------------------------------------------------------------


def test_xgboost_classifier_json_is_inspected(data: Any) -> None:
    x, y, _ = data
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    raw = bytes(_booster(model).save_raw("json"))

    got = inspect_artifact(raw)

    assert got == ModelInspection(
        format=ArtifactFormat.XGBOOST_JSON,
        flavor=Flavor.XGBOOST,
        flavor_version=xgboost.__version__,
        n_features=4,
        feature_names=None,
        n_classes=2,
        model_type="binary:logistic",
    )


def test_xgboost_multiclass_ubjson_keeps_feature_names(data: Any) -> None:
    x, _, y = data
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    raw = bytes(_booster(model, NAMES).save_raw("ubj"))

    got = inspect_artifact(raw)

    assert got.format is ArtifactFormat.XGBOOST_UBJSON
    assert got.flavor_version == xgboost.__version__
    assert (got.n_features, got.feature_names) == (4, NAMES)
    assert (got.n_classes, got.model_type) == (3, "multi:softprob")


def test_xgboost_regressor_has_no_classes(data: Any) -> None:
    x, _, _ = data
    model = xgboost.XGBRegressor(n_estimators=5, max_depth=2).fit(x, x[:, 0] * 2.0)
    got = inspect_artifact(bytes(_booster(model).save_raw("ubj")))
    assert (got.n_classes, got.model_type, got.n_features) == (None, "reg:squarederror", 4)


def test_sklearn_logistic_regression_is_inspected(data: Any) -> None:
    x, y, _ = data
    model = LogisticRegression().fit(x, y)

    got = inspect_artifact(skops.io.dumps(model))

    assert got == ModelInspection(
        format=ArtifactFormat.SKOPS,
        flavor=Flavor.SKLEARN,
        flavor_version=sklearn.__version__,
        n_features=4,
        feature_names=None,
        n_classes=2,
        model_type="LogisticRegression",
    )


def test_sklearn_pipeline_reports_feature_names_and_classes(data: Any) -> None:
    x, _, y = data
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])
    pipeline.fit(x, y)
    # What fitting on a data frame records; set directly to keep the test numpy-only.
    pipeline.steps[0][1].feature_names_in_ = np.asarray(NAMES, dtype=object)

    got = inspect_artifact(skops.io.dumps(pipeline))

    assert (got.model_type, got.n_features, got.n_classes) == ("Pipeline", 4, 3)
    assert got.feature_names == NAMES


@pytest.mark.parametrize(
    "make",
    [
        lambda x, y: RandomForestClassifier(n_estimators=5, max_depth=3).fit(x, y),
        lambda x, y: HistGradientBoostingClassifier(max_iter=5).fit(x, y),
        lambda x, y: GradientBoostingRegressor(n_estimators=5).fit(x, y.astype(float)),
    ],
    ids=["random-forest", "hist-gradient-boosting", "gradient-boosting"],
)
def test_tree_models_load_with_the_default_allowlist(data: Any, make: Any) -> None:
    x, y, _ = data
    model = make(x, y)
    got = inspect_artifact(skops.io.dumps(model))
    assert (got.n_features, got.model_type) == (4, type(model).__name__)


def test_an_empty_allowlist_refuses_tree_nodes_skops_does_not_trust(data: Any) -> None:
    x, y, _ = data
    raw = skops.io.dumps(RandomForestClassifier(n_estimators=2).fit(x, y))
    with pytest.raises(UnsafeArtifact, match=r"not on the server's allowlist: 'sklearn\.tree"):
        inspect_artifact(raw, trusted_types=frozenset())


# --- pickles never run -----------------------------------------------------------------


def _payloads(target: Path, folder: Path) -> dict[str, bytes]:
    plain = pickle.dumps(Exploit(target), protocol=5)
    files: dict[str, bytes] = {
        "pickle": plain,
        "pickle-protocol-0": pickle.dumps(Exploit(target), protocol=0),
        "gzip-pickle": gzip.compress(plain),
        "bz2-pickle": bz2.compress(plain),
        "xz-pickle": lzma.compress(plain),
        # cloudpickle ships a function by value; calling it on load touches the file.
        "cloudpickle": cloudpickle.dumps(_by_value_exploit(target)),
    }
    joblib_files = [("joblib", 0), ("joblib-zlib", ("zlib", 3)), ("joblib-gzip", ("gzip", 3))]
    for name, compress in joblib_files:
        path = folder / f"{name}.joblib"
        joblib.dump(Exploit(target), path, compress=compress)
        files[name] = path.read_bytes()
    return files


def _by_value_exploit(target: Path) -> Any:
    touch = lambda path: pathlib.Path(path).touch()  # noqa: E731 (pickled by value)

    class Reducer:
        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return (touch, (str(target),))

    return Reducer()


def test_the_payloads_would_run_code_if_unpickled(tmp_path: Path) -> None:
    """The control: each payload really creates the file when loaded the unsafe way."""
    target = tmp_path / "control"
    for name, payload in _payloads(target, tmp_path).items():
        if name.startswith("joblib"):
            (tmp_path / "control.joblib").write_bytes(payload)
            joblib.load(tmp_path / "control.joblib")
        elif name in ("gzip-pickle", "bz2-pickle", "xz-pickle"):
            continue  # the plain pickle inside is the same as "pickle"
        else:
            pickle.loads(payload)
        assert target.exists(), name
        target.unlink()


@pytest.mark.parametrize(
    ("name", "detected"),
    [
        ("pickle", "a pickle stream is refused"),
        ("pickle-protocol-0", "a pickle stream is refused"),
        ("gzip-pickle", "a gzip-compressed pickle stream"),
        ("bz2-pickle", "a bz2-compressed pickle stream"),
        ("xz-pickle", "an xz-compressed pickle stream"),
        ("cloudpickle", "a cloudpickle stream is refused"),
        ("joblib", "a pickle stream is refused"),
        ("joblib-zlib", "a zlib-compressed pickle stream"),
        ("joblib-gzip", "a gzip-compressed pickle stream"),
    ],
)
def test_malicious_pickles_are_refused_and_never_run(
    tmp_path: Path, name: str, detected: str
) -> None:
    target = tmp_path / "pwned"
    payload = _payloads(target, tmp_path)[name]

    with pytest.raises(UnsafeArtifact) as refused:
        inspect_artifact(payload)

    assert detected in refused.value.message
    assert refused.value.message.endswith(ACCEPTED)
    assert isinstance(refused.value, InvalidArgument)
    assert not target.exists()


# --- skops with untrusted types --------------------------------------------------------


def test_skops_file_with_a_custom_class_is_refused_naming_it(tmp_path: Path) -> None:
    raw = skops.io.dumps(Custom())
    name = f"{Custom.__module__}.Custom"

    with pytest.raises(UnsafeArtifact, match="not on the server's allowlist") as refused:
        inspect_artifact(raw)

    assert repr(name) in refused.value.message


def test_skops_file_calling_os_system_is_refused(data: Any) -> None:
    x, _, _ = data
    transformer = FunctionTransformer(os.system)
    with pytest.raises(UnsafeArtifact, match=rf"'{os.name}\.system'|'posix\.system'"):
        inspect_artifact(skops.io.dumps(transformer))


def test_skops_file_holding_no_model_is_refused() -> None:
    with pytest.raises(UnsafeArtifact, match="holds a dict, not a model"):
        inspect_artifact(skops.io.dumps({"weights": [1, 2]}))


def test_unfitted_model_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="LogisticRegression in the skops file is not fitted"):
        inspect_artifact(skops.io.dumps(LogisticRegression()))


def _tampered_tree(data: Any, field: str, value: int) -> bytes:
    x, y, _ = data
    model = DecisionTreeClassifier(max_depth=3).fit(x, y)
    state = model.tree_.__getstate__()
    state["nodes"] = state["nodes"].copy()
    state["nodes"][field][0] = value
    tree = Tree(model.n_features_in_, np.array([model.n_classes_], dtype=np.intp), 1)
    tree.__setstate__(state)
    model.tree_ = tree
    raw: bytes = skops.io.dumps(model)
    return raw


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("left_child", 10_000, "child index out of range"),
        ("right_child", 0, "child index out of range"),
        ("feature", 4, "reads a feature beyond its input"),
    ],
)
def test_crafted_tree_nodes_are_refused(data: Any, field: str, value: int, message: str) -> None:
    with pytest.raises(UnsafeArtifact, match=message):
        inspect_artifact(_tampered_tree(data, field, value))


def test_crafted_histogram_tree_nodes_are_refused(data: Any) -> None:
    x, y, _ = data
    model = HistGradientBoostingClassifier(max_iter=3).fit(x, y)
    model._predictors[0][0].nodes["feature_idx"][0] = 40
    with pytest.raises(UnsafeArtifact, match="reads a feature beyond its input"):
        inspect_artifact(skops.io.dumps(model))


# --- damaged and unknown files ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "ubj", "skops"])
def test_truncated_files_are_refused_without_library_text(data: Any, fmt: str) -> None:
    x, y, _ = data
    if fmt == "skops":
        raw = skops.io.dumps(LogisticRegression().fit(x, y))
    else:
        model = xgboost.XGBClassifier(n_estimators=3, max_depth=2).fit(x, y)
        raw = bytes(_booster(model).save_raw(fmt))

    with pytest.raises(CorruptArtifact, match="truncated or corrupt") as refused:
        inspect_artifact(raw[: len(raw) // 2])

    assert "/" not in refused.value.message.replace("/UBJSON", "")
    assert "Stack trace" not in refused.value.message


@pytest.mark.parametrize(
    ("raw", "detected"),
    [
        (b"", "an empty file"),
        (b"hello, world", "a file of an unrecognised format"),
        (b'{"weights": [1, 2]}', "a JSON document that is not an XGBoost model"),
        (b"binf" + bytes(64), "a legacy binary XGBoost model"),
        (b"PK\x05\x06" + bytes(18), "a zip archive that is not a skops file"),
        (b"\x93NUMPY\x01\x00", "a file of an unrecognised format"),
    ],
)
def test_unrecognised_files_are_refused(raw: bytes, detected: str) -> None:
    with pytest.raises(UnsafeArtifact) as refused:
        inspect_artifact(raw)
    assert refused.value.message == f"artifact: {detected} is refused; {ACCEPTED}"


# --- signature -------------------------------------------------------------------------


def _inspection(names: tuple[str, ...] | None, n_features: int | None = 4) -> ModelInspection:
    return ModelInspection(
        format=ArtifactFormat.SKOPS,
        flavor=Flavor.SKLEARN,
        flavor_version="1.0",
        n_features=n_features,
        feature_names=names,
        n_classes=2,
        model_type="LogisticRegression",
    )


def test_signature_matching_the_model_passes() -> None:
    check_signature(_inspection(NAMES), list(NAMES))
    check_signature(_inspection(None), ["a", "b", "c", "d"])
    check_signature(_inspection(None, n_features=None), ["anything"])


def test_signature_with_another_feature_count_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="3 inputs, but the model was trained with 4"):
        check_signature(_inspection(None), ["a", "b", "c"])


def test_signature_naming_another_feature_names_the_first_mismatch() -> None:
    names = ("age", "tenure", "income", "visits")
    with pytest.raises(InvalidArgument) as refused:
        check_signature(_inspection(("age", "tenure", "salary", "visits")), names)
    assert refused.value.message == (
        "signature input 2 is 'income' but the model was trained with 'salary'"
    )
