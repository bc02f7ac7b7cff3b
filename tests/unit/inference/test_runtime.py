"""The runtime: real tiny models load safely and predict what their own library predicts."""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from services.common.errors import DataLoss, InvalidArgument, Unimplemented
from services.common.safe_load import UnsafeArtifact
from services.inference.records import Features, FeatureSpec, ModelSignature, Task
from services.inference.runtime import MAX_INLINE_ROWS, DensePredictor, LoadedModel, load_model

pd: Any = pytest.importorskip("pandas")  # optional for the runtime; dev dependency here

Array = np.ndarray[Any, Any]
NAMES = ("age", "income", "tenure", "visits")
CITIES = ("paris", "lyon", "nice")


@pytest.fixture(scope="module")
def x() -> Array:
    return np.random.default_rng(7).normal(size=(200, 4)).astype(np.float32)


def binary(x: Array) -> Array:
    return (x[:, 0] + x[:, 1] > 0).astype(int)


def three(x: Array) -> Array:
    return np.digitize(x[:, 2] + 0.3 * x[:, 0], [-0.5, 0.5])


def signature(task: Task, labels: tuple[str, ...] = ()) -> ModelSignature:
    return ModelSignature(task, tuple(FeatureSpec(n, "FLOAT32", "NUMERIC") for n in NAMES), labels)


def load(data: bytes, sig: ModelSignature, **options: Any) -> LoadedModel:
    return load_model(data, sig, sha256=hashlib.sha256(data).hexdigest(), **options)


def rows(x: Array) -> Features:
    return Features(numeric=np.ascontiguousarray(x, dtype=np.float32))


def answer(model: LoadedModel, features: Features) -> dict[str, Any]:
    return model.predict(features).tensors


def booster(x: Array, y: Array, params: dict[str, Any]) -> xgboost.Booster:
    params = {"max_depth": 3, "seed": 0, **params}
    return xgboost.train(params, xgboost.DMatrix(x, label=y), num_boost_round=10)


def double(values: Any) -> Any:
    return values * 2


# --- XGBoost ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_xgboost_binary_matches_booster_predict(x: Array, fmt: str) -> None:
    bst = booster(x, binary(x), {"objective": "binary:logistic"})
    model = load(bytes(bst.save_raw(fmt)), signature("BINARY_CLASSIFICATION", ("no", "yes")))
    out = answer(model, rows(x[:50]))
    expected = bst.predict(xgboost.DMatrix(x[:50]))
    np.testing.assert_allclose(out["probabilities"][:, 1], expected, rtol=1e-6)
    np.testing.assert_allclose(out["probabilities"][:, 0], 1 - expected, rtol=1e-6)
    np.testing.assert_array_equal(out["label"], (expected > 0.5).astype(np.int64))
    assert out["probabilities"].dtype == np.float32 and out["label"].dtype == np.int64


@pytest.mark.parametrize("objective", ["multi:softprob", "multi:softmax"])
def test_xgboost_multiclass_matches_booster_predict(x: Array, objective: str) -> None:
    bst = booster(x, three(x), {"objective": objective, "num_class": 3})
    model = load(bytes(bst.save_raw("json")), signature("MULTICLASS_CLASSIFICATION"))
    out = answer(model, rows(x[:50]))
    margin = bst.predict(xgboost.DMatrix(x[:50]), output_margin=True)
    softmax = np.exp(margin) / np.exp(margin).sum(axis=1, keepdims=True)
    assert out["probabilities"].shape == (50, 3)
    np.testing.assert_allclose(out["probabilities"], softmax, rtol=1e-5, atol=1e-6)
    labels = np.argmax(softmax, axis=1) if objective == "multi:softprob" else None
    expected_labels = bst.predict(xgboost.DMatrix(x[:50])) if labels is None else labels
    np.testing.assert_array_equal(out["label"], expected_labels.astype(np.int64))


def test_xgboost_regression_matches_booster_predict_and_nthread_is_set(x: Array) -> None:
    bst = booster(x, x[:, 0] * 3 + x[:, 3], {"objective": "reg:squarederror"})
    model = load(bytes(bst.save_raw("ubj")), signature("REGRESSION"), nthread=2)
    out = answer(model, rows(x[:50]))
    assert list(out) == ["prediction"] and out["prediction"].dtype == np.float32
    np.testing.assert_allclose(out["prediction"], bst.predict(xgboost.DMatrix(x[:50])), rtol=1e-6)
    config = json.loads(model.booster.save_config())  # type: ignore[attr-defined]
    assert config["learner"]["generic_param"]["nthread"] == "2"


