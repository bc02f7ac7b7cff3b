"""Keel's own walk of XGBoost's trees answers what XGBoost answers, to the bit, or is not
used: real boosters trained here, awkward rows (every threshold, the floats either side,
NaN, the infinities), every block boundary of the C loop."""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import xgboost

from services.inference import trees
from services.inference._trees import Forest
from services.inference.records import Features, FeatureSpec, ModelSignature
from services.inference.runtime import THREADED_ROWS, XGBoostModel, load_model

Array = np.ndarray[Any, Any]
WIDTH = 6


@pytest.fixture(scope="module")
def x() -> Array:
    values = np.random.default_rng(11).normal(size=(3000, WIDTH)).astype(np.float32)
    values[np.random.default_rng(12).random(values.shape) < 0.08] = np.nan
    return values


def target(x: Array, kind: str) -> Array:
    a, b = np.nan_to_num(x[:, 0]), np.nan_to_num(x[:, 1])
    made: Array
    if kind == "binary":
        made = (a + b * np.nan_to_num(x[:, 2]) > 0.1).astype(int)
    elif kind == "three":
        made = np.digitize(a + 0.5 * b, [-0.6, 0.4])
    else:
        made = 3 * a - b + 0.1 * np.nan_to_num(x[:, 3]) ** 2
    if kind == "positive":
        made = np.abs(made)
    return made


def train(x: Array, y: Array, params: dict[str, Any], rounds: int = 40) -> xgboost.Booster:
    params = {"max_depth": 6, "seed": 0, "nthread": 1, **params}
    return xgboost.train(params, xgboost.DMatrix(x, label=y), num_boost_round=rounds)


def awkward(booster: xgboost.Booster, count: int) -> Array:
    model = json.loads(booster.save_raw("json"))
    made = trees.verification_rows(
        model["learner"]["gradient_booster"]["model"]["trees"], WIDTH, count
    )
    return np.ascontiguousarray(made)


CASES = [
    ("binary:logistic", "binary", {}),
    ("reg:logistic", "binary", {}),
    ("multi:softprob", "three", {"num_class": 3}),
    ("reg:squarederror", "real", {}),
    ("reg:absoluteerror", "real", {}),
    ("reg:pseudohubererror", "real", {}),
    ("reg:squaredlogerror", "positive", {}),
    ("binary:logitraw", "binary", {}),
    ("binary:logistic", "binary", {"grow_policy": "lossguide", "max_depth": 0, "max_leaves": 40}),
    ("binary:logistic", "binary", {"base_score": 0.3}),
]


@pytest.mark.parametrize(("objective", "kind", "extra"), CASES)
@pytest.mark.parametrize("margin", [False, True])
def test_compiled_trees_answer_inplace_predict_to_the_bit(
    x: Array, objective: str, kind: str, extra: dict[str, Any], margin: bool
) -> None:
    booster = train(x, target(x, kind), {"objective": objective, **extra})
    compiled = trees.compile_forest(booster, margin=margin)
    assert isinstance(compiled, trees.Compiled), compiled
    plain = np.ascontiguousarray(np.random.default_rng(3).normal(size=(500, WIDTH)) * 2)
    data = np.concatenate([awkward(booster, 700), plain.astype(np.float32)])
    kind_of = "margin" if margin else "value"
    for n in (0, 1, 15, 16, 17, 33, len(data)):  # the loop walks 16 rows at a time
        rows = np.ascontiguousarray(data[:n])
        expected = np.asarray(booster.inplace_predict(rows, predict_type=kind_of))
        got = compiled(rows)
        assert got.dtype == np.float32 and got.shape == expected.shape, n
        np.testing.assert_array_equal(got, expected)


PROBABILITIES = [case for case in CASES if trees.TRANSFORMS[case[0]] != trees.IDENTITY]


