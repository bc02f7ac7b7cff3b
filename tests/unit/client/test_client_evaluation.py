"""Metrics under Keel's names, checked against sklearn on real trained models, and
fairness figures on a case small enough to check by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from keel.client._model import Predictions, predict
from keel.client._tabular import columns
from keel.client.evaluation import cross_validation, fairness_metrics, groups, metrics
from keel.common.v1 import metric_pb2, schema_pb2

BINARY = schema_pb2.TASK_BINARY_CLASSIFICATION
MULTICLASS = schema_pb2.TASK_MULTICLASS_CLASSIFICATION
REGRESSION = schema_pb2.TASK_REGRESSION
HOLDOUT = metric_pb2.METRIC_SPLIT_HOLDOUT


def values(found: list[metric_pb2.Metric]) -> dict[str, float]:
    return {m.name: m.value for m in found}


def test_binary_metrics_match_sklearn_with_the_second_class_positive() -> None:
    x, y01 = load_breast_cancer(return_X_y=True)
    y = np.where(y01 == 1, "benign", "malignant")  # classes_ = [benign, malignant]
    model = LogisticRegression(max_iter=5000).fit(x[::2], y[::2])
    x_test, y_test = x[1::2], y[1::2]
    found = metrics(BINARY, y_test, predict(model, x_test, BINARY), HOLDOUT)
    assert {m.split for m in found} == {HOLDOUT}
    assert {m.sample_count for m in found} == {len(y_test)}
    y_pred = model.predict(x_test)
    proba = model.predict_proba(x_test)
    positive = "malignant"
    assert values(found) == pytest.approx(
        {
            "accuracy": skm.accuracy_score(y_test, y_pred),
            "precision": skm.precision_score(y_test, y_pred, pos_label=positive),
            "recall": skm.recall_score(y_test, y_pred, pos_label=positive),
            "f1": skm.f1_score(y_test, y_pred, pos_label=positive),
            "roc_auc": skm.roc_auc_score(y_test == positive, proba[:, 1]),
            "log_loss": skm.log_loss(y_test, proba),
        }
    )


def test_multiclass_metrics_are_macro_averages_and_one_vs_rest_auc() -> None:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x[::2], y[::2])
    x_test, y_test = x[1::2], y[1::2]
    found = values(metrics(MULTICLASS, y_test, predict(model, x_test, MULTICLASS), HOLDOUT))
    y_pred, proba = model.predict(x_test), model.predict_proba(x_test)
    assert found == pytest.approx(
        {
            "accuracy": skm.accuracy_score(y_test, y_pred),
            "precision": skm.precision_score(y_test, y_pred, average="macro"),
            "recall": skm.recall_score(y_test, y_pred, average="macro"),
            "f1": skm.f1_score(y_test, y_pred, average="macro"),
            "roc_auc": skm.roc_auc_score(y_test, proba, multi_class="ovr", average="macro"),
            "log_loss": skm.log_loss(y_test, proba),
        }
    )


def test_regression_metrics_match_sklearn() -> None:
    x, y = load_diabetes(return_X_y=True)
    model = LinearRegression().fit(x[:300], y[:300])
    found = values(metrics(REGRESSION, y[300:], predict(model, x[300:], REGRESSION), HOLDOUT))
    y_pred = model.predict(x[300:])
    assert found == pytest.approx(
        {
            "rmse": math.sqrt(skm.mean_squared_error(y[300:], y_pred)),
            "mae": skm.mean_absolute_error(y[300:], y_pred),
            "r2": skm.r2_score(y[300:], y_pred),
        }
    )


def test_auc_is_left_out_when_only_one_class_is_present() -> None:
    predictions = Predictions(np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]), (0, 1))
    found = values(metrics(BINARY, np.array([1, 1]), predictions, HOLDOUT))
    assert "roc_auc" not in found
    assert found["accuracy"] == 1.0


def test_cross_validation_summarises_five_folds_of_a_clone() -> None:
    from sklearn.model_selection import cross_validate

    x, y = load_breast_cancer(return_X_y=True)
    x, y = x[:300, :5], y[:300]
    model = LogisticRegression(max_iter=5000).fit(x, y)
    coefficients = model.coef_.copy()
    summary = cross_validation(model, x, y, BINARY, cv=5)
    assert summary is not None
    assert summary.folds == 5
    by_name = {m.name: m for m in summary.metrics}
    assert set(by_name) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert {m.split for m in summary.metrics} == {metric_pb2.METRIC_SPLIT_CROSS_VALIDATION}
    expected = cross_validate(LogisticRegression(max_iter=5000), x, y, cv=5, scoring="accuracy")
    assert by_name["accuracy"].value == pytest.approx(expected["test_score"].mean())
    assert by_name["accuracy"].stddev == pytest.approx(expected["test_score"].std())
    np.testing.assert_array_equal(model.coef_, coefficients)  # the model itself is untouched
    assert cross_validation(model, x, y, BINARY, cv=None) is None


def stub_predictions(predicted: list[str]) -> Predictions:
    chosen = np.array(predicted)
    proba = np.array([[0.0, 1.0] if p == "yes" else [1.0, 0.0] for p in predicted])
    return Predictions(chosen, proba, ("no", "yes"))


def test_fairness_figures_of_a_hand_checked_case() -> None:
    # group a: actual yes yes no no, predicted yes no yes no
    #   selection 2/4, TPR 1/2, FPR 1/2
    # group b: actual yes no no no, predicted yes no no no
    #   selection 1/4, TPR 1/1, FPR 0/3
    # DPD = 0.5 - 0.25; DPR = 0.25 / 0.5; EOD = max(1 - 0.5, 0.5 - 0) = 0.5
    features = pd.DataFrame({"sex": ["a"] * 4 + ["b"] * 4, "x": np.arange(8.0)})
    actual = np.array(["yes", "yes", "no", "no", "yes", "no", "no", "no"])
    predicted = ["yes", "no", "yes", "no", "yes", "no", "no", "no"]
    found = fairness_metrics(
        BINARY, columns(features), ["sex"], actual, stub_predictions(predicted)
    )
    by_key = {(m.name, m.group): m.value for m in found}
    assert by_key == pytest.approx(
        {
            ("selection_rate", "sex=a"): 0.5,
            ("true_positive_rate", "sex=a"): 0.5,
            ("false_positive_rate", "sex=a"): 0.5,
            ("selection_rate", "sex=b"): 0.25,
            ("true_positive_rate", "sex=b"): 1.0,
            ("false_positive_rate", "sex=b"): 0.0,
            ("demographic_parity_difference", "sex"): 0.25,
            ("demographic_parity_ratio", "sex"): 0.5,
            ("equalized_odds_difference", "sex"): 0.5,
        }
    )
    assert {m.split for m in found} == {metric_pb2.METRIC_SPLIT_HOLDOUT}
    sizes = {m.group: m.sample_count for m in found}
    assert sizes == {"sex=a": 4, "sex=b": 4, "sex": 8}


def test_a_group_without_positives_has_no_true_positive_rate() -> None:
    features = pd.DataFrame({"g": ["a", "a", "b", "b"]})
    actual = np.array(["yes", "no", "no", "no"])
    found = fairness_metrics(
        BINARY, columns(features), ["g"], actual, stub_predictions(["yes", "no", "no", "no"])
    )
    keys = {(m.name, m.group) for m in found}
    assert ("true_positive_rate", "g=a") in keys
    assert ("true_positive_rate", "g=b") not in keys
    by_key = {(m.name, m.group): m.value for m in found}
    assert by_key[("equalized_odds_difference", "g")] == 0.0  # FPR 0 in both groups


def test_numeric_protected_features_group_by_value_up_to_ten_values() -> None:
    few = columns(np.array([[0.0], [1.0], [1.0], [np.nan]]))[0]
    found = groups(few)
    assert found is not None
    assert {k: v.tolist() for k, v in found.items()} == {
        "0": [True, False, False, False],
        "1": [False, True, True, False],
    }
    many = columns(np.arange(11.0).reshape(-1, 1))[0]
    assert groups(many) is None
    actual = np.array(["yes"] * 11)
    assert fairness_metrics(BINARY, [many], ["f0"], actual, stub_predictions(["yes"] * 11)) == []


def test_fairness_is_for_binary_classifiers() -> None:
    cols: Any = columns(pd.DataFrame({"g": ["a", "b"]}))
    predictions = Predictions(np.array([1.0, 2.0]), None)
    assert fairness_metrics(REGRESSION, cols, ["g"], np.array([1.0, 2.0]), predictions) == []