@pytest.mark.parametrize(
    ("objective", "extra"),
    [
        ("binary:logistic", {}),
        ("binary:logitraw", {}),
        ("multi:softprob", {"num_class": 3}),
        ("reg:squarederror", {}),
    ],
)
@pytest.mark.parametrize("n", [0, 1, 7, 200])
def test_dense_predictor_answers_what_inplace_predict_does(
    x: Array, objective: str, extra: dict[str, Any], n: int
) -> None:
    bst = booster(x, three(x) if extra else binary(x), {"objective": objective, **extra})
    data = x[:n].copy()
    data[:n:3, 1] = np.nan  # missing values go down each tree's default branch
    for margin in (False, True):
        got = DensePredictor(bst, margin=margin)(data)
        kind = "margin" if margin else "value"
        expected = np.asarray(bst.inplace_predict(data, predict_type=kind))
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_dense_predictor_is_right_from_many_threads_at_once(x: Array) -> None:
    bst = booster(x, three(x), {"objective": "multi:softprob", "num_class": 3})
    predict = DensePredictor(bst)
    batches = [np.ascontiguousarray(x[i : i + 1 + i % 17]) for i in range(150)]
    expected = [bst.inplace_predict(batch) for batch in batches]
    with ThreadPoolExecutor(6) as pool:
        for _ in range(5):
            got = list(pool.map(predict, batches))
            for mine, theirs in zip(got, expected, strict=True):
                np.testing.assert_array_equal(mine, theirs)


def test_warm_up_says_how_many_rows_predict_within_the_budget(x: Array) -> None:
    bst = booster(x, binary(x), {"objective": "binary:logistic"})
    model = load(bytes(bst.save_raw("ubj")), signature("BINARY_CLASSIFICATION"))
    assert model.warm_up() == 0  # no budget: every call goes to a thread
    assert model.warm_up(1e-9) == 0  # not even one row fits
    generous = model.warm_up(10.0)
    assert generous == MAX_INLINE_ROWS
    assert 0 < model.warm_up(0.002) <= MAX_INLINE_ROWS


def test_dense_predictor_refuses_what_it_cannot_read(x: Array) -> None:
    predict = DensePredictor(booster(x, binary(x), {"objective": "binary:logistic"}))
    with pytest.raises(TypeError, match="float32"):
        predict(x.astype(np.float64))
    with pytest.raises(TypeError, match="C-contiguous"):
        predict(np.asfortranarray(x))
    with pytest.raises(ValueError, match="expected 4 features per row, got 3"):
        predict(np.ascontiguousarray(x[:, :3]))


@pytest.mark.parametrize(
    ("objective", "task"),
    [("binary:logistic", "BINARY_CLASSIFICATION"), ("multi:softprob", "MULTICLASS_CLASSIFICATION")],
)
def test_xgboost_explanations_add_up_to_the_margin(x: Array, objective: str, task: Task) -> None:
    y = binary(x) if task == "BINARY_CLASSIFICATION" else three(x)
    params = {"objective": objective} | ({"num_class": 3} if "multi" in objective else {})
    bst = booster(x, y, params)
    explanation = load(bytes(bst.save_raw("json")), signature(task)).explain(rows(x[:20]))
    margin = bst.predict(xgboost.DMatrix(x[:20]), output_margin=True).reshape(20, -1)
    assert explanation.method == "TREE_SHAP" and explanation.feature_names == NAMES
    assert len(explanation.contributions) == margin.shape[1]
    for k, contributions in enumerate(explanation.contributions):
        assert contributions.shape == (20, 4) and contributions.dtype == np.float32
        total = contributions.sum(axis=1) + explanation.expected_value[k]
        np.testing.assert_allclose(total, margin[:, k], rtol=1e-4, atol=1e-4)


def test_xgboost_regression_explanation_adds_up(x: Array) -> None:
    bst = booster(x, x[:, 0] * 3 + x[:, 3], {"objective": "reg:squarederror"})
    explanation = load(bytes(bst.save_raw("json")), signature("REGRESSION")).explain(rows(x[:20]))
    total = explanation.contributions[0].sum(axis=1) + explanation.expected_value[0]
    np.testing.assert_allclose(total, bst.predict(xgboost.DMatrix(x[:20])), rtol=1e-4, atol=1e-4)


def test_warm_up_predicts_a_synthetic_row(x: Array) -> None:
    bst = booster(x, binary(x), {"objective": "binary:logistic"})
    load(bytes(bst.save_raw("json")), signature("BINARY_CLASSIFICATION")).warm_up()


