"""What every client command shares: the address options, the closed table of exit codes,
one session per command that turns a failed call into one line on stderr, and output
(one JSON document, or rich tables on stdout and progress on stderr)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, NoReturn

import grpc
import typer
from rich.console import Console

from keel.client import Keel, KeelError, translate
from keel.client.keel import DEFAULT_INFERENCE, DEFAULT_MONITOR, DEFAULT_REGISTRY

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_UNAVAILABLE = 5
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

# The exit code of a failed call, by status; any status not listed is EXIT_UNAVAILABLE.
STATUS_EXIT: Mapping[grpc.StatusCode, int] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
        grpc.StatusCode.OUT_OF_RANGE: EXIT_USAGE,
        grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION: EXIT_REFUSED,
        grpc.StatusCode.ALREADY_EXISTS: EXIT_REFUSED,
        grpc.StatusCode.ABORTED: EXIT_REFUSED,
        grpc.StatusCode.PERMISSION_DENIED: EXIT_REFUSED,
        grpc.StatusCode.UNAUTHENTICATED: EXIT_REFUSED,
        grpc.StatusCode.RESOURCE_EXHAUSTED: EXIT_REFUSED,
    }
)


def exit_code_for(code: grpc.StatusCode) -> int:
    """The exit code of a call that failed with ``code``."""
    return STATUS_EXIT.get(code, EXIT_UNAVAILABLE)


RegistryOption = Annotated[
    str,
    typer.Option(
        "--registry", envvar="KEEL_REGISTRY", help="Registry address, host:port.", metavar="ADDR"
    ),
]
InferenceOption = Annotated[
    str,
    typer.Option(
        "--inference", envvar="KEEL_INFERENCE", help="Inference address, host:port.", metavar="ADDR"
    ),
]
MonitorOption = Annotated[
    str,
    typer.Option(
        "--monitor", envvar="KEEL_MONITOR", help="Monitor address, host:port.", metavar="ADDR"
    ),
]
UserOption = Annotated[
    str | None,
    typer.Option("--user", envvar="KEEL_USER", help="Who the services record as the caller."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")
]

__all__ = [
    "DEFAULT_INFERENCE",
    "DEFAULT_MONITOR",
    "DEFAULT_REGISTRY",
    "InferenceOption",
    "JsonOption",
    "MonitorOption",
    "RegistryOption",
    "UserOption",
]


@dataclass(frozen=True)
class Target:
    """Where a command sends its calls, and who it calls as."""

    registry: str = DEFAULT_REGISTRY
    inference: str = DEFAULT_INFERENCE
    monitor: str = DEFAULT_MONITOR
    user: str | None = None


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    typer.echo(f"keel: {message}", err=True)
    raise typer.Exit(code)


def usage_error(message: str) -> NoReturn:
    fail(message, EXIT_USAGE)


def call_failed(error: KeelError) -> NoReturn:
    """A failed call: its status and the server's message on one line of stderr."""
    message = " ".join(error.message.split()) or "no message"
    fail(f"{error.code.name}: {message}", exit_code_for(error.code))


@contextmanager
def session(target: Target) -> Iterator[Keel]:
    """A client of ``target`` for one command; a failed call ends the command with one
    line on stderr and the exit code of its status."""
    try:
        keel = Keel(target.registry, target.inference, target.monitor, user=target.user)
    except ValueError as error:
        usage_error(str(error))
    try:
        with keel:
            yield keel
    except KeelError as error:
        call_failed(error)
    except grpc.RpcError as error:
        call_failed(translate(error))
    except ValueError as error:  # the client's checks of arguments, before any call
        usage_error(str(error))
    except ImportError as error:  # an optional library a call needs (numpy, pandas)
        usage_error(str(error))
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)


# Output ------------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, so that the JSON is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def emit_json(document: Any) -> None:
    """``document`` as the one JSON document of stdout."""
    sys.stdout.write(json.dumps(_finite(document), indent=2, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


def stdout_console() -> Console:
    """A console on the current stdout (CliRunner swaps it), wide enough for tables when
    stdout is not a terminal."""
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)


def stderr_console() -> Console:
    return Console(file=sys.stderr, stderr=True)


def emit(as_json: bool, document: Any, render: Callable[[Console], None]) -> None:
    """The command's result: ``document`` as JSON, or ``render`` on a console."""
    if as_json:
        emit_json(document)
    else:
        render(stdout_console())


def working(message: str) -> Any:
    """A spinner on stderr while a long call runs, when stderr is a terminal."""
    if not sys.stderr.isatty():
        return nullcontext()
    return stderr_console().status(message)
