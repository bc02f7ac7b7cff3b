"""Open Inference Protocol messages to arrays and back, built the way tritonclient builds them."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from keel.common.v1 import schema_pb2
from keel.oip.v2 import open_inference_pb2 as oip
from keel.registry.v1 import model_pb2
from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
)
from services.inference import convert
from services.inference.convert import (
    DecodedTensor,
    answers_raw,
    decode_inputs,
    encode_outputs,
    model_metadata,
    requested_outputs,
    signature_from_version,
)
from services.inference.records import FeatureSpec, ModelSignature, Outputs
from services.inference.validation import to_features

pytestmark = pytest.mark.unit

NUMPY = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}
TYPED = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}
SAMPLES: dict[str, npt.NDArray[Any]] = {
    "FP32": np.array([[1.5, -2.25], [3e38, np.inf], [0, -0.0]], dtype=np.float32),
    "FP64": np.array([[1e-300, np.pi], [-1, 2]], dtype=np.float64),
    "INT32": np.array([[2**31 - 1, -(2**31)], [0, 7]], dtype=np.int32),
    "INT64": np.array([[2**63 - 1, -(2**63)], [0, -7]], dtype=np.int64),
    "BOOL": np.array([[True, False], [False, True]]),
}
WORDS = ["café", "日本語", "🙂", "", "plain"]


def serialize_bytes(values: list[bytes]) -> bytes:
    """tritonclient's serialize_byte_tensor: each element a 4-byte LE length, then the bytes."""
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def raw_request(*inputs: tuple[str, str, tuple[int, ...], bytes]) -> oip.ModelInferRequest:
    """Like tritonclient's infer(): metadata in `inputs`, data in `raw_input_contents`."""
    request = oip.ModelInferRequest(model_name="churn")
    for name, datatype, shape, data in inputs:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(data)
    return request


def raw_input(
    name: str, datatype: str, array: npt.NDArray[Any]
) -> tuple[str, str, tuple[int, ...], bytes]:
    if datatype == "BYTES":
        return (
            name,
            datatype,
            array.shape,
            serialize_bytes([str(v).encode() for v in array.ravel()]),
        )
    return name, datatype, array.shape, array.tobytes()


def typed_request(name: str, datatype: str, array: npt.NDArray[Any]) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name="churn")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=array.shape)
    values = (
        [str(v).encode() for v in array.ravel()] if datatype == "BYTES" else array.ravel().tolist()
    )
    getattr(tensor.contents, TYPED[datatype]).extend(values)
    return request


def refused(request: oip.ModelInferRequest) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        decode_inputs(request)
    return caught.value


# decoding --------------------------------------------------------------------------
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_raw_inputs_round_trip_for_every_numeric_datatype(datatype: str) -> None:
    array = SAMPLES[datatype]
    request = raw_request(raw_input("x", datatype, array))
    decoded = decode_inputs(request)["x"]
    assert isinstance(decoded, DecodedTensor)
    assert (decoded.name, decoded.datatype, decoded.shape) == ("x", datatype, array.shape)
    assert decoded.array.dtype == NUMPY[datatype]
    np.testing.assert_array_equal(decoded.array, array)
    assert answers_raw(request)


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64"])
def test_raw_numeric_inputs_are_views_of_the_request(datatype: str) -> None:
    decoded = decode_inputs(raw_request(raw_input("x", datatype, SAMPLES[datatype])))["x"]
    assert not decoded.array.flags.owndata
    assert not decoded.array.flags.writeable  # a view of the request's immutable bytes


def test_raw_data_is_read_little_endian() -> None:
    data = struct.pack("<3f", 1.5, -2.0, 3.25) + struct.pack("<2q", -5, 2**40)
    request = raw_request(("f", "FP32", (3,), data[:12]), ("i", "INT64", (2,), data[12:]))
    decoded = decode_inputs(request)
    assert decoded["f"].array.tolist() == [1.5, -2.0, 3.25]
    assert decoded["i"].array.tolist() == [-5, 2**40]


def test_raw_bool_reads_any_nonzero_byte_as_true() -> None:
    decoded = decode_inputs(raw_request(("b", "BOOL", (3,), b"\x00\x01\x02")))["b"]
    assert decoded.array.tolist() == [False, True, True]


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_typed_inputs_round_trip_for_every_numeric_datatype(datatype: str) -> None:
    array = SAMPLES[datatype]
    request = typed_request("x", datatype, array)
    decoded = decode_inputs(request)["x"]
    assert decoded.shape == array.shape and decoded.array.dtype == NUMPY[datatype]
    np.testing.assert_array_equal(decoded.array, array)
    assert not answers_raw(request)


