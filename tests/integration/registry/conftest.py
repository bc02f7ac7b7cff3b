"""Every registry integration test runs on SQLite and, with KEEL_TEST_DATABASE_URL, on
PostgreSQL (a fresh database per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.postgres import SKIP_REASON, admin_url, fresh_database
from tests.support.registry import Client, running_registry


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    url = admin_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    with fresh_database(url) as database:
        yield database


@pytest.fixture
async def registry(database_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    async with running_registry(database_url, tmp_path / "data") as (client, _port):
        yield client
