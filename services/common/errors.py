"""One exception hierarchy for every Keel service, and one table from it to gRPC codes.

Domain code raises these; the error layer (``layers.ErrorLayer``) turns them into a
status code, the message, and ``google.rpc`` details. Anything not in the table becomes
INTERNAL with a generic message: no stack trace or SQL ever reaches a caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "keel.dev"
INTERNAL_MESSAGE = "internal error; the server logged the details"
# Status messages often quote what the caller sent. A status travels in the trailers,
# which a gRPC client refuses past 8 KiB (RESOURCE_EXHAUSTED instead of the real code),
# and the message is in them twice: these keep the whole well under that.
MAX_MESSAGE_BYTES = 512
MAX_DETAIL_BYTES = 256
MAX_VIOLATIONS = 5


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: where it is and what was expected."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error a Keel service reports to its caller on purpose.

    ``message`` is sent to the caller as is, so it must name the thing and the
    expectation (``input 'age': expected FP32 [N, 1], got BYTES [3]``). ``reason`` is a
    stable UPPER_SNAKE identifier sent as ``google.rpc.ErrorInfo`` for programs.
    """

    reason = "DOMAIN_ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.violations = tuple(violations)
        self.metadata = dict(metadata or {})
        # Extra protobuf messages for google.rpc.Status details (e.g. a gate report),
        # attached by a service's protobuf layer, never by domain code.
        self.details: tuple[Message, ...] = ()


class InvalidArgument(DomainError):
    """The request itself is wrong, whatever the state of the system."""

    reason = "INVALID_ARGUMENT"


class NotFound(DomainError):
    """A named resource does not exist."""

    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    """A resource with that name already exists."""

    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The system is not in a state where the request can be carried out."""

    reason = "FAILED_PRECONDITION"


class Conflict(DomainError):
    """A compare-and-set lost a race (the caller may re-read and retry)."""

    reason = "ABORTED"


class PermissionDenied(DomainError):
    """The caller is known but not allowed to do this."""

    reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """The caller did not prove who it is."""

    reason = "UNAUTHENTICATED"


class ResourceExhausted(DomainError):
    """A limit was reached (size, rate, quota)."""

    reason = "RESOURCE_EXHAUSTED"


class Unavailable(DomainError):
    """A dependency is down for now; retrying later may succeed."""

    reason = "UNAVAILABLE"


class OutOfRange(DomainError):
    """A position or range outside what exists (an offset past the end)."""

    reason = "OUT_OF_RANGE"


class DataLoss(DomainError):
    """Stored data no longer matches what was written (a corrupted artifact)."""

    reason = "DATA_LOSS"


class Unimplemented(DomainError):
    """The contract has the method, but this server does not offer it."""

    reason = "UNIMPLEMENTED"


StatusTable = Mapping[type[DomainError], grpc.StatusCode]

STATUS_TABLE: StatusTable = MappingProxyType(
    {
        InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
        NotFound: grpc.StatusCode.NOT_FOUND,
        AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
        FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
        Conflict: grpc.StatusCode.ABORTED,
        PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
        Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
        ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
        Unavailable: grpc.StatusCode.UNAVAILABLE,
        Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
        OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
        DataLoss: grpc.StatusCode.DATA_LOSS,
    }
)


def status_code_for(error: DomainError, table: StatusTable = STATUS_TABLE) -> grpc.StatusCode:
    """The code of the nearest class of ``error`` in ``table`` (subclasses inherit)."""
    for cls in type(error).__mro__:
        if issubclass(cls, DomainError) and cls in table:
            return table[cls]
    return grpc.StatusCode.INTERNAL


def _packed(message: Message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def clip(text: str, limit: int = MAX_DETAIL_BYTES) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, ending in "…" when cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


def rich_status(error: DomainError, table: StatusTable = STATUS_TABLE) -> status_pb2.Status:
    """``google.rpc.Status`` for ``error``: code, message, ErrorInfo and BadRequest, the
    text clipped so that the status fits a client's trailer limit."""
    code = status_code_for(error, table)
    metadata = {clip(k): clip(v) for k, v in error.metadata.items()}
    details = [
        _packed(
            error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
        )
    ]
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=clip(v.field), description=clip(v.description)
                )
                for v in error.violations[:MAX_VIOLATIONS]
            ]
        )
        details.append(_packed(bad_request))
    details.extend(_packed(extra) for extra in error.details)
    message = clip(error.message, MAX_MESSAGE_BYTES)
    return status_pb2.Status(code=code.value[0], message=message, details=details)


def internal_status() -> status_pb2.Status:
    """The generic answer to an error nobody planned for."""
    return status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE)
