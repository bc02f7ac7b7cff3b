"""``keel gates check``: what the promotion gates would decide, without moving anything.

Exits 0 when the move would be allowed and 1 when a gate would refuse it, so a CI job can
run it before ``keel alias set``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from keel.commands._common import (
    DEFAULT_INFERENCE,
    DEFAULT_MONITOR,
    DEFAULT_REGISTRY,
    EXIT_CHECK_FAILED,
    InferenceOption,
    JsonOption,
    MonitorOption,
    RegistryOption,
    Target,
    UserOption,
    emit,
    session,
)
from keel.commands._registry import Registry
from keel.commands._render import enum_text, message_dict, table
from keel.registry.v1 import gate_pb2, registry_pb2

app = typer.Typer(help="Promotion gates.", no_args_is_help=True)


def render_report(console: Console, report: gate_pb2.GateReport) -> None:
    rows = [
        (
            enum_text(gate_pb2.GateCheckKind.DESCRIPTOR, c.kind).lower(),
            enum_text(gate_pb2.GateCheckOutcome.DESCRIPTOR, c.outcome),
            c.message,
        )
        for c in report.checks
    ]
    champion = f", champion v{report.current_version}" if report.current_version else ""
    title = f"{report.alias} <- v{report.target_version}{champion}"
    console.print(table(title, ("CHECK", "OUTCOME", "FINDING"), rows))
    verdict = "allowed" if report.allowed else "refused"
    protection = "protected" if report.protected else "not protected"
    console.print(f"Move {verdict} ({protection} alias).")


@app.command("check")
def check(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version that would take the alias (or alias).")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to move.")] = "production",
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate the gates for moving ALIAS to VERSION; exit 1 if they would refuse."""
    with session(Target(registry, inference, monitor, user)) as keel:
        reg = Registry(keel)
        request = registry_pb2.CheckPromotionRequest(
            alias=f"models/{name}/aliases/{alias}", version=reg.version_number(name, version)
        )
        report = reg.call(reg.stub.CheckPromotion, request).gate_report

    def render(console: Console) -> None:
        render_report(console, report)

    emit(as_json, {"allowed": report.allowed, "gate_report": message_dict(report)}, render)
    if not report.allowed:
        raise typer.Exit(EXIT_CHECK_FAILED)