# --- scikit-learn ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("estimator", "task"),
    [
        (LogisticRegression(max_iter=1000), "BINARY_CLASSIFICATION"),
        (LogisticRegression(max_iter=1000), "MULTICLASS_CLASSIFICATION"),
        (
            RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0),
            "BINARY_CLASSIFICATION",
        ),
        (make_pipeline(StandardScaler(), LogisticRegression()), "MULTICLASS_CLASSIFICATION"),
    ],
)
def test_sklearn_classifiers_match_predict_proba(x: Array, estimator: Any, task: Task) -> None:
    names = np.array(["no", "yes"] if task == "BINARY_CLASSIFICATION" else ["c", "a", "b"])
    y = names[binary(x) if task == "BINARY_CLASSIFICATION" else three(x)]
    fitted = estimator.fit(x, y)
    model = load(skops.io.dumps(fitted), signature(task))
    out = answer(model, rows(x[:50]))
    np.testing.assert_allclose(out["probabilities"], fitted.predict_proba(x[:50]), rtol=1e-6)
    assert out["label"].dtype == np.int64  # an index into classes_ (sorted: a, b, c)
    np.testing.assert_array_equal(fitted.classes_[out["label"]], fitted.predict(x[:50]))


@pytest.mark.parametrize("estimator", [LinearRegression(), Ridge(alpha=0.5)])
def test_sklearn_regressors_match_predict(x: Array, estimator: Any) -> None:
    fitted = estimator.fit(x, x[:, 0] * 3 - x[:, 2])
    out = answer(load(skops.io.dumps(fitted), signature("REGRESSION")), rows(x[:50]))
    assert out["prediction"].dtype == np.float32
    np.testing.assert_allclose(out["prediction"], fitted.predict(x[:50]), rtol=1e-6, atol=1e-6)


def mixed_signature(categories: tuple[str, ...] = CITIES) -> ModelSignature:
    inputs = (
        FeatureSpec("age", "FLOAT32", "NUMERIC"),
        FeatureSpec("income", "FLOAT32", "NUMERIC"),
        FeatureSpec("city", "STRING", "CATEGORICAL", categories=categories),
    )
    return ModelSignature("BINARY_CLASSIFICATION", inputs)


def mixed_rows(x: Array) -> tuple[Features, Array]:
    codes = (np.abs(x[:, 3]) * 10).astype(int) % 3
    cities = np.array(CITIES, dtype=object)[codes]
    numeric = np.column_stack([x[:, 0], x[:, 1], codes]).astype(np.float32)
    return Features(numeric=numeric, columns={"city": cities}), cities


def test_dataframe_pipeline_with_categorical_strings_gets_a_frame(x: Array) -> None:
    features, cities = mixed_rows(x)
    frame = pd.DataFrame({"age": x[:, 0], "income": x[:, 1], "city": cities})
    encode = ColumnTransformer(
        [("num", StandardScaler(), ["age", "income"]), ("cat", OneHotEncoder(), ["city"])]
    )
    fitted = make_pipeline(encode, LogisticRegression()).fit(frame, binary(x))
    model = load(skops.io.dumps(fitted), mixed_signature())
    out = answer(model, features)
    np.testing.assert_allclose(out["probabilities"], fitted.predict_proba(frame), rtol=1e-5)
    model.warm_up()
    with pytest.raises(Unimplemented, match="a Pipeline model has no explanation method"):
        model.explain(features)


def test_numpy_pipeline_with_categorical_strings_gets_an_object_array(
    x: Array, caplog: pytest.LogCaptureFixture
) -> None:
    features, cities = mixed_rows(x)
    table = np.column_stack([x[:, 0], x[:, 1], cities]).astype(object)
    encode = ColumnTransformer([("num", StandardScaler(), [0, 1]), ("cat", OneHotEncoder(), [2])])
    fitted = make_pipeline(encode, LogisticRegression()).fit(table, binary(x))
    out = answer(load(skops.io.dumps(fitted), mixed_signature()), features)
    np.testing.assert_allclose(out["probabilities"], fitted.predict_proba(table), rtol=1e-5)
    with caplog.at_level(logging.WARNING):  # "" is not a category the encoder knows
        load(skops.io.dumps(fitted), mixed_signature(categories=())).warm_up()
    assert "warm-up skipped" in caplog.text


