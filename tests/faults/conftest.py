"""Fault figures: what each fault test put through the services and how it went (calls
made, failed, refused), printed at the end of the run."""

from __future__ import annotations

import pytest

FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> list[str]:
    """Lines for the run's "fault tests" section; a test appends its figures."""
    return request.config.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = terminalreporter.config.stash.get(FIGURES, [])
    if not found:
        return
    terminalreporter.section("fault tests")
    for line in found:
        terminalreporter.write_line(line)