def test_bytes_with_multibyte_utf8_round_trip_raw_and_typed() -> None:
    array = np.array(WORDS, dtype=object).reshape(5, 1)
    expected = [[w.encode()] for w in WORDS]
    for request in (
        raw_request(raw_input("city", "BYTES", array)),
        typed_request("city", "BYTES", array),
    ):
        decoded = decode_inputs(request)["city"]
        assert decoded.shape == (5, 1) and decoded.array.dtype == object
        assert decoded.array.tolist() == expected


def test_zero_rows_decode_to_empty_arrays() -> None:
    request = raw_request(("features", "FP32", (0, 4), b""), ("city", "BYTES", (0,), b""))
    decoded = decode_inputs(request)
    assert decoded["features"].array.shape == (0, 4)
    assert decoded["city"].array.shape == (0,)


def test_mixing_raw_and_typed_contents_is_refused() -> None:
    request = raw_request(raw_input("a", "FP32", SAMPLES["FP32"]))
    typed = request.inputs.add(name="b", datatype="FP32", shape=[1])
    typed.contents.fp32_contents.append(1.0)
    request.raw_input_contents.append(b"\x00" * 4)
    error = refused(request)
    assert error.message == (
        "input 'b': sets contents but the request uses raw_input_contents; "
        "send every input one way or the other"
    )
    assert error.violations == (FieldViolation("inputs[1].contents", error.message),)


@pytest.mark.parametrize(
    ("shape", "contents", "message"),
    [
        ((1, 1), True, "sets contents but the request uses raw_input_contents"),
        ((0, 2**62), False, "shape [0, 4611686018427387904] is too large"),
    ],
)
def test_a_lone_raw_matrix_is_checked_like_any_input(
    shape: tuple[int, int], contents: bool, message: str
) -> None:
    request = raw_request(("features", "FP32", shape, b"\x00" * 4 * shape[0] * shape[1]))
    if contents:
        request.inputs[0].contents.fp32_contents.append(1.0)
    assert message in refused(request).message


def test_one_raw_entry_per_input() -> None:
    request = raw_request(raw_input("a", "FP32", SAMPLES["FP32"]))
    request.inputs.add(name="b", datatype="FP32", shape=[1])
    error = refused(request)
    assert error.message == "raw_input_contents: expected one entry per input (2), got 1"


def test_a_raw_entry_of_the_wrong_size_is_refused() -> None:
    error = refused(raw_request(("features", "FP32", (3, 4), b"\x00" * 40)))
    assert error.message == (
        "input 'features': expected 48 bytes in raw_input_contents[0] "
        "(12 FP32 elements of 4), got 40"
    )
    assert error.violations[0].field == "raw_input_contents[0]"


@pytest.mark.parametrize(
    ("data", "shape", "got"),
    [
        (serialize_bytes([b"ab"])[:-1], (1,), "got 5 bytes ending inside element 0"),
        (serialize_bytes([b"ab", b""]), (3,), "got 10 bytes"),
        (serialize_bytes([b"ab"]) + b"\x01\x00", (2,), "got 8 bytes ending at element 1"),
        (serialize_bytes([b"ab", b"c"]), (1,), "got 5 bytes after the last"),
    ],
)
def test_malformed_raw_bytes_are_refused(data: bytes, shape: tuple[int, ...], got: str) -> None:
    error = refused(raw_request(("city", "BYTES", shape, data)))
    count = shape[0]
    assert error.message == (
        f"input 'city': expected {count} BYTES elements (4-byte length, then the bytes) "
        f"in raw_input_contents[0], {got}"
    )


