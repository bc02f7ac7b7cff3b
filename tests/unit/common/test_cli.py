"""The `keel` command: plugins from entry points, honest exits for what is not built."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from keel.cli import build_app
from services.common.cli import EXIT_BAD_SETTINGS, EXIT_NOTHING_TO_RUN, SERVICES, service_spec

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


def test_a_bad_setting_is_named_as_its_variable_without_a_traceback() -> None:
    cases = {
        ("monitor", "KEEL_MONITOR_JOIN_WINDOW_S", "5"): (
            "keel monitor serve: KEEL_MONITOR_JOIN_WINDOW_S: expected 0 (keep no logged "
            "predictions) or at least 60 seconds, got 5"
        ),
        ("registry", "KEEL_REGISTRY_PORT", "70000"): (
            "keel registry serve: KEEL_REGISTRY_PORT: Input should be less than or equal to "
            "65535, got '70000'"
        ),
    }
    for (name, variable, value), said in cases.items():
        result = runner.invoke(build_app(), [name, "serve"], env={variable: value})
        assert result.exit_code == EXIT_BAD_SETTINGS, result.output
        assert said in result.output
        assert "Traceback" not in result.output


def test_a_rule_across_settings_says_which_variables() -> None:
    env = {"KEEL_MONITOR_JOIN_WINDOW_S": "0", "KEEL_MONITOR_NATS_URL": "nats://127.0.0.1:4222"}
    result = runner.invoke(build_app(), ["monitor", "serve"], env=env)
    assert result.exit_code == EXIT_BAD_SETTINGS, result.output
    assert (
        "KEEL_MONITOR_JOIN_WINDOW_S (join_window_s): a monitor reading JetStream" in result.output
    )
    assert "Traceback" not in result.output
