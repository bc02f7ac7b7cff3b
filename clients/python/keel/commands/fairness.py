"""``keel fairness``: selection rate, true- and false-positive rates per group of each
protected feature, and the disparities between groups. Scope flags as for ``keel drift``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from keel.client.fairness import FairnessResult
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


def render_fairness(console: Console, result: FairnessResult) -> None:
    console.print(
        f"models/{result.model} {version_text(result.version)}, "
        f"{range_text(result.start, result.end)}: {result.row_count} predictions, "
        f"{result.labeled_count} labelled; positive class {result.positive_class!r}"
    )
    columns = ("GROUP", "ROWS", "SELECTION RATE", "RATIO", "TPR", "FPR", "FLAG")
    for feature in result.features:
        rows = [
            (
                g.group,
                g.row_count,
                number_text(g.selection_rate, 3),
                number_text(g.selection_rate_ratio, 3),
                number_text(g.true_positive_rate, 3),
                number_text(g.false_positive_rate, 3),
                "too small"
                if g.excluded
                else "[bold red]adverse impact[/]"
                if g.adverse_impact
                else "",
            )
            for g in feature.groups
        ]
        console.print(table(feature.feature, columns, rows))
        console.print(
            f"  demographic parity difference {number_text(feature.demographic_parity_difference)}"
            f", ratio {number_text(feature.demographic_parity_ratio)}"
            f", equalized odds difference {number_text(feature.equalized_odds_difference)}"
            f"; four-fifths rule {'passed' if feature.four_fifths_passed else 'FAILED'}"
        )
    if not result.features:
        console.print("No protected feature has predictions in this range.")
    for objective in result.objectives:
        met = "met" if objective.passed else "[bold red]NOT met[/]"
        console.print(f"objective {objective}: {number_text(objective.actual)} ({met})")


def fairness(
    name: Annotated[str, typer.Argument(help="Model name.")],
    feature: Annotated[
        str | None, typer.Option("--feature", help="Only this protected feature.")
    ] = None,
    positive_class: Annotated[
        str, typer.Option("--positive-class", help="Class counted as selected.")
    ] = "",
    version: VersionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    deployment: DeploymentOption = "",
    variant: VariantOption = "",
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rates per group of each protected feature of model NAME, and their disparities."""
    with session(Target(registry, inference, monitor, user)) as keel:
        arguments = Scope(version, since, until, deployment, variant).arguments()
        with working(f"Computing fairness of {name}…"):
            result = keel.fairness(
                name, feature=feature, positive_class=positive_class, **arguments
            )

    def render(console: Console) -> None:
        render_fairness(console, result)

    emit(as_json, result.to_dict(), render)
