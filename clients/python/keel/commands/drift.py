"""``keel drift``: how far live inputs have moved from a version's reference profile.

Reports on the version ``production`` points to (without one: the newest version with
traffic) over the 24 hours before now, unless ``--version``, ``--since`` or ``--until``
say otherwise. Exits 0 whatever it finds; with ``--fail-on-drift`` it exits 1 when the
monitor declares dataset drift, for CI pipelines. In ``--json`` each entry of
``features`` has ``feature``, ``drift`` (true/false), ``method``, ``statistic`` and
``threshold``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from keel.client.reports import DriftResult, FeatureDrift
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
    working,
)
from keel.commands._render import number_text, table
from keel.commands._scope import (
    DeploymentOption,
    Scope,
    SinceOption,
    UntilOption,
    VariantOption,
    VersionOption,
    range_text,
    version_text,
)


def verdict(item: FeatureDrift) -> str:
    if item.insufficient_data:
        return "too few rows"
    return "[bold red]DRIFT[/]" if item.drift else "no"


def render_drift(console: Console, result: DriftResult) -> None:
    console.print(
        f"models/{result.model} {version_text(result.version)}, "
        f"{range_text(result.start, result.end)}: {result.row_count} rows"
    )
    columns = [*result.features]
    columns += [c for c in (result.prediction, result.label) if c is not None]
    rows = [
        (
            item.feature if item.target == "feature" else f"({item.feature})",
            item.method,
            number_text(item.statistic),
            number_text(item.threshold),
            verdict(item),
            item.current_count,
        )
        for item in columns
    ]
    columns_names = ("FEATURE", "METHOD", "STATISTIC", "THRESHOLD", "DRIFT", "ROWS")
    console.print(table(None, columns_names, rows))
    share = f"{result.drifted_share:.0%} of features drifted"
    threshold = f"threshold {result.drift_share_threshold:.0%}"
    if result.dataset_drift:
        console.print(f"[bold red]Dataset drift[/]: {share} ({threshold}).")
    else:
        console.print(f"No dataset drift: {share} ({threshold}).")


def drift(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    deployment: DeploymentOption = "",
    variant: VariantOption = "",
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when there is dataset drift.")
    ] = False,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Drift of each feature of model NAME against its reference (exit 0 whatever it finds)."""
    with session(Target(registry, inference, monitor, user)) as keel:
        arguments = Scope(version, since, until, deployment, variant).arguments()
        with working(f"Computing drift of {name}…"):
            result = keel.drift(name, **arguments)

    def render(console: Console) -> None:
        render_drift(console, result)

    emit(as_json, result.to_dict(), render)
    if fail_on_drift and result.dataset_drift:
        raise typer.Exit(EXIT_CHECK_FAILED)
