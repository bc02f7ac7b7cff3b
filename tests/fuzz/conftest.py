"""Fuzz figures: each service's tally, printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.fuzz.harness import EXAMPLES, SEED, Tally

TALLIES = pytest.StashKey[dict[str, Tally]]()


@pytest.fixture(scope="session")
def tallies(request: pytest.FixtureRequest) -> dict[str, Tally]:
    return request.config.stash.setdefault(TALLIES, {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = terminalreporter.config.stash.get(TALLIES, {})
    if not found:
        return
    terminalreporter.section(f"fuzz (KEEL_FUZZ_EXAMPLES={EXAMPLES}, KEEL_FUZZ_SEED={SEED})")
    for tally in found.values():
        terminalreporter.write_line(tally.line())
        if terminalreporter.config.option.verbose > 0:
            for line in tally.rpc_lines():
                terminalreporter.write_line(line)
