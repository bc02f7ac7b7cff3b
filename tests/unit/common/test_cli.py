"""The `keel` command: plugins from entry points, honest exits for what is not built."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from keel.cli import build_app
from services.common.cli import EXIT_NOTHING_TO_RUN, SERVICES, service_spec

runner = CliRunner()


def command_names(app: typer.Typer) -> set[str]:
    group = typer.main.get_group(app)
    return set(group.commands)


def test_the_suite_adds_up_and_a_group_per_service() -> None:
    assert {"up", "registry", "inference", "monitor", "version"} <= command_names(build_app())


def test_serve_of_a_service_not_built_names_its_issue() -> None:
    for name, issue in SERVICES.items():
        if service_spec(name) is not None:
            continue
        result = runner.invoke(build_app(), [name, "serve", "--port", "0"])
        assert result.exit_code == EXIT_NOTHING_TO_RUN
        assert f"the {name} service is not built yet (issue #{issue})" in result.output


def test_version_lists_both_distributions() -> None:
    result = runner.invoke(build_app(), ["version"])
    assert result.exit_code == 0
    assert "keel-client 0.1.0" in result.output
    assert "keel-suite 0.1.0" in result.output