def test_linear_explanations_add_up(x: Array) -> None:
    cases: list[tuple[Any, Task, Any]] = [
        (LogisticRegression(max_iter=1000).fit(x, binary(x)), "BINARY_CLASSIFICATION", None),
        (LogisticRegression(max_iter=1000).fit(x, three(x)), "MULTICLASS_CLASSIFICATION", None),
        (make_pipeline(StandardScaler(), LogisticRegression()).fit(x, three(x)),
         "MULTICLASS_CLASSIFICATION", None),
        (LinearRegression().fit(x, x[:, 0] * 3 - x[:, 2] + 1), "REGRESSION", [1, 2, 3, 4]),
    ]  # fmt: skip
    for fitted, task, means in cases:
        model = load(skops.io.dumps(fitted), signature(task), reference_means=means)
        explanation = model.explain(rows(x[:20]))
        outputs = fitted.predict if task == "REGRESSION" else fitted.decision_function
        margin = outputs(x[:20]).reshape(20, -1)
        assert explanation.method == "LINEAR" and len(explanation.contributions) == margin.shape[1]
        for k, contributions in enumerate(explanation.contributions):
            total = contributions.sum(axis=1) + explanation.expected_value[k]
            np.testing.assert_allclose(total, margin[:, k], rtol=1e-4, atol=1e-4)


def test_linear_expected_value_is_the_output_at_the_reference_row(x: Array) -> None:
    fitted = Ridge().fit(x, x[:, 0] * 3 - x[:, 2] + 1)
    means = np.array([1.0, 2.0, 3.0, 4.0])
    with_means = load(skops.io.dumps(fitted), signature("REGRESSION"), reference_means=means)
    assert with_means.explain(rows(x[:1])).expected_value[0] == pytest.approx(
        float(fitted.predict(means.reshape(1, -1))[0]), rel=1e-6
    )
    zeros = load(skops.io.dumps(fitted), signature("REGRESSION"))  # unknown means: zeros
    assert zeros.explain(rows(x[:1])).expected_value[0] == pytest.approx(fitted.intercept_)
    scaled = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, binary(x))
    at_mean = load(skops.io.dumps(scaled), signature("BINARY_CLASSIFICATION"))
    expected = at_mean.explain(rows(x[:1])).expected_value[0]  # the scaler's training mean
    assert expected == pytest.approx(float(scaled[-1].intercept_[0]), abs=1e-5)


def test_forest_explain_is_unimplemented(x: Array) -> None:
    fitted = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, binary(x))
    model = load(skops.io.dumps(fitted), signature("BINARY_CLASSIFICATION"))
    with pytest.raises(Unimplemented, match="RandomForestClassifier model has no explanation"):
        model.explain(rows(x[:2]))


# --- refusals ------------------------------------------------------------------------------


class Exploit:
    """Unpickling this touches ``target``: code runs on load."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (pathlib.Path.touch, (self.target,))


def test_digest_mismatch_is_data_loss_before_anything_is_read(x: Array) -> None:
    data = bytes(booster(x, binary(x), {"objective": "binary:logistic"}).save_raw("json"))
    with pytest.raises(DataLoss, match="sha256 is [0-9a-f]{64} but 0{64} was expected"):
        load_model(data, signature("BINARY_CLASSIFICATION"), sha256="0" * 64)


def test_a_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    with pytest.raises(UnsafeArtifact, match="a pickle stream is refused"):
        load(pickle.dumps(Exploit(target)), signature("REGRESSION"))
    assert not target.exists()


def test_an_untrusted_skops_type_is_refused(x: Array) -> None:
    fitted = make_pipeline(FunctionTransformer(double), LinearRegression()).fit(x, x[:, 0])
    with pytest.raises(UnsafeArtifact, match="not on the server's allowlist"):
        load(skops.io.dumps(fitted), signature("REGRESSION"))


def test_signature_must_fit_the_model(x: Array) -> None:
    classifier = skops.io.dumps(LogisticRegression().fit(x, three(x)))
    with pytest.raises(InvalidArgument, match="task REGRESSION, but .* with 3 classes"):
        load(classifier, signature("REGRESSION"))
    with pytest.raises(InvalidArgument, match="task BINARY_CLASSIFICATION"):
        load(classifier, signature("BINARY_CLASSIFICATION"))
    narrow = skops.io.dumps(LinearRegression().fit(x[:, :3], x[:, 0]))
    with pytest.raises(InvalidArgument, match="4 inputs, but the model was trained with 3"):
        load(narrow, signature("REGRESSION"))
    with pytest.raises(InvalidArgument, match="LinearSVC classifier has no predict_proba"):
        load(skops.io.dumps(LinearSVC().fit(x, binary(x))), signature("BINARY_CLASSIFICATION"))
