"""The flags of the monitor's reports (``keel drift``, ``keel perf``, ``keel fairness``):
which version, which time range, which deployment and variant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer

from keel.commands._render import parse_time

VersionOption = Annotated[
    str | None,
    typer.Option(
        "--version",
        help="Version number or alias; 'all' pools every version. Default: production's.",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Start: RFC 3339, or a span ago (90m, 24h, 7d). Default 24h."),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="End: RFC 3339, or a span ago. Default now.")
]
DeploymentOption = Annotated[
    str, typer.Option("--deployment", help="Only rows served by this deployment.")
]
VariantOption = Annotated[str, typer.Option("--variant", help="Only rows of this variant.")]


@dataclass(frozen=True)
class Scope:
    """A report's scope as the flags gave it."""

    version: str | None = None
    since: str | None = None
    until: str | None = None
    deployment: str = ""
    variant: str = ""

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``Keel.drift``/``performance``/``fairness``: version None
        is the one ``production`` points to; times parsed (ValueError when malformed)."""
        version: str | None = self.version
        if version is not None:
            version = version.strip().lower()
            if version == "all":
                version = "0"
            elif version.startswith("v") and version[1:].isdigit():
                version = version[1:]
        since: datetime | None = parse_time(self.since) if self.since else None
        until: datetime | None = parse_time(self.until) if self.until else None
        return {
            "version": version,
            "since": since,
            "until": until,
            "deployment": self.deployment,
            "variant": self.variant,
        }


def range_text(start: datetime | None, end: datetime | None) -> str:
    def text(when: datetime | None) -> str:
        return when.strftime("%Y-%m-%d %H:%M UTC") if when else "?"

    return f"{text(start)} to {text(end)}"


def version_text(version: int) -> str:
    return f"v{version}" if version else "all versions"
