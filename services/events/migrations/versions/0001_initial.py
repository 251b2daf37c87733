"""events: outbox, processed messages, events

Revision ID: events_0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_bus_tables
from shared.models import UTCDateTime

revision = "events_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_bus_tables(op)
    op.create_table(
        "events",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ks", sa.String(40), nullable=False, index=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("starts_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("venue", sa.String(300), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="draft", index=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("processed_messages")
    op.drop_table("outbox")