def test_typed_contents_must_match_the_shape_and_datatype() -> None:
    request = typed_request("x", "FP32", np.zeros(3, dtype=np.float32))
    request.inputs[0].shape[:] = [2, 2]
    error = refused(request)
    assert (
        error.message
        == "input 'x': expected 4 values in contents.fp32_contents for shape [2, 2], got 3"
    )
    assert error.violations[0].field == "inputs[0].contents.fp32_contents"
    request = typed_request("x", "INT64", np.zeros(3, dtype=np.int64))
    request.inputs[0].datatype = "FP32"
    error = refused(request)
    assert (
        error.message
        == "input 'x': datatype FP32 takes contents.fp32_contents, got contents.int64_contents"
    )


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "message"),
    [
        (
            "x",
            "FP16",
            [1],
            "input 'x': unsupported datatype 'FP16'; "
            "expected one of FP32, FP64, INT32, INT64, BOOL, BYTES",
        ),
        ("x", "FP32", [2, -1], "input 'x': expected non-negative dimensions, got [2, -1]"),
        ("", "FP32", [1], "inputs[0]: expected a name, got none"),
        ("x", "FP32", [0, 2**62], "input 'x': shape [0, 4611686018427387904] is too large"),
    ],
)
def test_bad_tensor_metadata_is_refused(
    name: str, datatype: str, shape: list[int], message: str
) -> None:
    data = b"" if 0 in shape else b"\x00" * 4
    assert refused(raw_request((name, datatype, tuple(shape), data))).message == message


def test_an_input_given_twice_is_refused() -> None:
    one = raw_input("x", "FP32", SAMPLES["FP32"])
    assert refused(raw_request(one, one)).message == "input 'x': given more than once"


def test_requested_outputs_in_request_order() -> None:
    request = oip.ModelInferRequest()
    assert requested_outputs(request) == ()
    request.outputs.add(name="probabilities")
    request.outputs.add(name="label")
    assert requested_outputs(request) == ("probabilities", "label")


def test_a_tritonclient_style_request_validates_into_features() -> None:
    signature = ModelSignature(
        "BINARY_CLASSIFICATION",
        (
            FeatureSpec("age", "FLOAT32", "NUMERIC", min=0, max=120),
            FeatureSpec("plan", "STRING", "CATEGORICAL", categories=("basic", "pro")),
        ),
    )
    request = raw_request(
        raw_input("age", "FP32", np.array([[30], [150]], dtype=np.float32)),
        raw_input("plan", "BYTES", np.array(["pro", "basic"], dtype=object)),
    )
    with pytest.raises(InvalidArgument) as caught:
        to_features(signature, decode_inputs(request))
    assert caught.value.message == "input 'age': 1 value(s) outside [0, 120], first at row 1: 150"
    request.raw_input_contents[0] = np.array([30, 40], dtype=np.float32).tobytes()
    features = to_features(signature, decode_inputs(request))
    np.testing.assert_array_equal(features.numeric, [[30, 1], [40, 0]])


# encoding --------------------------------------------------------------------------
LABEL = np.array([1, 0, 1], dtype=np.int64)
PROBABILITIES = np.array(
    [[0.25, 0.75], [0.9, 0.1], [0.4, 0.6]], dtype=np.float64
)  # as sklearn does
CLASSIFIED = Outputs({"probabilities": PROBABILITIES, "label": LABEL})


def encoded(outputs: Outputs, requested: tuple[str, ...], raw: bool) -> oip.ModelInferResponse:
    response = oip.ModelInferResponse(model_name="churn", model_version="3")
    encode_outputs(outputs, requested, raw, response)
    return response


def as_numpy(response: oip.ModelInferResponse, name: str) -> npt.NDArray[Any]:
    """What tritonclient's InferResult.as_numpy reads: raw_output_contents only."""
    index = [o.name for o in response.outputs].index(name)
    output = response.outputs[index]
    dtype = {"INT64": "<i8", "FP32": "<f4"}[output.datatype]
    return np.frombuffer(response.raw_output_contents[index], dtype=dtype).reshape(output.shape)


def test_raw_outputs_read_back_as_tritonclient_reads_them() -> None:
    response = encoded(CLASSIFIED, (), raw=True)
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("label", "INT64", [3]),
        ("probabilities", "FP32", [3, 2]),
    ]
    assert len(response.raw_output_contents) == 2
    assert not any(o.HasField("contents") for o in response.outputs)
    np.testing.assert_array_equal(as_numpy(response, "label"), LABEL)
    np.testing.assert_array_equal(
        as_numpy(response, "probabilities"), PROBABILITIES.astype(np.float32)
    )


