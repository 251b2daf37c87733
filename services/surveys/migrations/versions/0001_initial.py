"""surveys: outbox, processed messages, surveys

Revision ID: surveys_0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_bus_tables
from shared.models import UTCDateTime

revision = "surveys_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_bus_tables(op)
    op.create_table(
        "surveys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ks", sa.String(40), nullable=False, index=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="draft", index=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("surveys")
    op.drop_table("processed_messages")
    op.drop_table("outbox")
