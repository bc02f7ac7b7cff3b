"""``keel perf``: live performance of a model from predictions joined with feedback
labels, and its objectives checked against it. Scope flags as for ``keel drift``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from keel.client.reports import PerformanceResult
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


def render_performance(console: Console, result: PerformanceResult) -> None:
    console.print(
        f"models/{result.model} {version_text(result.version)}, "
        f"{range_text(result.start, result.end)}: {result.prediction_count} predictions, "
        f"{result.labeled_count} labelled ({result.label_coverage:.0%})"
    )
    rows = [
        (name, number_text(value), result.sample_counts.get(name, ""))
        for name, value in result.metrics.items()
    ]
    console.print(table("Metrics", ("METRIC", "VALUE", "LABELLED ROWS"), rows))
    if result.objectives:
        checks = [
            (str(o), number_text(o.actual), "yes" if o.passed else "[bold red]NO[/]")
            for o in result.objectives
        ]
        console.print(table("Objectives", ("OBJECTIVE", "ACTUAL", "MET"), checks))
    if result.confusion:
        header = ("ACTUAL \\ PREDICTED", *result.class_labels)
        cells = [
            (label, *counts)
            for label, counts in zip(result.class_labels, result.confusion, strict=True)
        ]
        console.print(table("Confusion", header, cells))


def perf(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    deployment: DeploymentOption = "",
    variant: VariantOption = "",
    per_class: Annotated[bool, typer.Option("--per-class", help="Metrics per class.")] = False,
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Live metrics of model NAME (accuracy, f1, roc_auc… or rmse, mae, r2) and objectives."""
    with session(Target(registry, inference, monitor, user)) as keel:
        arguments = Scope(version, since, until, deployment, variant).arguments()
        with working(f"Computing performance of {name}…"):
            result = keel.performance(name, per_class=per_class, **arguments)

    def render(console: Console) -> None:
        render_performance(console, result)

    emit(as_json, result.to_dict(), render)