@pytest.mark.parametrize(("objective", "kind", "extra"), PROBABILITIES)
def test_a_classifiers_answer_is_the_stacked_probabilities_and_their_argmax(
    x: Array, objective: str, kind: str, extra: dict[str, Any]
) -> None:
    booster = train(x, target(x, kind), {"objective": objective, **extra})
    compiled = trees.compile_forest(booster)
    assert isinstance(compiled, trees.Compiled) and compiled.classifies
    data = np.concatenate([awkward(booster, 700), np.ascontiguousarray(x[:500])])
    for n in (0, 1, 15, 16, 17, 33, len(data)):  # 32 rows and more walk without the GIL
        rows = np.ascontiguousarray(data[:n])
        value = np.asarray(booster.inplace_predict(rows))
        if compiled.outputs == 1:
            expected = np.stack([1.0 - value, value], axis=1)
        else:
            expected = value.reshape(n, compiled.outputs)
        labels, probabilities = compiled.classify(rows)
        assert probabilities.dtype == np.float32 and labels.dtype == np.int64
        np.testing.assert_array_equal(probabilities, expected)
        np.testing.assert_array_equal(labels, np.argmax(expected, axis=1))
    margins = trees.compile_forest(booster, margin=True)
    assert isinstance(margins, trees.Compiled) and not margins.classifies


def test_multi_softmax_margins_are_compiled(x: Array) -> None:
    booster = train(x, target(x, "three"), {"objective": "multi:softmax", "num_class": 3})
    assert isinstance(trees.compile_forest(booster), str)  # its "value" is a label
    compiled = trees.compile_forest(booster, margin=True)
    assert isinstance(compiled, trees.Compiled)
    rows = awkward(booster, 400)
    expected = booster.inplace_predict(rows, predict_type="margin")
    np.testing.assert_array_equal(compiled(rows), expected)


def test_what_the_walk_cannot_answer_is_declined_with_the_reason(x: Array) -> None:
    y = target(x, "binary")
    dart = train(x, y, {"objective": "binary:logistic", "booster": "dart"}, rounds=5)
    assert trees.compile_forest(dart) == "the booster is dart, not gbtree"
    linear = xgboost.train(
        {"objective": "binary:logistic", "booster": "gblinear"}, xgboost.DMatrix(x, label=y), 5
    )
    assert trees.compile_forest(linear) == "the booster is gblinear, not gbtree"
    poisson = train(x, np.abs(target(x, "real")).round(), {"objective": "count:poisson"})
    assert (
        trees.compile_forest(poisson) == "the objective count:poisson is not one the trees answer"
    )
    two = np.stack([target(x, "real"), -target(x, "real")], axis=1)
    multi = xgboost.train(
        {"tree_method": "hist", "multi_strategy": "multi_output_tree"},
        xgboost.DMatrix(x, label=two),
        num_boost_round=3,
    )
    assert trees.compile_forest(multi) == "the trees have several targets"


@pytest.mark.parametrize("one_hot_below", [1, 64])  # set splits, and one-category splits
def test_categorical_splits_answer_inplace_predict_to_the_bit(x: Array, one_hot_below: int) -> None:
    data = x.copy()
    rng = np.random.default_rng(5)
    data[:, 1] = rng.integers(0, 40, len(data))
    data[:, 4] = rng.integers(0, 5, len(data))
    y = ((data[:, 1] % 3 == 0) | (np.nan_to_num(data[:, 0]) > 0.5) | (data[:, 4] == 1)).astype(int)
    kinds = ["q", "c", "q", "q", "c", "q"]
    matrix = xgboost.DMatrix(data, label=y, feature_types=kinds, enable_categorical=True)
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 5}
    booster = xgboost.train({**params, "max_cat_to_onehot": one_hot_below}, matrix, 30)
    compiled = trees.compile_forest(booster)
    assert isinstance(compiled, trees.Compiled), compiled
    rows = awkward(booster, 3000)  # categories, their neighbours and halves, -1, 2^24, NaN
    seen = set(rows[:, 1].tolist())
    assert {-1.0, -0.5, float(1 << 24)} <= seen and any(v % 1 == 0.5 for v in seen)
    np.testing.assert_array_equal(compiled(rows), booster.inplace_predict(rows))


