"""Who is calling.

With authentication on (``auth_mode`` other than ``none``), the auth layer
(``layers.AuthLayer``) verifies the caller's bearer token and records the
principal it names for the call; the ``x-keel-user`` metadata is then ignored. With
authentication off, the identity is the one the client states in ``x-keel-user``:
trusted, not verified.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from services.common.rpc import Context

IDENTITY_HEADER = "x-keel-user"
ANONYMOUS = "anonymous"
MAX_IDENTITY = 256


@dataclass(frozen=True)
class Principal:
    """The caller of one RPC. ``authenticated``: proven by a token, so ``roles`` and
    ``team`` are to be enforced; otherwise only ``subject`` (as stated) is known."""

    subject: str
    roles: frozenset[str] = frozenset()
    team: str = ""
    authenticated: bool = False


# Set by the auth layer in the task that runs the call's handler (grpc.aio runs
# each call in a task of its own, so the value never reaches another call).
_CURRENT: ContextVar[Principal | None] = ContextVar("keel_principal", default=None)


def authenticate_as(principal: Principal) -> None:
    """Record ``principal`` as the caller of the call running in this task."""
    _CURRENT.set(principal)


def stated_identity(context: Context) -> str:
    """The identity stated in ``x-keel-user`` (at most 256 characters), else ``anonymous``."""
    found = ANONYMOUS
    for key, value in context.invocation_metadata() or ():
        if key == IDENTITY_HEADER and isinstance(value, str) and value:
            found = value[:MAX_IDENTITY]
    return found


def principal(context: Context) -> Principal:
    """The authenticated caller when auth is on, else the stated one."""
    current = _CURRENT.get()
    if current is not None:
        return current
    return Principal(stated_identity(context))


def identity(context: Context) -> str:
    """The caller's subject: the token's when auth is on, else ``x-keel-user``."""
    return principal(context).subject
