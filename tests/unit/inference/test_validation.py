"""Decoded tensors against a signature: layouts, NaN, ranges, categories, every message."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from services.common.errors import FieldViolation, InvalidArgument
from services.inference.records import Features, FeatureSpec, ModelSignature
from services.inference.validation import DecodedTensor, to_features

pytestmark = pytest.mark.unit

NUMERIC = ModelSignature(
    task="BINARY_CLASSIFICATION",
    inputs=(
        FeatureSpec("age", "FLOAT32", "NUMERIC", min=0, max=120),
        FeatureSpec("income", "FLOAT64", "NUMERIC", required=False),
        FeatureSpec("tenure", "INT64", "NUMERIC", min=0),
    ),
    class_labels=("stay", "churn"),
)
MIXED = ModelSignature(
    task="REGRESSION",
    inputs=(
        FeatureSpec("age", "FLOAT32", "NUMERIC", max=120),
        FeatureSpec("plan", "STRING", "CATEGORICAL", categories=("basic", "pro", "café")),
        FeatureSpec("city", "STRING", "CATEGORICAL", required=False),
        FeatureSpec("zone", "INT32", "CATEGORICAL", required=False, categories=("10", "20", "x")),
    ),
)


def tensor(
    name: str, datatype: str, values: Any, shape: tuple[int, ...] | None = None
) -> DecodedTensor:
    if datatype == "BYTES":
        array: npt.NDArray[Any] = np.empty(len(values), dtype=object)
        array[:] = [v.encode() if isinstance(v, str) else v for v in values]
    else:
        dtypes = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}
        array = np.asarray(values, dtype=dtypes.get(datatype, np.bool_))
    shape = array.shape if shape is None else shape
    return DecodedTensor(name, datatype, shape, array.reshape(shape))


def given(*tensors: DecodedTensor) -> dict[str, DecodedTensor]:
    return {t.name: t for t in tensors}


def refused(signature: ModelSignature, *tensors: DecodedTensor) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        to_features(signature, given(*tensors))
    return caught.value


ROWS = np.array([[30, 1000.5, 2], [45, np.nan, 0], [0, 20.0, 7]], dtype=np.float32)


def per_feature(rows: npt.NDArray[np.float32]) -> dict[str, DecodedTensor]:
    return given(
        tensor("age", "FP32", rows[:, 0]),
        tensor("income", "FP32", rows[:, 1], (len(rows), 1)),
        tensor("tenure", "FP32", rows[:, 2]),
    )


def assert_same(a: Features, b: Features) -> None:
    np.testing.assert_array_equal(a.numeric, b.numeric)
    assert a.numeric.dtype == b.numeric.dtype == np.float32
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])


# layouts ---------------------------------------------------------------------------
def test_the_features_matrix_and_one_input_per_feature_give_identical_features() -> None:
    matrix = to_features(NUMERIC, given(tensor("features", "FP32", ROWS)))
    columns = to_features(NUMERIC, per_feature(ROWS))
    assert_same(matrix, columns)
    assert matrix.rows == 3
    np.testing.assert_array_equal(matrix.numeric, ROWS)  # NaN == NaN for this helper


def test_an_fp64_matrix_becomes_float32() -> None:
    features = to_features(NUMERIC, given(tensor("features", "FP64", ROWS.astype(np.float64))))
    assert features.numeric.dtype == np.float32
    np.testing.assert_array_equal(features.numeric, ROWS)
    assert features.columns["income"].dtype == np.float64


def test_integer_and_bool_features_become_float32_columns() -> None:
    signature = ModelSignature(
        task="REGRESSION",
        inputs=(
            FeatureSpec("n", "INT32", "NUMERIC"),
            FeatureSpec("big", "INT64", "NUMERIC"),
            FeatureSpec("flag", "BOOL", "NUMERIC"),
        ),
    )
    features = to_features(
        signature,
        given(
            tensor("n", "INT32", [1, -2]),
            tensor("big", "INT64", [3, 4]),
            tensor("flag", "BOOL", [True, False]),
        ),
    )
    np.testing.assert_array_equal(features.numeric, [[1, 3, 1], [-2, 4, 0]])
    assert features.columns["flag"].dtype == np.bool_


@pytest.mark.parametrize(
    ("datatype", "shape", "got"),
    [
        ("INT64", (3, 3), "INT64 [3, 3]"),
        ("FP32", (3, 2), "FP32 [3, 2]"),
        ("FP32", (9,), "FP32 [9]"),
    ],
)
def test_a_matrix_of_the_wrong_type_or_shape_is_refused(
    datatype: str, shape: tuple[int, ...], got: str
) -> None:
    values = np.zeros(shape)
    error = refused(NUMERIC, tensor("features", datatype, values))
    assert error.message == f"input 'features': expected FP32 or FP64 [N, 3], got {got}"
    assert error.violations == (FieldViolation("inputs['features']", error.message),)


def test_features_together_with_per_feature_inputs_is_refused() -> None:
    error = refused(NUMERIC, tensor("features", "FP32", ROWS), tensor("age", "FP32", [1, 2, 3]))
    assert error.message == (
        "input 'age': expected either 'features' alone or one input per feature, got both"
    )


def test_an_unknown_input_lists_the_expected_names() -> None:
    error = refused(NUMERIC, tensor("agee", "FP32", [1.0]))
    assert error.message == (
        "input 'agee': unknown input; expected 'features' [N, 3] "
        "or one input per feature: age, income, tenure"
    )
    error = refused(MIXED, tensor("features", "FP32", np.zeros((1, 4))))
    assert error.message == "input 'features': unknown input; expected age, plan, city, zone"


def test_a_missing_required_feature_is_refused() -> None:
    error = refused(NUMERIC, tensor("age", "FP32", [1.0]))
    assert error.message == (
        "input 'tenure': missing; the feature is required "
        "(expected FP32, FP64, INT32, INT64 or BOOL [N] or [N, 1])"
    )
    error = refused(MIXED, tensor("age", "FP32", [1.0]))
    assert (
        error.message
        == "input 'plan': missing; the feature is required (expected BYTES [N] or [N, 1])"
    )


def test_missing_optional_features_are_nan_and_absent_from_columns() -> None:
    features = to_features(
        NUMERIC, given(tensor("age", "FP32", [1, 2]), tensor("tenure", "INT64", [3, 4]))
    )
    assert np.isnan(features.numeric[:, 1]).all()
    np.testing.assert_array_equal(features.numeric[:, [0, 2]], [[1, 3], [2, 4]])
    assert set(features.columns) == {"age", "tenure"}


def test_no_inputs_at_all_is_refused_when_every_feature_is_optional() -> None:
    signature = ModelSignature(
        "REGRESSION", (FeatureSpec("x", "FLOAT32", "NUMERIC", required=False),)
    )
    error = refused(signature)
    assert error.message == "request has no inputs; expected one input per feature: x"


@pytest.mark.parametrize(
    ("made", "got"),
    [
        (tensor("age", "BYTES", ["1", "2"]), "BYTES [2]"),
        (tensor("age", "FP32", np.zeros((2, 2))), "FP32 [2, 2]"),
        (tensor("age", "FP32", np.zeros((2, 1, 1))), "FP32 [2, 1, 1]"),
    ],
)
def test_a_feature_of_the_wrong_type_or_shape_is_refused(made: DecodedTensor, got: str) -> None:
    error = refused(NUMERIC, made, tensor("tenure", "INT64", [1, 2]))
    assert error.message == (
        f"input 'age': expected FP32, FP64, INT32, INT64 or BOOL [N] or [N, 1], got {got}"
    )


def test_a_categorical_string_feature_takes_bytes_only() -> None:
    error = refused(MIXED, tensor("age", "FP32", [1.0]), tensor("plan", "INT64", [1]))
    assert error.message == "input 'plan': expected BYTES [N] or [N, 1], got INT64 [1]"


def test_every_input_must_have_the_same_number_of_rows() -> None:
    error = refused(NUMERIC, tensor("age", "FP32", [1, 2, 3]), tensor("tenure", "INT64", [1, 2]))
    assert error.message == "input 'tenure': expected 3 rows like input 'age', got INT64 [2]"


# values ----------------------------------------------------------------------------
def test_nan_in_a_required_feature_is_refused() -> None:
    error = refused(
        NUMERIC, tensor("age", "FP32", [1, np.nan, np.nan]), tensor("tenure", "INT64", [1, 2, 3])
    )
    assert error.message == (
        "input 'age': 2 missing value(s) (NaN) but the feature is required, first at row 1"
    )
    matrix = ROWS.copy()
    matrix[2, 0] = np.nan
    error = refused(NUMERIC, tensor("features", "FP32", matrix))
    assert error.message == (
        "input 'features' column 'age': 1 missing value(s) (NaN) but the feature is required, "
        "first at row 2"
    )
    assert error.violations[0].field == "inputs['features']"


def test_nan_in_an_optional_feature_passes_through() -> None:
    features = to_features(NUMERIC, per_feature(ROWS))
    assert np.isnan(features.numeric[1, 1])
    assert np.isnan(features.columns["income"][1])


def test_values_outside_a_declared_range_are_refused() -> None:
    ages = [30, 40, 50, 150, -1, 200]
    error = refused(NUMERIC, tensor("age", "FP32", ages), tensor("tenure", "INT64", [0] * 6))
    assert error.message == "input 'age': 3 value(s) outside [0, 120], first at row 3: 150"
    error = refused(NUMERIC, tensor("age", "FP32", [1, 2]), tensor("tenure", "INT64", [5, -3]))
    assert error.message == "input 'tenure': 1 value(s) below 0, first at row 1: -3"
    error = refused(MIXED, tensor("age", "FP64", [120.5]), tensor("plan", "BYTES", ["pro"]))
    assert error.message == "input 'age': 1 value(s) above 120, first at row 0: 120.5"
    matrix = ROWS.copy()
    matrix[1, 2] = -2
    error = refused(NUMERIC, tensor("features", "FP32", matrix))
    assert (
        error.message == "input 'features' column 'tenure': 1 value(s) below 0, first at row 1: -2"
    )


def test_bounds_are_inclusive_and_nan_is_not_out_of_range() -> None:
    signature = ModelSignature(
        "REGRESSION", (FeatureSpec("x", "FLOAT32", "NUMERIC", required=False, min=0, max=1),)
    )
    features = to_features(signature, given(tensor("x", "FP32", [0, 1, np.nan])))
    np.testing.assert_array_equal(features.numeric[:, 0], [0, 1, np.nan])


# categories ------------------------------------------------------------------------
def mixed(plan: list[str], **more: DecodedTensor) -> Features:
    rows = len(plan)
    return to_features(
        MIXED,
        given(tensor("age", "FP32", [30] * rows), tensor("plan", "BYTES", plan), *more.values()),
    )


def test_categories_become_their_index_and_the_strings_are_kept() -> None:
    features = mixed(["pro", "basic", "café", "pro"])
    np.testing.assert_array_equal(features.numeric[:, 1], [1, 0, 2, 1])
    assert features.numeric.dtype == np.float32
    assert features.columns["plan"].tolist() == ["pro", "basic", "café", "pro"]
    assert np.isnan(features.numeric[:, 2:]).all()  # city and zone not sent


def test_an_unknown_category_is_refused() -> None:
    with pytest.raises(InvalidArgument) as caught:
        mixed(["basic", "gold", "silver"])
    assert caught.value.message == (
        "input 'plan': unknown category 'gold' at row 1; expected one of basic, pro, café"
    )
    assert caught.value.violations[0].field == "inputs['plan']"


def test_an_empty_string_is_a_missing_value() -> None:
    with pytest.raises(InvalidArgument) as caught:
        mixed(["basic", ""])
    assert caught.value.message == (
        "input 'plan': 1 missing value(s) (empty) but the feature is required, first at row 1"
    )
    features = mixed(["basic", "pro"], city=tensor("city", "BYTES", ["Zürich", ""]))
    assert np.isnan(features.numeric[:, 2]).all()  # no categories declared: NaN codes
    assert features.columns["city"].tolist() == ["Zürich", ""]


def test_an_empty_string_is_a_category_when_declared() -> None:
    signature = ModelSignature(
        "REGRESSION", (FeatureSpec("c", "STRING", "CATEGORICAL", categories=("a", "")),)
    )
    features = to_features(signature, given(tensor("c", "BYTES", ["", "a"])))
    np.testing.assert_array_equal(features.numeric[:, 0], [1, 0])


def test_categorical_text_must_be_utf8() -> None:
    with pytest.raises(InvalidArgument) as caught:
        mixed(["basic", "pro"], city=tensor("city", "BYTES", [b"ok", b"\xff\xfe"]))
    assert caught.value.message == "input 'city': expected UTF-8 text, got invalid bytes at row 1"


def test_a_numeric_categorical_feature_matches_categories_by_value() -> None:
    features = mixed(["basic"] * 3, zone=tensor("zone", "INT32", [20, 10, 20]))
    np.testing.assert_array_equal(features.numeric[:, 3], [1, 0, 1])
    assert features.columns["zone"].dtype == np.int32
    features = mixed(["basic"] * 2, zone=tensor("zone", "BYTES", ["x", "10"]))  # text also works
    np.testing.assert_array_equal(features.numeric[:, 3], [2, 0])
    features = mixed(["basic"] * 2, zone=tensor("zone", "FP64", [np.nan, 20.0]))  # optional: NaN
    np.testing.assert_array_equal(features.numeric[:, 3], [np.nan, 1])
    with pytest.raises(InvalidArgument) as caught:
        mixed(["basic"] * 2, zone=tensor("zone", "INT64", [10, 30]))
    assert (
        caught.value.message
        == "input 'zone': unknown category 30 at row 1; expected one of 10, 20, x"
    )


def test_a_numeric_categorical_feature_without_categories_passes_its_value() -> None:
    signature = ModelSignature("REGRESSION", (FeatureSpec("code", "INT64", "CATEGORICAL"),))
    features = to_features(signature, given(tensor("code", "INT64", [7, 3])))
    np.testing.assert_array_equal(features.numeric[:, 0], [7, 3])


# zero rows -------------------------------------------------------------------------
def test_zero_rows_give_an_empty_matrix_in_either_layout() -> None:
    empty = np.zeros((0, 3), dtype=np.float32)
    matrix = to_features(NUMERIC, given(tensor("features", "FP32", empty)))
    columns = to_features(NUMERIC, per_feature(empty))
    assert matrix.numeric.shape == columns.numeric.shape == (0, 3)
    assert_same(matrix, columns)
    features = mixed([])
    assert features.numeric.shape == (0, 4) and features.rows == 0
    assert features.columns["plan"].tolist() == []