def test_typed_outputs_fill_the_typed_fields() -> None:
    response = encoded(CLASSIFIED, (), raw=False)
    assert not response.raw_output_contents
    label, probabilities = response.outputs
    assert list(label.contents.int64_contents) == [1, 0, 1]
    np.testing.assert_array_equal(
        np.asarray(probabilities.contents.fp32_contents, dtype=np.float32),
        PROBABILITIES.astype(np.float32).ravel(),
    )
    regression = encoded(
        Outputs({"prediction": np.array([1.5, -2], dtype=np.float32)}), (), raw=False
    )
    assert (regression.outputs[0].datatype, list(regression.outputs[0].contents.fp32_contents)) == (
        "FP32",
        [1.5, -2.0],
    )


def test_only_requested_outputs_are_answered_in_the_order_asked() -> None:
    response = encoded(CLASSIFIED, ("probabilities",), raw=True)
    assert [o.name for o in response.outputs] == ["probabilities"]
    assert len(response.raw_output_contents) == 1
    np.testing.assert_array_equal(
        as_numpy(response, "probabilities"), PROBABILITIES.astype(np.float32)
    )
    response = encoded(CLASSIFIED, ("probabilities", "label", "label"), raw=True)
    assert [o.name for o in response.outputs] == ["probabilities", "label"]
    np.testing.assert_array_equal(as_numpy(response, "label"), LABEL)


def test_a_requested_output_the_model_does_not_produce_is_refused() -> None:
    with pytest.raises(InvalidArgument) as caught:
        encoded(CLASSIFIED, ("label", "prediction"), raw=True)
    assert caught.value.message == (
        "output 'prediction': not produced by this model; available outputs: label, probabilities"
    )
    assert caught.value.violations[0].field == "outputs[1].name"


def test_zero_rows_encode_empty_outputs() -> None:
    outputs = Outputs(
        {"label": np.zeros(0, dtype=np.int64), "probabilities": np.zeros((0, 2), dtype=np.float32)}
    )
    response = encoded(outputs, (), raw=True)
    assert list(response.outputs[1].shape) == [0, 2]
    assert list(response.raw_output_contents) == [b"", b""]


def test_other_outputs_keep_their_datatype_and_text_travels_as_bytes() -> None:
    outputs = Outputs(
        {"prediction": np.array([2.5], dtype=np.float64), "note": np.array(["né"], dtype=object)}
    )
    raw = encoded(outputs, (), raw=True)
    assert [(o.name, o.datatype) for o in raw.outputs] == [
        ("prediction", "FP32"),
        ("note", "BYTES"),
    ]
    assert raw.raw_output_contents[1] == serialize_bytes(["né".encode()])
    typed = encoded(outputs, ("note",), raw=False)
    assert list(typed.outputs[0].contents.bytes_contents) == ["né".encode()]


# metadata and signatures -----------------------------------------------------------
def shapes(tensors: Any) -> list[tuple[str, str, list[int]]]:
    return [(t.name, t.datatype, list(t.shape)) for t in tensors]


def test_metadata_of_an_all_numeric_classifier() -> None:
    signature = ModelSignature(
        "MULTICLASS_CLASSIFICATION",
        (FeatureSpec("a", "FLOAT32", "NUMERIC"), FeatureSpec("b", "INT64", "NUMERIC")),
        class_labels=("x", "y", "z"),
    )
    metadata = model_metadata("churn", ["3", "4"], signature, "xgboost")
    assert (metadata.name, list(metadata.versions), metadata.platform) == (
        "churn",
        ["3", "4"],
        "xgboost",
    )
    assert shapes(metadata.inputs) == [("features", "FP32", [-1, 2])]
    assert shapes(metadata.outputs) == [
        ("label", "INT64", [-1]),
        ("probabilities", "FP32", [-1, 3]),
    ]


def test_metadata_of_a_regressor_with_categorical_features() -> None:
    signature = ModelSignature(
        "REGRESSION",
        (
            FeatureSpec("age", "FLOAT32", "NUMERIC"),
            FeatureSpec("plan", "STRING", "CATEGORICAL", categories=("basic", "pro")),
            FeatureSpec("zone", "INT32", "CATEGORICAL"),
        ),
    )
    metadata = model_metadata("price", ["1"], signature, "sklearn")
    assert shapes(metadata.inputs) == [
        ("age", "FP32", [-1]),
        ("plan", "BYTES", [-1]),
        ("zone", "FP32", [-1]),
    ]
    assert shapes(metadata.outputs) == [("prediction", "FP32", [-1])]


