"""audit and schedule events

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("workload_id", sa.String(200), nullable=True),
        sa.Column("client_id", sa.String(200), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_events_kind_at", "events", ["kind", "at"])
    op.create_index("ix_events_workload_at", "events", ["workload_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_events_workload_at", table_name="events")
    op.drop_index("ix_events_kind_at", table_name="events")
    op.drop_table("events")
