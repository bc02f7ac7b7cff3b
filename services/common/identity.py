"""Who is calling. Until bearer tokens arrive (issue #8) the identity is the one the
client states in the ``x-keel-user`` metadata."""

from __future__ import annotations

from services.common.rpc import Context

IDENTITY_HEADER = "x-keel-user"
ANONYMOUS = "anonymous"


def identity(context: Context) -> str:
    """The caller's stated identity (at most 256 characters), else ``anonymous``."""
    found = ANONYMOUS
    for key, value in context.invocation_metadata() or ():
        if key == IDENTITY_HEADER and isinstance(value, str) and value:
            found = value[:256]
    return found
