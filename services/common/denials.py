"""The answers to a caller that is not let in: the same words whatever the cause.

A denial tells the caller nothing that helps an attacker (not whether a token expired,
was unknown or badly signed, nor which roles or team would do). The cause goes to the
server's log with a request id; the caller gets the id (in ``google.rpc.ErrorInfo``
metadata ``request_id``) to quote to an operator.
"""

from __future__ import annotations

import logging
import uuid

from services.common.errors import PermissionDenied, Unauthenticated

UNAUTHENTICATED_MESSAGE = "missing or invalid credentials"
PERMISSION_DENIED_MESSAGE = "permission denied"
REQUEST_ID = "request_id"

log = logging.getLogger("keel.auth")


def _request_id() -> str:
    return uuid.uuid4().hex


def unauthenticated(method: str, cause: str) -> Unauthenticated:
    """UNAUTHENTICATED for a call to ``method``; ``cause`` is logged, never sent."""
    request_id = _request_id()
    log.warning("unauthenticated call to %s: %s (request id %s)", method, cause, request_id)
    return Unauthenticated(UNAUTHENTICATED_MESSAGE, metadata={REQUEST_ID: request_id})


def permission_denied(subject: str, action: str, cause: str) -> PermissionDenied:
    """PERMISSION_DENIED for ``subject`` doing ``action``; ``cause`` is logged, never sent."""
    request_id = _request_id()
    log.warning("%r may not %s: %s (request id %s)", subject, action, cause, request_id)
    return PermissionDenied(PERMISSION_DENIED_MESSAGE, metadata={REQUEST_ID: request_id})
