"""Answers of inference to ``Prediction`` and ``Explanation``: row ids, class labels by
name, shapes per output, and their pandas views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.client.results import (
    Prediction,
    ServedVersion,
    explanation_from,
    prediction_from,
    row_ids,
)
from keel.inference.v1 import inference_pb2
from keel.oip.v2 import open_inference_pb2 as oip

ANSWER = oip.ModelInferResponse(id="0190abc", model_name="churn", model_version="4")


def classified(labels: list[int]) -> dict[str, np.ndarray]:
    proba = np.zeros((len(labels), 3), dtype=np.float32)
    proba[np.arange(len(labels)), labels] = 1.0
    return {"label": np.array(labels, dtype=np.int64), "probabilities": proba}


def test_rows_are_named_like_the_prediction_log() -> None:
    assert row_ids("p", 1) == ["p"]
    assert row_ids("p", 3) == ["p/0", "p/1", "p/2"]


def test_labels_are_the_signature_class_labels() -> None:
    served = ServedVersion("churn", 4, ("low", "mid", "high"))
    index = pd.Index([10, 11], name="customer")
    answer = prediction_from(ANSWER, classified([2, 0]), served, index)
    assert (answer.model, answer.version, answer.id) == ("churn", 4, "0190abc")
    assert answer.ids == ["0190abc/0", "0190abc/1"]
    assert answer.label is not None and answer.label.tolist() == ["high", "low"]
    table = answer.to_pandas()
    assert table.index.equals(index)
    assert list(table.columns) == [
        "id",
        "label",
        "probability_low",
        "probability_mid",
        "probability_high",
    ]
    assert table.loc[10, "probability_high"] == 1.0


def test_without_class_labels_labels_stay_class_indices() -> None:
    answer = prediction_from(ANSWER, classified([1]), ServedVersion("churn", 4))
    assert answer.ids == ["0190abc"]
    assert answer.label is not None and answer.label.tolist() == [1]
    assert list(answer.to_pandas().columns)[2:] == [
        "probability_0",
        "probability_1",
        "probability_2",
    ]


def test_a_regressor_answers_values() -> None:
    outputs = {"prediction": np.array([1.5, 2.5], dtype=np.float32)}
    answer = prediction_from(ANSWER, outputs, ServedVersion("price", 4))
    assert answer.label is None and answer.probabilities is None
    assert answer.to_pandas()["prediction"].tolist() == [1.5, 2.5]
    assert len(answer) == 2 and isinstance(answer, Prediction)


def explained(outputs: int) -> inference_pb2.ExplainResponse:
    response = inference_pb2.ExplainResponse(
        model_name="m",
        model_version="2",
        method=inference_pb2.EXPLANATION_METHOD_TREE_SHAP,
        output_space=inference_pb2.OUTPUT_SPACE_MARGIN,
        feature_names=["a", "b"],
        row_count=3,
    )
    for k in range(outputs):
        contributions = np.arange(6, dtype=np.float64) + 10 * k
        response.explanations.add(
            class_label=f"c{k}",
            expected_value=float(k),
            contributions=contributions.tolist(),
            outputs=(contributions.reshape(3, 2).sum(axis=1) + k).tolist(),
        )
    return response


def test_one_output_is_a_matrix_of_rows_by_features() -> None:
    found = explanation_from(explained(1), pd.Index(["x", "y", "z"]))
    assert (found.method, found.output_space, found.version) == ("tree_shap", "margin", 2)
    assert found.contributions.shape == (3, 2) and found.expected_value == 0.0
    np.testing.assert_allclose(found.contributions.sum(axis=1), found.outputs)
    assert found.to_pandas().loc["y"].tolist() == [2.0, 3.0]
    assert found.for_class("c0") is found.contributions


def test_several_outputs_stack_on_the_last_axis() -> None:
    found = explanation_from(explained(3))
    assert found.contributions.shape == (3, 2, 3)
    assert isinstance(found.expected_value, np.ndarray) and found.outputs.shape == (3, 3)
    np.testing.assert_array_equal(found.for_class("c2"), np.arange(6).reshape(3, 2) + 20)
    table = found.to_pandas()
    assert table[("c1", "b")].tolist() == [11.0, 13.0, 15.0]
    with pytest.raises(ValueError, match="class 'c9'"):
        found.for_class("c9")