def test_a_binary_classifier_without_labels_has_two_probability_columns() -> None:
    signature = ModelSignature("BINARY_CLASSIFICATION", (FeatureSpec("a", "FLOAT32", "NUMERIC"),))
    metadata = model_metadata("m", [], signature, "xgboost")
    assert shapes(metadata.outputs)[1] == ("probabilities", "FP32", [-1, 2])


def version_with(*features: schema_pb2.Feature) -> model_pb2.ModelVersion:
    return model_pb2.ModelVersion(
        name="models/churn/versions/3",
        signature=schema_pb2.Signature(inputs=features, class_labels=["stay", "churn"]),
    )


def test_signature_from_a_registry_version() -> None:
    version = version_with(
        schema_pb2.Feature(
            name="age",
            dtype=schema_pb2.DATA_TYPE_FLOAT32,
            kind=schema_pb2.FEATURE_KIND_NUMERIC,
            required=True,
            range=schema_pb2.NumericRange(min=0, max=120),
        ),
        schema_pb2.Feature(
            name="debt",
            dtype=schema_pb2.DATA_TYPE_FLOAT64,
            kind=schema_pb2.FEATURE_KIND_NUMERIC,
            range=schema_pb2.NumericRange(max=0),  # only the max, and it is 0
        ),
        schema_pb2.Feature(
            name="plan",
            dtype=schema_pb2.DATA_TYPE_STRING,
            kind=schema_pb2.FEATURE_KIND_CATEGORICAL,
            required=True,
            categories=["basic", "pro"],
        ),
    )
    signature = signature_from_version(version, schema_pb2.TASK_BINARY_CLASSIFICATION)
    assert signature == ModelSignature(
        task="BINARY_CLASSIFICATION",
        inputs=(
            FeatureSpec("age", "FLOAT32", "NUMERIC", required=True, min=0.0, max=120.0),
            FeatureSpec("debt", "FLOAT64", "NUMERIC", required=False, min=None, max=0.0),
            FeatureSpec(
                "plan", "STRING", "CATEGORICAL", required=True, categories=("basic", "pro")
            ),
        ),
        class_labels=("stay", "churn"),
    )
    regression = signature_from_version(version_with(), schema_pb2.TASK_REGRESSION)
    assert regression.task == "REGRESSION" and regression.inputs == ()


def test_a_version_the_registry_should_have_refused_cannot_be_served() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        signature_from_version(version_with(), schema_pb2.TASK_UNSPECIFIED)
    assert caught.value.message == "models/churn/versions/3: the model has no task; cannot serve it"
    broken = version_with(schema_pb2.Feature(name="x", kind=schema_pb2.FEATURE_KIND_NUMERIC))
    with pytest.raises(FailedPrecondition) as caught:
        signature_from_version(broken, schema_pb2.TASK_REGRESSION)
    assert (
        caught.value.message
        == "models/churn/versions/3: feature 'x' has no dtype or kind; cannot serve it"
    )


def test_rows_over_the_limit_are_refused_before_decoding() -> None:
    request = oip.ModelInferRequest(model_name="m")
    request.inputs.add(name="features", datatype="FP32", shape=[1001, 4])
    request.raw_input_contents.append(b"")  # never read: the shape alone is refused
    with pytest.raises(ResourceExhausted, match=r"input 'features': 1001 rows is over .* 1000"):
        convert.decode_inputs(request, convert.Limits(max_rows=1000))


def test_a_tensor_over_the_element_limit_is_refused() -> None:
    request = oip.ModelInferRequest(model_name="m")
    request.inputs.add(name="features", datatype="FP32", shape=[10, 2_000_000])
    request.raw_input_contents.append(b"")
    with pytest.raises(ResourceExhausted, match=r"holds 20000000 elements, over .* 1000000"):
        convert.decode_inputs(request, convert.Limits(max_elements=1_000_000))


def test_a_string_over_the_length_limit_is_refused() -> None:
    request = oip.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="city", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"paris", b"x" * 300])
    with pytest.raises(InvalidArgument, match=r"input 'city': a BYTES element of 300 bytes"):
        convert.decode_inputs(request, convert.Limits(max_string_bytes=256))
    within = convert.decode_inputs(request, convert.Limits(max_string_bytes=300))
    assert within["city"].array.tolist() == [b"paris", b"x" * 300]
