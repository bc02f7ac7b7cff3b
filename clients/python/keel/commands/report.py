"""``keel report NAME``: one self-contained HTML file on a model version — its
distributions against the reference with the drift verdicts, performance over time,
fairness by group and variant comparison (see docs/report.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keel.commands._common import (
    DEFAULT_INFERENCE,
    DEFAULT_MONITOR,
    DEFAULT_REGISTRY,
    InferenceOption,
    JsonOption,
    MonitorOption,
    RegistryOption,
    UserOption,
    call_failed,
    emit,
    usage_error,
)
from keel.commands._render import parse_time


def report(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. churn.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write it; default keel-report-NAME.html here."),
    ] = None,
    version: Annotated[
        int,
        typer.Option(
            "--version", min=0, help="Version to report on; default production's, else latest."
        ),
    ] = 0,
    since: Annotated[
        str, typer.Option("--since", help="From: RFC 3339 or a span ago (24h); default 24h.")
    ] = "",
    until: Annotated[str, typer.Option("--until", help="Until: RFC 3339; default now.")] = "",
    registry: RegistryOption = DEFAULT_REGISTRY,
    inference: InferenceOption = DEFAULT_INFERENCE,
    monitor: MonitorOption = DEFAULT_MONITOR,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write an HTML report on NAME that opens without network: reference vs current
    distributions with drift, performance over time, fairness, variant comparison."""
    from keel.client import KeelError
    from keel.report import collect, render

    del inference  # accepted like every client command; the report does not predict
    try:
        start = parse_time(since) if since else None
        end = parse_time(until) if until else None
        found = collect(
            name,
            registry=registry,
            monitor=monitor,
            version=version,
            since=start,
            until=end,
            user=user,
        )
    except KeelError as error:
        call_failed(error)
    except ValueError as error:  # a bad address or time, before any call
        usage_error(str(error))
    path = out or Path(f"keel-report-{name}.html")
    try:
        path.write_text(render(found), encoding="utf-8")
    except OSError as error:
        usage_error(f"--out {path}: {error.strerror or error}")
    document = {
        "path": str(path),
        "model": name,
        "version": found.header.version,
        "start": found.start.isoformat(),
        "end": found.end.isoformat(),
        "predictions": found.drift.row_count,
        "dataset_drift": found.drift.dataset_drifted,
        "drifted_features": [
            c.name for c in found.drift.columns if c.target == "feature" and c.verdict == "drift"
        ],
    }
    emit(as_json, document, lambda console: console.print(f"wrote {path}", highlight=False))
