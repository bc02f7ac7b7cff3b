"""The Alembic migrations build exactly the schema the tables declare, on both databases,
with the registry's own version table."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from services.common.db import make_engine, upgrade
from services.registry.service import MIGRATIONS
from services.registry.tables import METADATA

VERSION_TABLE = "alembic_version_registry"


def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, MIGRATIONS)
        upgrade(engine, MIGRATIONS)  # idempotent: a second start changes nothing
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, METADATA) == []
            assert context.get_current_revision() == "0001"
        assert VERSION_TABLE in inspect(engine).get_table_names()
    finally:
        engine.dispose()
