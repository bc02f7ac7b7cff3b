"""Signature inference from a DataFrame or a numpy array."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.client.signature import infer_signature
from keel.common.v1 import schema_pb2

BINARY = schema_pb2.TASK_BINARY_CLASSIFICATION


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": np.array([30, 41, 52], dtype=np.int64),
            "score": np.array([0.5, 0.25, 1.0], dtype=np.float32),
            "income": [1000.0, np.nan, 3000.0],
            "count": np.array([1, 2, 3], dtype=np.int32),
            "member": [True, False, True],
            "city": ["paris", "oslo", None],
            "plan": pd.Categorical(["gold", "basic", "gold"], categories=["gold", "basic", "pro"]),
            "note": pd.array(["x", "y", "x"], dtype="string"),
        }
    )


def test_a_dataframe_keeps_names_dtypes_and_categories() -> None:
    signature = infer_signature(frame(), task=BINARY, class_labels=[0, 1])
    by_name = {f.name: f for f in signature.inputs}
    assert [f.name for f in signature.inputs] == list(frame().columns)
    assert by_name["age"].dtype == schema_pb2.DATA_TYPE_INT64
    assert by_name["score"].dtype == schema_pb2.DATA_TYPE_FLOAT32
    assert by_name["income"].dtype == schema_pb2.DATA_TYPE_FLOAT64
    assert by_name["count"].dtype == schema_pb2.DATA_TYPE_INT32
    assert by_name["member"].dtype == schema_pb2.DATA_TYPE_BOOL
    for name in ("age", "score", "income", "count", "member"):
        assert by_name[name].kind == schema_pb2.FEATURE_KIND_NUMERIC
        assert not by_name[name].HasField("range")
    for name in ("city", "plan", "note"):
        assert by_name[name].kind == schema_pb2.FEATURE_KIND_CATEGORICAL
        assert by_name[name].dtype == schema_pb2.DATA_TYPE_STRING
    assert list(by_name["city"].categories) == ["oslo", "paris"]
    assert list(by_name["plan"].categories) == ["gold", "basic", "pro"]  # the dtype's order
    assert list(by_name["note"].categories) == ["x", "y"]


def test_features_with_missing_training_values_are_optional() -> None:
    by_name = {f.name: f for f in infer_signature(frame(), task=BINARY, class_labels=[0, 1]).inputs}
    assert not by_name["income"].required
    assert not by_name["city"].required
    assert by_name["age"].required and by_name["plan"].required


def test_a_numpy_array_gives_float32_features_f0_to_fn() -> None:
    signature = infer_signature(np.zeros((4, 3), dtype=np.float64), task=schema_pb2.TASK_REGRESSION)
    assert [f.name for f in signature.inputs] == ["f0", "f1", "f2"]
    assert {f.dtype for f in signature.inputs} == {schema_pb2.DATA_TYPE_FLOAT32}
    assert {f.kind for f in signature.inputs} == {schema_pb2.FEATURE_KIND_NUMERIC}
    assert [(o.name, o.dtype, list(o.shape)) for o in signature.outputs] == [
        ("prediction", schema_pb2.DATA_TYPE_FLOAT32, [-1])
    ]
    assert list(signature.class_labels) == []


def test_classifier_outputs_and_class_labels_as_text() -> None:
    signature = infer_signature(
        np.zeros((2, 2)),
        task=schema_pb2.TASK_MULTICLASS_CLASSIFICATION,
        class_labels=np.array([0, 1, 2]),
    )
    assert [(o.name, o.dtype, list(o.shape)) for o in signature.outputs] == [
        ("label", schema_pb2.DATA_TYPE_INT64, [-1]),
        ("probabilities", schema_pb2.DATA_TYPE_FLOAT32, [-1, 3]),
    ]
    assert list(signature.class_labels) == ["0", "1", "2"]


def test_protected_features_are_marked() -> None:
    signature = infer_signature(
        frame(), task=BINARY, class_labels=["no", "yes"], protected=["city"]
    )
    assert [f.name for f in signature.inputs if f.protected] == ["city"]
    array_signature = infer_signature(
        np.zeros((2, 3)), task=BINARY, class_labels=[0, 1], protected=["f2"]
    )
    assert [f.name for f in array_signature.inputs if f.protected] == ["f2"]


def test_a_protected_name_that_is_not_a_feature_is_refused() -> None:
    with pytest.raises(ValueError, match="'sex'|sex"):
        infer_signature(frame(), task=BINARY, class_labels=[0, 1], protected=["sex"])


def test_bad_shapes_and_types_are_refused() -> None:
    with pytest.raises(ValueError, match="2-D"):
        infer_signature(np.zeros(3), task=schema_pb2.TASK_REGRESSION)
    with pytest.raises(ValueError, match="numeric"):
        infer_signature(np.array([["a", "b"]], dtype=object), task=schema_pb2.TASK_REGRESSION)
    with pytest.raises(ValueError, match="class labels"):
        infer_signature(np.zeros((2, 2)), task=BINARY)
    dates = pd.DataFrame({"when": pd.to_datetime(["2025-01-01", "2025-01-02"])})
    with pytest.raises(ValueError, match="'when'"):
        infer_signature(dates, task=schema_pb2.TASK_REGRESSION)