def test_a_forest_that_differs_from_xgboost_is_not_used(
    x: Array, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    booster = train(x, target(x, "binary"), {"objective": "binary:logistic"})
    assert trees.verified(booster) is not None
    # a wrong transform (the margin where XGBoost answers its sigmoid) must be caught
    monkeypatch.setitem(trees.TRANSFORMS, "binary:logistic", trees.IDENTITY)
    with caplog.at_level(logging.WARNING, logger="services.inference.trees"):
        assert trees.verified(booster) is None
    assert "differed" in caplog.text


def signature(task: str, labels: tuple[str, ...] = ()) -> ModelSignature:
    specs = tuple(FeatureSpec(f"f{i}", "FLOAT32", "NUMERIC") for i in range(WIDTH))
    return ModelSignature(task, specs, labels)  # type: ignore[arg-type]


def load(booster: xgboost.Booster, task: str, *, nthread: int = 1) -> XGBoostModel:
    data = bytes(booster.save_raw("ubj"))
    digest = hashlib.sha256(data).hexdigest()
    model = load_model(data, signature(task), sha256=digest, nthread=nthread)
    assert isinstance(model, XGBoostModel)
    return model


def test_a_served_model_predicts_through_its_compiled_trees_when_it_can(x: Array) -> None:
    compiled = load(
        train(x, target(x, "binary"), {"objective": "binary:logistic"}), "BINARY_CLASSIFICATION"
    )
    assert compiled.compiled is not None and compiled.engine == "Keel's tree walk"
    rows = np.ascontiguousarray(x[:300])
    expected = compiled.booster.inplace_predict(rows)
    out = compiled.predict(Features(numeric=rows)).tensors
    np.testing.assert_array_equal(out["probabilities"][:, 1], expected)
    np.testing.assert_array_equal(out["label"], expected > 0.5)
    poisson = train(x, np.abs(target(x, "real")).round(), {"objective": "count:poisson"})
    served = load(poisson, "REGRESSION")
    assert served.compiled is None and served.engine == "XGBoost"  # as before
    np.testing.assert_array_equal(
        served.predict(Features(numeric=rows)).tensors["prediction"], poisson.inplace_predict(rows)
    )


def test_a_forest_is_right_from_many_threads_at_once(x: Array) -> None:
    booster = train(x, target(x, "three"), {"objective": "multi:softprob", "num_class": 3})
    compiled = trees.compile_forest(booster)
    assert isinstance(compiled, trees.Compiled)
    batches = [np.ascontiguousarray(x[i : i + 1 + (i * 7) % 90]) for i in range(120)]
    expected = [booster.inplace_predict(batch) for batch in batches]
    with ThreadPoolExecutor(4) as pool:  # batches of 32 rows and more walk without the GIL
        for _ in range(3):
            for mine, theirs in zip(pool.map(compiled, batches), expected, strict=True):
                np.testing.assert_array_equal(mine, theirs)


def test_the_loop_refuses_what_it_cannot_walk_safely() -> None:
    def forest(**changes: Any) -> Forest:
        return Forest(*forest_parts(**changes).values())

    def forest_parts(**changes: Any) -> dict[str, Any]:
        node = np.zeros(3, dtype=trees.NODE)
        node[0] = (0.5, 0, 1, 1)  # a split on column 0, children 1 and 2
        node[1] = (-np.inf, 0, 0, 1)  # leaves point at themselves
        node[2] = (-np.inf, 0, 1, 1)
        parts: dict[str, Any] = {
            "nodes": node,
            "leaves": np.array([0, 1, 2], dtype=np.float32),
            "roots": np.array([0], dtype=np.int32),
            "depths": np.array([1], dtype=np.int32),
            "groups": np.array([0], dtype=np.int32),
            "base": np.array([0.5], dtype=np.float32),
            "width": 2,
            "transform": trees.IDENTITY,
            "cat_spans": np.array([[-1, 0]] * 3, dtype=np.int32),
            "cat_bits": np.zeros(0, dtype=np.uint32),
        }
        parts.update(changes)
        return parts

    good = forest()
    out = np.empty(3, dtype=np.float32)
    good.predict(np.array([[0.1, 9], [0.9, 9], [np.nan, 9]], dtype=np.float32), 3, out)
    np.testing.assert_array_equal(out, [1.5, 2.5, 2.5])
    far = np.zeros(3, dtype=trees.NODE)
    far[0] = (0.5, 0, 2, 1)  # its right child would be node 3, past the end
    far[1:] = (-np.inf, 0, 0, 1)
    with pytest.raises(ValueError, match="children outside the forest"):
        forest(nodes=far)
    column = np.array([(0.5, 5, 1, 1), (-np.inf, 0, 0, 1), (-np.inf, 0, 1, 1)], dtype=trees.NODE)
    with pytest.raises(ValueError, match="reads column 5 of 2"):
        forest(nodes=column)
    with pytest.raises(ValueError, match="category bits outside the forest"):
        forest(cat_spans=np.array([[0, 1], [-1, 0], [-1, 0]], dtype=np.int32))
    categorical = forest(
        cat_spans=np.array([[0, 1], [-1, 0], [-1, 0]], dtype=np.int32),
        cat_bits=np.array([0b100], dtype=np.uint32),  # category 2 goes right
    )
    values = np.array([[2, 0], [2.9, 0], [1, 0], [33, 0], [-1, 0], [np.nan, 0]], dtype=np.float32)
    out = np.empty(6, dtype=np.float32)
    categorical.predict(values, 6, out)
    np.testing.assert_array_equal(out, [2.5, 2.5, 1.5, 1.5, 1.5, 2.5])  # NaN: missing, right
    with pytest.raises(ValueError, match="output out of range"):
        forest(groups=np.array([1], dtype=np.int32))
    with pytest.raises(ValueError, match="leaves: expected 12 bytes"):
        forest(leaves=np.zeros(3, dtype=np.float64))
    with pytest.raises(ValueError, match="expected 2 rows of 2 float32 features"):
        good.predict(np.zeros((2, 3), dtype=np.float32), 2, np.empty(2, dtype=np.float32))
    with pytest.raises(ValueError, match="room for 1 outputs"):
        good.predict(np.zeros((2, 2), dtype=np.float32), 2, np.empty(1, dtype=np.float32))
    # 2 + 2^62 rows: n * width * 4 and n * outputs * 4 wrap around to the buffers' true sizes
    with pytest.raises(ValueError, match="float32 features"):
        good.predict(np.zeros((2, 2), dtype=np.float32), 2 + 2**62, np.empty(2, dtype=np.float32))
    # a classifier's answer: a tie goes to the first class, as numpy's argmax has it
    sigmoid = forest(transform=trees.SIGMOID, base=np.array([-1], dtype=np.float32))
    probabilities, labels = np.empty((2, 2), dtype=np.float32), np.empty(2, dtype=np.int64)
    sigmoid.classify(np.array([[0.1, 9], [0.9, 9]], dtype=np.float32), 2, probabilities, labels)
    p = np.float32(1) / (np.float32(1) + np.exp(np.float32(-1)))
    np.testing.assert_array_equal(probabilities, [[0.5, 0.5], [1 - p, p]])
    np.testing.assert_array_equal(labels, [0, 1])
    with pytest.raises(ValueError, match="room for 2 float32 probabilities and one int64"):
        sigmoid.classify(np.zeros((2, 2), dtype=np.float32), 2, probabilities[:1], labels)
    with pytest.raises(ValueError, match="room for 2 float32 probabilities and one int64"):
        sigmoid.classify(np.zeros((2, 2), dtype=np.float32), 2, probabilities, labels[:1])
    with pytest.raises(ValueError, match="answers margins, not probabilities"):
        good.classify(np.zeros((2, 2), dtype=np.float32), 2, probabilities, labels)
    with pytest.raises(TypeError, match="made once"):
        good.__init__(*forest_parts().values())  # type: ignore[misc]
    half = Forest.__new__(Forest)
    with pytest.raises(ValueError, match="expected 4 bytes"):  # fails after copying nodes
        half.__init__(*forest_parts(groups=np.zeros(1, dtype=np.int16)).values())  # type: ignore[misc]
    with pytest.raises(ValueError, match="the forest was not made"):
        half.predict(np.zeros((1, 2), dtype=np.float32), 1, np.empty(1, dtype=np.float32))


def test_with_xgboost_threads_large_batches_go_to_xgboost(x: Array) -> None:
    booster = train(x, target(x, "binary"), {"objective": "binary:logistic"})
    calls: list[int] = []
    for threads in (1, 2):
        model = load(booster, "BINARY_CLASSIFICATION", nthread=threads)
        assert model.compiled is not None
        assert (f"XGBoost from {THREADED_ROWS} rows" in model.engine) == (threads > 1)
        dense = model._dense

        def counted(rows: Array, dense: Any = dense) -> Any:
            calls.append(len(rows))
            return dense(rows)

        model._dense = counted  # type: ignore[assignment]
        for n in (10, THREADED_ROWS - 1, THREADED_ROWS, 2000):
            rows = np.ascontiguousarray(np.resize(x, (n, WIDTH)))
            out = model.predict(Features(numeric=rows)).tensors["probabilities"][:, 1]
            np.testing.assert_array_equal(out, booster.inplace_predict(rows))
    # one thread: the walk answers every batch; two: XGBoost's threads take the large ones
    assert calls == [THREADED_ROWS, 2000]
