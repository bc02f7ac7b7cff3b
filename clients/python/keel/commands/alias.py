"""``keel alias set|history|rollback``: moving a model's aliases, and their history.

A protected alias moves only through the promotion gates: a refusal exits 4 with the
failing checks on stderr (``keel gates check`` shows the whole report without moving).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from keel.client import GateRefused
from keel.commands._common import (
    DEFAULT_INFERENCE,
    DEFAULT_MONITOR,
    DEFAULT_REGISTRY,
    EXIT_REFUSED,
    InferenceOption,
    JsonOption,
    MonitorOption,
    RegistryOption,
    Target,
    UserOption,
    emit,
    fail,
    session,
)
from keel.commands._registry import Registry, short_name
from keel.commands._render import enum_text, message_dict, messages, table, time_text
from keel.registry.v1 import alias_pb2, registry_pb2

app = typer.Typer(help="Aliases: movable pointers such as production.", no_args_is_help=True)

ModelArgument = Annotated[str, typer.Argument(help="Model name.")]
AliasArgument = Annotated[str, typer.Argument(help="Alias name, e.g. production.")]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (a ticket, an incident); kept in the history.")
]
ExpectedOption = Annotated[
    int | None,
    typer.Option(
        "--expected",
        min=0,
        help="Move only if the alias holds this version now (0: must not exist yet).",
    ),
]


def alias_line(alias: alias_pb2.Alias) -> str:
    moved = f" (was {alias.previous_version})" if alias.previous_version else ""
    return f"{alias.name} -> version {alias.version}{moved}"


@app.command("set")
def set_alias(
    name: ModelArgument,
    alias: AliasArgument,
    version: Annotated[int, typer.Argument(min=1, help="Version number.")],
    expected: ExpectedOption = None,
    reason: ReasonOption = "",
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Point ALIAS at VERSION (through the gates when the alias is protected)."""
    with session(Target(registry, inference, monitor, user)) as keel:
        try:
            reply = keel.registry.set_alias(
                name, alias, version, expected_version=expected, reason=reason
            )
        except GateRefused as refused:
            failed = "; ".join(c.message for c in refused.failed_checks) or refused.message
            fail(f"{refused.code.name}: the gates refused: {failed}", EXIT_REFUSED)

    def render(console: Console) -> None:
        console.print(alias_line(reply.alias))

    document = {"alias": message_dict(reply.alias), "gate_report": message_dict(reply.gate_report)}
    emit(as_json, document, render)


@app.command("history")
def alias_history(
    name: ModelArgument,
    alias: Annotated[
        str, typer.Option("--alias", help="Only this alias; all aliases by default.")
    ] = "",
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many; 0: all.")] = 0,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every move of a model's aliases, newest first."""
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)

        def fetch(token: str) -> tuple[list[alias_pb2.AliasMove], str]:
            request = registry_pb2.ListAliasHistoryRequest(
                parent=f"models/{name}", alias=alias, page_token=token
            )
            reply = reg.call(reg.stub.ListAliasHistory, request)
            return list(reply.moves), reply.next_page_token

        moves = list(reg.pages(fetch, limit))

    def render(console: Console) -> None:
        rows = [
            (
                time_text(m.move_time),
                short_name(m.alias),
                enum_text(alias_pb2.AliasMoveKind.DESCRIPTOR, m.kind).lower(),
                m.from_version or "",
                m.to_version or "",
                m.actor,
                m.reason,
            )
            for m in moves
        ]
        columns = ("TIME", "ALIAS", "MOVE", "FROM", "TO", "BY", "REASON")
        console.print(table(f"models/{name}", columns, rows))

    emit(as_json, {"model": f"models/{name}", "moves": messages(moves)}, render)


@app.command("rollback")
def rollback_alias(
    name: ModelArgument,
    alias: AliasArgument,
    expected: ExpectedOption = None,
    reason: ReasonOption = "",
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move ALIAS back to the version it held before its current one."""
    resource = f"models/{name}/aliases/{alias}"
    request = registry_pb2.RollbackAliasRequest(name=resource, reason=reason)
    if expected is not None:
        request.expected_version = expected
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)
        rolled = reg.call(reg.stub.RollbackAlias, request).alias

    def render(console: Console) -> None:
        console.print(f"Rolled back {alias_line(rolled)}")

    emit(as_json, {"alias": message_dict(rolled)}, render)
