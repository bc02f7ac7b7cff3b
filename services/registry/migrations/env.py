"""Alembic environment of the registry: its own version table, so the registry and the
monitor can share one database."""

from __future__ import annotations

from alembic import context

from services.registry.tables import METADATA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=METADATA,
    version_table="alembic_version_registry",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
