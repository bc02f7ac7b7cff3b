"""Typed exceptions for every failed call, from one closed table of gRPC status codes.

A failed call raises the class its status code maps to in ``STATUS_TABLE``: every
code other than OK has exactly one class (a code gRPC may add later is ``Unknown``).
Every exception carries the code, the server's message and the parsed
``google.rpc.Status`` (with its packed details), so programs can read ``ErrorInfo``,
``BadRequest`` or a ``GateReport`` without parsing text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from keel.registry.v1 import gate_pb2


class KeelError(Exception):
    """Base of every error the client raises about a Keel call."""

    default_code = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code: grpc.StatusCode = code if code is not None else self.default_code
        self.status = status

    @property
    def details(self) -> Sequence[any_pb2.Any]:
        """The packed ``google.rpc.Status`` details the server attached (may be empty)."""
        return tuple(self.status.details) if self.status is not None else ()

    @property
    def reason(self) -> str:
        """``google.rpc.ErrorInfo.reason`` when the server sent one, else ``""``."""
        info = _unpack(self.details, error_details_pb2.ErrorInfo)
        return info.reason if info is not None else ""

    @property
    def field_violations(self) -> dict[str, str]:
        """``{field: description}`` from a ``google.rpc.BadRequest`` detail, if any."""
        bad = _unpack(self.details, error_details_pb2.BadRequest)
        if bad is None:
            return {}
        return {v.field: v.description for v in bad.field_violations}

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(KeelError):
    """The request itself is wrong (INVALID_ARGUMENT)."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(KeelError):
    """A named resource does not exist (NOT_FOUND)."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(KeelError):
    """A resource with that name already exists (ALREADY_EXISTS)."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(KeelError):
    """The system is not in a state where the call can be carried out (FAILED_PRECONDITION)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class GateRefused(FailedPrecondition):
    """A promotion gate refused to move a protected alias; ``report`` says which check failed."""

    def __init__(
        self,
        message: str,
        *,
        report: gate_pb2.GateReport,
        code: grpc.StatusCode | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.report = report

    @property
    def failed_checks(self) -> list[gate_pb2.GateCheck]:
        """The checks of the report whose outcome is FAILED."""
        return [c for c in self.report.checks if c.outcome == gate_pb2.GATE_CHECK_OUTCOME_FAILED]


class Conflict(KeelError):
    """A compare-and-set lost a race or an etag was stale (ABORTED); re-read and retry."""

    default_code = grpc.StatusCode.ABORTED


class PermissionDenied(KeelError):
    """The caller is known but not allowed to do this (PERMISSION_DENIED)."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(KeelError):
    """The caller's credentials are missing or invalid (UNAUTHENTICATED)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(KeelError):
    """A limit was reached: size, rate or quota (RESOURCE_EXHAUSTED)."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(KeelError):
    """The service could not be reached, even after the channel's retries (UNAVAILABLE)."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(KeelError):
    """The call (or a wait the client made) ran out of time (DEADLINE_EXCEEDED)."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(KeelError):
    """The server failed (INTERNAL); nothing the caller did wrong."""

    default_code = grpc.StatusCode.INTERNAL


class Unknown(Internal):
    """The call failed without a known status (UNKNOWN): a server fault, or an error
    raised outside gRPC's status model."""

    default_code = grpc.StatusCode.UNKNOWN


class DataLoss(Internal):
    """Data was lost or corrupted (DATA_LOSS), e.g. an artifact whose bytes do not
    match their digest."""

    default_code = grpc.StatusCode.DATA_LOSS


class Cancelled(KeelError):
    """The call was cancelled, usually by the caller (CANCELLED)."""

    default_code = grpc.StatusCode.CANCELLED


class OutOfRange(KeelError):
    """A position or range is past what exists (OUT_OF_RANGE), e.g. a resume point
    older than the retained history."""

    default_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(KeelError):
    """The service does not offer this (UNIMPLEMENTED), e.g. no explainer for the model."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


class RegistrationFailed(KeelError):
    """A registered version ended FAILED: the server could not verify its artifact."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, *, name: str, version: int) -> None:
        super().__init__(message)
        self.name = name
        self.version = version


class ArtifactRefused(KeelError):
    """``load_model`` would not load an artifact: its bytes are not the registered
    digest, or its format or types are not on the safe list. Nothing was unpickled."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


STATUS_TABLE: Mapping[grpc.StatusCode, type[KeelError]] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
        grpc.StatusCode.NOT_FOUND: NotFound,
        grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
        grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
        grpc.StatusCode.ABORTED: Conflict,
        grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
        grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
        grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
        grpc.StatusCode.UNAVAILABLE: Unavailable,
        grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
        grpc.StatusCode.CANCELLED: Cancelled,
        grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
        grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
        grpc.StatusCode.INTERNAL: Internal,
        grpc.StatusCode.UNKNOWN: Unknown,
        grpc.StatusCode.DATA_LOSS: DataLoss,
    }
)


def translate(error: grpc.RpcError) -> KeelError:
    """The typed exception for a failed call (sync ``grpc.Call`` errors and aio errors)."""
    code, message = _code_and_message(error)
    status = _rich_status(error)
    if status is not None and not message:
        message = status.message
    cls = STATUS_TABLE.get(code, Unknown)
    if cls is FailedPrecondition and status is not None:
        report = _unpack(status.details, gate_pb2.GateReport)
        if report is not None:
            return GateRefused(message, report=report, code=code, status=status)
    return cls(message, code=code, status=status)


def _code_and_message(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    call: Any = error
    code_of = getattr(call, "code", None)
    details_of = getattr(call, "details", None)
    code = code_of() if callable(code_of) else None
    message = details_of() if callable(details_of) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return code, message if isinstance(message, str) else ""


def _rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` in the trailing metadata, if the server attached one."""
    if not callable(getattr(error, "trailing_metadata", None)):
        return None
    try:
        status: Any = rpc_status.from_call(cast(grpc.Call, error))
    except (ValueError, TypeError):
        return None  # code or message inconsistent with the details: ignore the details
    return status if isinstance(status, status_pb2.Status) else None


_M = TypeVar("_M", error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, gate_pb2.GateReport)


def _unpack(details: Sequence[any_pb2.Any], kind: type[_M]) -> _M | None:
    for detail in details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            return message
    return None


_T = TypeVar("_T")


def invoke(method: Callable[..., _T], request: Any, **kwargs: Any) -> _T:
    """``method(request, **kwargs)`` (a stub's unary method), raising the typed
    exception of ``translate`` when the call fails."""
    try:
        return method(request, **kwargs)
    except grpc.RpcError as error:
        raise translate(error) from None
