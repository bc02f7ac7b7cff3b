"""The client's closed table from status codes to exceptions, and rich details."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from keel.client import errors
from keel.client.errors import (
    STATUS_TABLE,
    Conflict,
    FailedPrecondition,
    GateRefused,
    Internal,
    KeelError,
    translate,
)
from keel.registry.v1 import gate_pb2
from tests.unit.client.fakes import FakeRpcError


def rich(code: grpc.StatusCode, message: str, *details: Any) -> FakeRpcError:
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return FakeRpcError(code, message, status)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.ABORTED, errors.Conflict),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (grpc.StatusCode.INTERNAL, errors.Internal),
        (grpc.StatusCode.UNKNOWN, errors.Unknown),
        (grpc.StatusCode.UNIMPLEMENTED, errors.Unimplemented),
        (grpc.StatusCode.DATA_LOSS, errors.DataLoss),
        (grpc.StatusCode.OUT_OF_RANGE, errors.OutOfRange),
        (grpc.StatusCode.CANCELLED, errors.Cancelled),
    ],
)
def test_every_code_maps_to_one_class(code: grpc.StatusCode, cls: type[KeelError]) -> None:
    error = translate(FakeRpcError(code, "model 'churn' not found"))
    assert type(error) is cls
    assert isinstance(error, KeelError)
    assert error.code == code  # the real code is kept, even for Internal
    assert error.message == "model 'churn' not found"
    assert error.status is None
    assert error.details == ()


def test_the_table_is_closed_and_each_class_defaults_to_its_code() -> None:
    assert set(STATUS_TABLE) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    assert len(set(STATUS_TABLE.values())) == len(STATUS_TABLE)  # one class per code
    for code, cls in STATUS_TABLE.items():
        assert cls("x").code == code
    assert Internal("x").code == grpc.StatusCode.INTERNAL


def test_rich_details_are_parsed() -> None:
    info = error_details_pb2.ErrorInfo(reason="MODEL_NOT_FOUND", domain="keel.dev")
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="model_id", description="too long")
        ]
    )
    error = translate(rich(grpc.StatusCode.INVALID_ARGUMENT, "bad model_id", info, bad))
    assert isinstance(error, errors.InvalidArgument)
    assert error.status is not None and error.status.code == code_pb2.INVALID_ARGUMENT
    assert len(error.details) == 2
    assert error.reason == "MODEL_NOT_FOUND"
    assert error.field_violations == {"model_id": "too long"}
    assert str(error) == "INVALID_ARGUMENT: bad model_id"


def test_a_gate_refusal_carries_its_report() -> None:
    report = gate_pb2.GateReport(
        alias="models/churn/aliases/production",
        target_version=3,
        protected=True,
        allowed=False,
        checks=[
            gate_pb2.GateCheck(
                kind=gate_pb2.GATE_CHECK_KIND_VERSION_READY,
                outcome=gate_pb2.GATE_CHECK_OUTCOME_PASSED,
            ),
            gate_pb2.GateCheck(
                kind=gate_pb2.GATE_CHECK_KIND_OBJECTIVE,
                outcome=gate_pb2.GATE_CHECK_OUTCOME_FAILED,
                message="f1 0.78 < 0.80 on holdout",
            ),
        ],
    )
    info = error_details_pb2.ErrorInfo(reason="GATE_REFUSED")
    error = translate(rich(grpc.StatusCode.FAILED_PRECONDITION, "gates refused", info, report))
    assert isinstance(error, GateRefused)
    assert isinstance(error, FailedPrecondition)
    assert error.report == report
    assert [c.message for c in error.failed_checks] == ["f1 0.78 < 0.80 on holdout"]


def test_failed_precondition_without_a_report_is_not_a_gate_refusal() -> None:
    error = translate(FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "model archived"))
    assert type(error) is FailedPrecondition


def test_a_report_on_another_code_does_not_make_a_gate_refusal() -> None:
    error = translate(rich(grpc.StatusCode.ABORTED, "moved", gate_pb2.GateReport()))
    assert type(error) is Conflict


def test_details_inconsistent_with_the_call_are_ignored() -> None:
    status = status_pb2.Status(code=code_pb2.NOT_FOUND, message="other")
    error = translate(FakeRpcError(grpc.StatusCode.INTERNAL, "boom", status))
    assert type(error) is Internal
    assert error.status is None
    assert error.message == "boom"


def test_an_error_that_is_not_a_call_is_unknown_a_server_fault() -> None:
    error = translate(grpc.RpcError())
    assert type(error) is errors.Unknown and isinstance(error, Internal)
    assert error.code == grpc.StatusCode.UNKNOWN
