"""notify: double opt-in confirmations of web sign-ups

Revision ID: notify_0003
Revises: notify_0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "notify_0003"
down_revision = "notify_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "confirmations",
        sa.Column(
            "subscriber_id", sa.String(64), sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("code_hash", sa.String(128), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("confirmations")
