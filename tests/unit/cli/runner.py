"""Running ``keel`` in-process through typer's runner, off the event loop.

The client is synchronous gRPC and the servers under test are ``grpc.aio`` servers on the
test's event loop, so the command runs in a worker thread (``asyncio.to_thread``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from typer.testing import CliRunner, Result

from keel.cli import build_app

APP = build_app()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(APP, list(args), env=env)


async def keel(*args: str, env: dict[str, str] | None = None) -> Result:
    """``keel ARGS`` run in a thread; the result has exit_code, stdout and stderr."""
    return await asyncio.to_thread(invoke, *args, env=env)


async def keel_json(*args: str, expect: int = 0) -> Any:
    """``keel ARGS --json``: the one JSON document on stdout, after checking the exit code."""
    result = await keel(*args, "--json")
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)
