"""``keel alerts``: the monitor's alerts, newest first (all models, or one)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from keel.commands._common import (
    DEFAULT_INFERENCE,
    DEFAULT_MONITOR,
    DEFAULT_REGISTRY,
    InferenceOption,
    JsonOption,
    MonitorOption,
    RegistryOption,
    Target,
    UserOption,
    emit,
    session,
)
from keel.commands._render import number_text, table


def alerts(
    name: Annotated[str | None, typer.Argument(help="Only this model's alerts.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="firing or resolved; both by default.")
    ] = None,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Alerts the monitor's rules raised, newest first."""
    with session(Target(registry, inference, monitor, user)) as keel:
        found = keel.alerts(name, state=state)

    def render(console: Console) -> None:
        rows = [
            (
                a.fire_time.strftime("%Y-%m-%d %H:%M:%S") if a.fire_time else "",
                "[bold red]firing[/]" if a.state == "firing" else a.state,
                a.severity,
                f"{a.model} v{a.version}" if a.version else a.model,
                a.rule.rsplit("/", 1)[-1],
                a.condition,
                number_text(a.value),
                a.message,
            )
            for a in found
        ]
        columns = ("FIRED (UTC)", "STATE", "SEVERITY", "MODEL", "RULE", "CONDITION", "VALUE")
        console.print(table(None, (*columns, "MESSAGE"), rows))

    emit(as_json, {"alerts": found.to_dict()}, render)
