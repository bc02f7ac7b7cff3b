"""Feature tables to inference requests and answers back to arrays, with no server: the
layout follows the model's metadata, a DataFrame goes by column name, an array or rows
by position, categories as BYTES, missing values kept missing."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest

from keel.client.tensors import (
    InputSpec,
    Layout,
    decode_outputs,
    encode_rows,
    explain_request,
    infer_request,
    parameters,
)
from keel.common.v1 import schema_pb2
from keel.oip.v2 import open_inference_pb2 as oip

NUMERIC = Layout((InputSpec("features", "FP32", (-1, 3)),))
MIXED = Layout(
    (
        InputSpec("age", "FP32", (-1,)),
        InputSpec("segment", "BYTES", (-1,)),
        InputSpec("code", "FP32", (-1,)),
    )
)


def texts(raw: bytes) -> list[str]:
    found, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        found.append(raw[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return found


def test_a_dataframe_goes_one_tensor_per_column_by_name() -> None:
    frame = pd.DataFrame(
        {
            "segment": pd.Categorical(["sme", None, "retail"]),
            "age": [31.0, np.nan, 40.5],
            "flag": [True, False, True],
            "city": ["Oslo", "", None],
        },
        index=["a", "b", "c"],
    )
    rows = encode_rows(frame, MIXED)
    request = infer_request("churn", "", rows)
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("segment", "BYTES", [3]),
        ("age", "FP64", [3]),
        ("flag", "FP64", [3]),
        ("city", "BYTES", [3]),
    ]
    assert texts(request.raw_input_contents[0]) == ["sme", "", "retail"]
    age = np.frombuffer(request.raw_input_contents[1], dtype="<f8")
    np.testing.assert_array_equal(age, [31.0, np.nan, 40.5])
    np.testing.assert_array_equal(np.frombuffer(request.raw_input_contents[2], "<f8"), [1, 0, 1])
    assert texts(request.raw_input_contents[3]) == ["Oslo", "", ""]
    assert rows.count == 3 and list(rows.index) == ["a", "b", "c"]


def test_a_numeric_input_the_metadata_lists_as_bytes_is_sent_as_text() -> None:
    frame = pd.DataFrame({"segment": [1, 2], "age": [3.0, 4.0]})
    request = infer_request("m", "", encode_rows(frame, MIXED))
    assert request.inputs[0].datatype == "BYTES"
    assert texts(request.raw_input_contents[0]) == ["1", "2"]


def test_an_array_for_an_all_numeric_model_is_one_fp32_matrix() -> None:
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    request = infer_request("m", "3", encode_rows(x, NUMERIC), {"user": "u1"})
    [tensor] = request.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("features", "FP32", [2, 3])
    matrix = np.frombuffer(request.raw_input_contents[0], dtype="<f4").reshape(2, 3)
    np.testing.assert_array_equal(matrix, x)
    assert request.model_version == "3" and request.parameters["user"].string_param == "u1"


def test_rows_with_text_go_by_position_in_the_metadata_order() -> None:
    rows = encode_rows([[30, "sme", None], [41, None, 2]], MIXED)
    request = infer_request("m", "", rows)
    assert [t.name for t in request.inputs] == ["age", "segment", "code"]
    assert [t.datatype for t in request.inputs] == ["FP64", "BYTES", "FP64"]
    assert texts(request.raw_input_contents[1]) == ["sme", ""]
    code = np.frombuffer(request.raw_input_contents[2], dtype="<f8")
    np.testing.assert_array_equal(code, [np.nan, 2.0])


def test_a_frame_without_text_column_names_is_positional() -> None:
    rows = encode_rows(pd.DataFrame(np.ones((2, 3))), NUMERIC)
    assert [t.name for t in rows.tensors] == ["features"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.ones((2, 4)), "the model takes 3 columns, got 4"),
        (np.ones(3), "expected a 2-D array"),
        ([["a", "b", "c"]], "input 'features': expected numbers"),
    ],
)
def test_shapes_and_types_that_cannot_fit_are_refused_before_a_call(
    data: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_rows(data, NUMERIC)


def test_dates_are_refused() -> None:
    frame = pd.DataFrame({"when": pd.to_datetime(["2025-01-01"])})
    with pytest.raises(ValueError, match="feature 'when': dtype datetime64"):
        encode_rows(frame, MIXED)


def test_parameters_keep_their_types() -> None:
    found = parameters({"flag": True, "n": 3, "key": "k"})
    assert found["flag"].WhichOneof("parameter_choice") == "bool_param"
    assert found["n"].int64_param == 3 and found["key"].string_param == "k"
    with pytest.raises(TypeError, match="parameter 'x'"):
        parameters({"x": 1.5})  # type: ignore[dict-item]


def test_explain_requests_carry_text_as_string_values() -> None:
    frame = pd.DataFrame({"segment": ["sme"], "age": [3.0]})
    request = explain_request("m", "", encode_rows(frame, MIXED), ["yes"])
    segment, age = request.inputs
    assert segment.data_type == schema_pb2.DATA_TYPE_STRING
    assert list(segment.string_values.values) == ["sme"]
    assert age.data_type == schema_pb2.DATA_TYPE_FLOAT64
    assert np.frombuffer(age.raw_values, "<f8").tolist() == [3.0]
    assert list(request.class_labels) == ["yes"]


def test_raw_and_typed_answers_decode_alike() -> None:
    raw = oip.ModelInferResponse(id="p")
    raw.outputs.add(name="label", datatype="INT64", shape=[2])
    raw.outputs.add(name="probabilities", datatype="FP32", shape=[2, 2])
    raw.raw_output_contents.append(np.array([1, 0], "<i8").tobytes())
    raw.raw_output_contents.append(np.array([[0.2, 0.8], [0.9, 0.1]], "<f4").tobytes())
    typed = oip.ModelInferResponse(id="p")
    label = typed.outputs.add(name="label", datatype="INT64", shape=[2])
    label.contents.int64_contents.extend([1, 0])
    proba = typed.outputs.add(name="probabilities", datatype="FP32", shape=[2, 2])
    proba.contents.fp32_contents.extend([0.2, 0.8, 0.9, 0.1])
    for response in (raw, typed):
        found = decode_outputs(response)
        assert found["label"].tolist() == [1, 0]
        np.testing.assert_allclose(found["probabilities"], [[0.2, 0.8], [0.9, 0.1]], rtol=1e-6)
