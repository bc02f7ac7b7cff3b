"""prediction ids: no index on segment (expiry finds a segment's ids in its payload)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("monitor_prediction_ids", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_prediction_ids_segment")


def downgrade() -> None:
    with op.batch_alter_table("monitor_prediction_ids", schema=None) as batch_op:
        batch_op.create_index("ix_monitor_prediction_ids_segment", ["segment"], unique=False)
