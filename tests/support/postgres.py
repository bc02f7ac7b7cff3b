"""A PostgreSQL database of its own for each test that needs one.

``KEEL_TEST_DATABASE_URL`` (set by ``.ci/run``) names a server and a database to connect
to for administration; every test then gets a fresh database ``keel_test_<random>`` on
that server, dropped afterwards, so tests run side by side without seeing each other.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

URL_VARIABLE = "KEEL_TEST_DATABASE_URL"
SKIP_REASON = (
    f"needs PostgreSQL: set {URL_VARIABLE}="
    "postgresql+psycopg://postgres@127.0.0.1:5432/test (.ci/run sets it)"
)


def admin_url() -> str | None:
    return os.environ.get(URL_VARIABLE) or None


def libpq_url(url: str) -> str:
    """SQLAlchemy's ``postgresql+psycopg://`` spelled for libpq."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, then drop it."""
    name = f"keel_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(url, name)
    finally:
        # A connection the test left open warns (ResourceWarning) when collected: collect
        # now, so that it fails this test rather than whichever runs when the collector
        # next happens to.
        gc.collect()
        with psycopg.connect(libpq_url(url), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
