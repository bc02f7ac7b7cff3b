"""Test tiers are folders: a test's tier marker comes from where it lives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import SKIP_REASON, admin_url, fresh_database

TIERS = ("unit", "integration", "e2e", "load", "faults", "fuzz")
ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(item.path).relative_to(ROOT).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database of this test's own."""
    url = admin_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    with fresh_database(url) as database:
        yield database
