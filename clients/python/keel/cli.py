"""The ``keel`` command.

Its subcommands come from the ``keel.commands`` entry-point group, the way pytest and
Flask take plugins: this distribution (``keel-client``) registers the client's commands,
and the service suite, when installed, adds ``keel up`` and ``keel <service> serve``. An
entry point may name a ``typer.Typer`` (added as a command group) or a function (added as
one command).
"""

from __future__ import annotations

import sys
from importlib import metadata

import typer

ENTRY_POINT_GROUP = "keel.commands"


def _group() -> None:
    """Keel: deploy XGBoost and scikit-learn models and watch them in production."""


def version() -> None:
    """Print the installed versions of keel-client and, when present, keel-suite."""
    for distribution in ("keel-client", "keel-suite"):
        try:
            print(f"{distribution} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            continue


def build_app() -> typer.Typer:
    """The ``keel`` application with every installed command group."""
    app = typer.Typer(
        name="keel",
        help="Keel: deploy XGBoost and scikit-learn models and watch them in production.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )
    app.callback()(_group)
    app.command("version")(version)
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            command = entry.load()
        except Exception as error:  # noqa: BLE001 - a broken plugin must not break `keel`
            print(
                f"keel: skipping command {entry.name!r} ({entry.value}): {error}", file=sys.stderr
            )
            continue
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=entry.name)
        else:
            app.command(entry.name)(command)
    return app


def main() -> None:
    """Console-script entry point."""
    build_app()(prog_name="keel")
