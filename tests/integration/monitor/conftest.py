"""Monitor integration tests: a real registry and a real monitor in-process, on SQLite
and, with KEEL_TEST_DATABASE_URL, on PostgreSQL (fresh databases per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.monitor import Monitor, running_monitor
from tests.support.postgres import SKIP_REASON, admin_url, fresh_database
from tests.support.registry import running_registry


@pytest.fixture(params=["sqlite", "postgres"])
def database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}", f"sqlite:///{tmp_path / 'monitor.db'}"
        return
    url = admin_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    with fresh_database(url) as registry_db, fresh_database(url) as monitor_db:
        yield registry_db, monitor_db


@pytest.fixture
async def registry_address(database_urls: tuple[str, str], tmp_path: Path) -> AsyncIterator[str]:
    async with running_registry(database_urls[0], tmp_path / "registry") as (_client, port):
        yield f"127.0.0.1:{port}"


@pytest.fixture
async def monitor(
    registry_address: str, database_urls: tuple[str, str], tmp_path: Path
) -> AsyncIterator[Monitor]:
    async with running_monitor(registry_address, database_urls[1], tmp_path / "monitor") as found:
        yield found
