"""The error table: codes by class (subclasses inherit), details for programs."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2

from services.common.errors import (
    INTERNAL_MESSAGE,
    STATUS_TABLE,
    Conflict,
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    internal_status,
    rich_status,
    status_code_for,
)


class ModelNotFound(NotFound):
    reason = "MODEL_NOT_FOUND"


def test_every_class_in_the_table_maps_to_its_code() -> None:
    for cls, code in STATUS_TABLE.items():
        assert status_code_for(cls("x")) == code


def test_a_service_error_inherits_the_code_of_its_base() -> None:
    assert status_code_for(ModelNotFound("model 'churn' not found")) == grpc.StatusCode.NOT_FOUND
    assert status_code_for(Conflict("alias moved")) == grpc.StatusCode.ABORTED


def test_an_error_outside_the_table_is_internal() -> None:
    assert status_code_for(DomainError("?")) == grpc.StatusCode.INTERNAL


def test_rich_status_carries_message_reason_and_field_violations() -> None:
    error = InvalidArgument(
        "input 'age': expected FP32 [N, 1], got BYTES [3]",
        violations=[FieldViolation("inputs[0]", "expected FP32 [N, 1], got BYTES [3]")],
        metadata={"input": "age"},
    )
    status = rich_status(error)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message == "input 'age': expected FP32 [N, 1], got BYTES [3]"
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(bad)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "INVALID_ARGUMENT",
        "keel.dev",
        {"input": "age"},
    )
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("inputs[0]", "expected FP32 [N, 1], got BYTES [3]")
    ]


def test_subclass_reason_is_sent() -> None:
    status = rich_status(ModelNotFound("model 'churn' not found"))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "MODEL_NOT_FOUND"
    assert len(status.details) == 1


def test_internal_status_says_nothing_specific() -> None:
    status = internal_status()
    assert status.code == code_pb2.INTERNAL
    assert status.message == INTERNAL_MESSAGE
    assert not status.details
