"""Alembic environment of the monitor: its own version table, so the monitor and the
registry can share one database."""

from __future__ import annotations

from alembic import context

from services.monitor import alert_tables  # noqa: F401 - registers the alert tables
from services.monitor.tables import METADATA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=METADATA,
    version_table="alembic_version_monitor",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
