"""Labels and logged predictions as the monitor's columns: class labels by value or by
index as the model's labels call for, missing rows marked in the validity bitmap, the
features a signature names and nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.client.batches import (
    feedback_request,
    label_column,
    new_prediction_id,
    prediction_batch,
    producer_id,
)
from keel.common.v1 import schema_pb2

NUMERIC = schema_pb2.FEATURE_KIND_NUMERIC
CATEGORICAL = schema_pb2.FEATURE_KIND_CATEGORICAL


def signature(class_labels: list[str]) -> schema_pb2.Signature:
    return schema_pb2.Signature(
        inputs=[
            schema_pb2.Feature(name="age", kind=NUMERIC),
            schema_pb2.Feature(name="segment", kind=CATEGORICAL),
        ],
        class_labels=class_labels,
    )


def test_the_values_of_y_are_sent_as_class_labels() -> None:
    column = label_column(np.array([1, 2, 3]), classifier=True, class_labels=["1", "2", "3"])
    assert list(column.strings.values) == ["1", "2", "3"] and column.validity == b""
    floats = label_column([1.0, 0.0], classifier=True, class_labels=["0", "1"])
    assert list(floats.strings.values) == ["1", "0"]


def test_ints_are_class_indices_when_the_labels_are_words() -> None:
    column = label_column([1, 0, 1], classifier=True, class_labels=["no", "yes"])
    assert column.WhichOneof("values") == "int64s" and list(column.int64s.values) == [1, 0, 1]


def test_words_and_unknown_labels_go_as_text_for_the_monitor_to_judge() -> None:
    words = label_column(pd.Series(["yes", "no"]), classifier=True, class_labels=["no", "yes"])
    assert list(words.strings.values) == ["yes", "no"]
    unknown = label_column([7], classifier=True, class_labels=["0", "1"])
    assert list(unknown.strings.values) == ["7"]


def test_missing_labels_are_marked_invalid() -> None:
    column = label_column(["a", None, "b", float("nan")], classifier=True, class_labels=["a", "b"])
    assert list(column.strings.values) == ["a", "", "b", ""]
    assert column.validity == bytes([0b0101])


def test_a_regressor_takes_numbers() -> None:
    column = label_column([1.5, None], classifier=False, class_labels=[])
    values = np.frombuffer(column.raw.data, dtype="<f8")
    assert values[0] == 1.5 and np.isnan(values[1])
    with pytest.raises(ValueError, match="labels: expected numbers"):
        label_column(["high"], classifier=False, class_labels=[])


def test_feedback_needs_one_label_per_id() -> None:
    request = feedback_request(
        "churn", ["a", "b"], [0, 1], classifier=True, class_labels=["0", "1"]
    )
    assert (request.model, request.row_count) == ("models/churn", 2)
    assert list(request.prediction_ids.strings.values) == ["a", "b"]
    with pytest.raises(ValueError, match=r"one per prediction id \(2\), got 3"):
        feedback_request("churn", ["a", "b"], [0, 1, 1], classifier=True, class_labels=[])
    with pytest.raises(ValueError, match="one value per row"):
        feedback_request("churn", ["a"], [[0, 1]], classifier=True, class_labels=[])


def test_a_logged_batch_carries_the_signature_features_by_name() -> None:
    frame = pd.DataFrame({"segment": ["sme", None], "age": [30.0, None], "target": [1, 0]})
    batch = prediction_batch(
        "churn",
        2,
        frame,
        [1, 0],
        signature=signature(["0", "1"]),
        classifier=True,
        probabilities=[[0.2, 0.8], [0.6, 0.4]],
        deployment="deployments/churn",
        variant="b",
    )
    assert (batch.model, batch.version, batch.row_count, batch.sequence) == (
        "models/churn",
        2,
        2,
        0,  # unsequenced: deduplicated by prediction id
    )
    assert batch.producer_id == producer_id() and len(batch.time_unix_nanos) == 2
    ids = list(batch.prediction_ids.strings.values)
    assert ids[1] == ids[0].replace("/0", "/1") and len(ids[0]) == 34
    age, segment = batch.features
    assert age.name == "age" and np.isnan(np.frombuffer(age.raw.data, "<f8")[1])
    assert list(segment.strings.values) == ["sme", ""] and segment.validity == b"\x01"
    assert list(batch.outputs.label.strings.values) == ["1", "0"]
    second = np.frombuffer(batch.outputs.probabilities[1].raw.data, "<f8")
    assert second.tolist() == [0.8, 0.4]


def test_a_regressor_batch_by_position_with_given_ids() -> None:
    batch = prediction_batch(
        "price",
        1,
        [[30.0, "sme"]],
        [12.5],
        signature=signature([]),
        classifier=False,
        ids=["order-1"],
    )
    assert list(batch.prediction_ids.strings.values) == ["order-1"]
    assert np.frombuffer(batch.outputs.prediction.raw.data, "<f8").tolist() == [12.5]
    assert not batch.outputs.HasField("label")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ids": ["a"]}, "ids: expected 2 ids"),
        ({"predictions": [1]}, "predictions: expected 2 values"),
        ({"probabilities": [[1.0], [1.0]]}, r"probabilities: expected shape \(2, 2\)"),
        ({"data": [[1.0], [2.0]]}, "features: expected 2 columns in signature order"),
    ],
)
def test_batches_that_do_not_fit_are_refused_before_sending(
    changes: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"data": [[1.0, "a"], [2.0, "b"]], "predictions": [0, 1]}
    arguments.update(changes)
    data, predictions = arguments.pop("data"), arguments.pop("predictions")
    with pytest.raises(ValueError, match=message):
        prediction_batch(
            "m",
            1,
            data,
            predictions,
            signature=signature(["0", "1"]),
            classifier=True,
            **arguments,  # type: ignore[arg-type]
        )


def test_generated_ids_are_time_ordered_uuid7() -> None:
    first, second = new_prediction_id(), new_prediction_id()
    assert len(first) == 32 and first[12] == "7" and first[:12] <= second[:12]
