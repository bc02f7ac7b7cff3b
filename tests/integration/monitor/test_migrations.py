"""The monitor's Alembic migrations build exactly the schema its tables declare, on both
databases, with its own version table, next to the registry's in one database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.common.db import make_engine, upgrade
from services.monitor import alert_tables  # noqa: F401 - registers the alert tables
from services.monitor.service import MIGRATIONS
from services.monitor.tables import METADATA
from services.registry.service import MIGRATIONS as REGISTRY_MIGRATIONS

VERSION_TABLE = "alembic_version_monitor"


def test_migrated_schema_matches_the_tables(database_urls: tuple[str, str]) -> None:
    engine = make_engine(database_urls[1])
    try:
        upgrade(engine, MIGRATIONS)
        upgrade(engine, MIGRATIONS)  # idempotent: a second start changes nothing
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, METADATA) == []
            assert context.get_current_revision() == "0003"
        upgrade(engine, REGISTRY_MIGRATIONS)  # the registry can share the database
        tables = inspect(engine).get_table_names()
        assert {VERSION_TABLE, "alembic_version_registry", "monitor_buckets"} <= set(tables)
    finally:
        engine.dispose()
