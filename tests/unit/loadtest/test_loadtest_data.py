"""Generated payloads: the inference matrix F wide as ModelMetadata says, monitor
batches that fit the signature and the task, and the command's refusals of bad flags."""

from __future__ import annotations

import random

import numpy as np
import pytest
from typer.testing import CliRunner

from keel.cli import build_app
from keel.common.v1 import schema_pb2
from keel.loadtest.data import batch_template, infer_request, matrix_width, stamped
from keel.oip.v2 import open_inference_pb2 as oip

TensorMetadata = oip.ModelMetadataResponse.TensorMetadata


def test_the_matrix_is_f_wide_and_raw_little_endian_fp32() -> None:
    metadata = oip.ModelMetadataResponse(
        name="churn", inputs=[TensorMetadata(name="features", datatype="FP32", shape=[-1, 7])]
    )
    width = matrix_width(metadata)
    request = infer_request("churn", "2", 5, width, random.Random(0))
    assert (request.model_name, request.model_version, request.id) == ("churn", "2", "")
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("features", "FP32", [5, 7])
    ]
    values = np.frombuffer(request.raw_input_contents[0], dtype="<f4")
    assert values.shape == (35,) and np.isfinite(values).all()


def test_per_feature_inputs_are_refused_with_what_was_found() -> None:
    metadata = oip.ModelMetadataResponse(
        name="plans",
        inputs=[
            TensorMetadata(name="age", datatype="FP32", shape=[-1]),
            TensorMetadata(name="plan", datatype="BYTES", shape=[-1]),
        ],
    )
    with pytest.raises(
        ValueError, match=r"model 'plans': expected one input 'features'.*plan BYTES"
    ):
        matrix_width(metadata)


def signature() -> schema_pb2.Signature:
    numeric, categorical = schema_pb2.FEATURE_KIND_NUMERIC, schema_pb2.FEATURE_KIND_CATEGORICAL
    return schema_pb2.Signature(
        inputs=[
            schema_pb2.Feature(
                name="age",
                dtype=schema_pb2.DATA_TYPE_FLOAT32,
                kind=numeric,
                range=schema_pb2.NumericRange(min=0, max=1),
            ),
            schema_pb2.Feature(name="visits", dtype=schema_pb2.DATA_TYPE_INT64, kind=numeric),
            schema_pb2.Feature(
                name="plan",
                dtype=schema_pb2.DATA_TYPE_STRING,
                kind=categorical,
                categories=["basic", "pro"],
            ),
            schema_pb2.Feature(name="vip", dtype=schema_pb2.DATA_TYPE_BOOL, kind=numeric),
        ],
        class_labels=["a", "b", "c"],
    )


def test_a_batch_fits_the_signature_and_a_multiclass_task() -> None:
    template = batch_template(
        "churn", 3, schema_pb2.TASK_MULTICLASS_CLASSIFICATION, signature(), 40, random.Random(1)
    )
    message = stamped(template, "keel-loadtest/x", [f"id{i}" for i in range(40)], 123)
    assert (message.model, message.version, message.row_count) == ("models/churn", 3, 40)
    assert (message.producer_id, message.sequence) == ("keel-loadtest/x", 0)
    assert list(message.prediction_ids.strings.values) == [f"id{i}" for i in range(40)]
    assert list(message.time_unix_nanos) == [123] * 40
    age, visits, plan, vip = message.features
    assert [c.name for c in message.features] == ["age", "visits", "plan", "vip"]
    ages = np.frombuffer(age.raw.data, "<f8")
    assert len(ages) == 40 and ages.min() >= 0 and ages.max() <= 1
    assert len(np.frombuffer(visits.raw.data, "<i8")) == 40
    assert list(plan.dictionary.dictionary) == ["basic", "pro"]
    assert set(np.frombuffer(plan.dictionary.codes, "<i4")) <= {0, 1}
    assert len(vip.raw.data) == 40
    probabilities = np.stack(
        [np.frombuffer(c.raw.data, "<f8") for c in message.outputs.probabilities], axis=1
    )
    assert probabilities.shape == (40, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    labels = np.frombuffer(message.outputs.label.raw.data, "<i8")
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=1))
    assert not template.prediction_ids.strings.values  # the template is left as it was


@pytest.mark.parametrize(
    ("task", "fields"),
    [
        (schema_pb2.TASK_BINARY_CLASSIFICATION, {"label", "score"}),
        (schema_pb2.TASK_REGRESSION, {"prediction"}),
    ],
)
def test_outputs_follow_the_task(task: schema_pb2.Task.ValueType, fields: set[str]) -> None:
    template = batch_template("m", 1, task, signature(), 8, random.Random(2))
    assert {field.name for field, _ in template.outputs.ListFields()} == fields


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--duration", "0"], "duration 0.0: expected a positive number"),
        (["--inference", "nowhere"], "address 'nowhere': expected host:port"),
        (["--timeout", "-1"], "timeout -1.0: expected a positive number"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags: list[str], message: str) -> None:
    result = CliRunner().invoke(build_app(), ["loadtest", "inference", "-m", "churn", *flags])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"keel: {message}")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
