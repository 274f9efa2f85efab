"""route tables: routes, route_samples, route_traffic, route_counts, route_events

The schema as `metadata.create_all` made it before the route tables had migrations. A database
made that way has the tables but no version table: each table is created only where it is
missing, so such a database is adopted with its rows as they are and stamped at this revision.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "routes" not in existing:
        op.create_table(
            "routes",
            sa.Column("workload_id", sa.String(200), primary_key=True),
            sa.Column("route", sa.JSON(), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
        )
    if "route_samples" not in existing:
        op.create_table(
            "route_samples",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("workload_id", sa.String(200), nullable=False),
            sa.Column("candidate", sa.String(200), nullable=False),
            sa.Column("phase", sa.String(16), nullable=False),
            sa.Column("agree", sa.Boolean(), nullable=False),
            sa.Column("at", sa.Float(), nullable=False),
        )
        op.create_index("ix_route_samples_workload_id", "route_samples", ["workload_id"])
    if "route_traffic" not in existing:
        op.create_table(
            "route_traffic",
            sa.Column("workload_id", sa.String(200), primary_key=True),
            sa.Column("served_by", sa.String(16), primary_key=True),
            sa.Column("requests", sa.Integer(), nullable=False),
            sa.Column("input_tokens", sa.Integer(), nullable=False),
            sa.Column("output_tokens", sa.Integer(), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
        )
    if "route_counts" not in existing:
        op.create_table(
            "route_counts",
            sa.Column("workload_id", sa.String(200), primary_key=True),
            sa.Column("since", sa.Float(), primary_key=True),
            sa.Column("asked", sa.Integer(), nullable=False),
            sa.Column("served", sa.Integer(), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
        )
    if "route_events" not in existing:
        op.create_table(
            "route_events",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("workload_id", sa.String(200), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("detail", sa.JSON(), nullable=False),
        )
        op.create_index("ix_route_events_workload_id", "route_events", ["workload_id"])


def downgrade() -> None:
    op.drop_index("ix_route_events_workload_id", table_name="route_events")
    op.drop_table("route_events")
    op.drop_table("route_counts")
    op.drop_table("route_traffic")
    op.drop_index("ix_route_samples_workload_id", table_name="route_samples")
    op.drop_table("route_samples")
    op.drop_table("routes")
