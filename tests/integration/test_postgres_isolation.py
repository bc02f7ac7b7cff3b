"""Tests that use PostgreSQL each get a database of their own."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.postgres import SKIP_REASON, admin_url, fresh_database, libpq_url


def test_each_test_database_is_empty_and_private(postgres_url: str) -> None:
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as mine:
        mine.execute("CREATE TABLE marker (id int)")
        mine.execute("INSERT INTO marker VALUES (1)")
        url = admin_url()
        assert url is not None
        with fresh_database(url) as other_url:
            assert other_url != postgres_url
            with psycopg.connect(libpq_url(other_url)) as other:
                tables = other.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'marker'"
                ).fetchone()
                assert tables == (0,)
        row = mine.execute("SELECT id FROM marker").fetchone()
        assert row == (1,)


def test_a_test_database_is_dropped_afterwards() -> None:
    url = admin_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    with fresh_database(url) as database:
        name = database.rsplit("/", 1)[1]
    with psycopg.connect(libpq_url(url)) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert found is None
