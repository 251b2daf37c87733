"""notify: outbox, processed messages, subscribers, notices, deliveries

Revision ID: notify_0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_bus_tables
from shared.models import UTCDateTime

revision = "notify_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_bus_tables(op)
    op.create_table(
        "subscribers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True, unique=True),
        sa.Column("phone", sa.String(20), nullable=True, unique=True),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("consent_source", sa.String(20), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "subscriber_ks",
        sa.Column("subscriber_id", sa.String(64), sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("ks", sa.String(40), primary_key=True, index=True),
    )
    op.create_table(
        "subscriber_topics",
        sa.Column("subscriber_id", sa.String(64), sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("topic", sa.String(20), primary_key=True, index=True),
    )
    op.create_table(
        "notices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("ks", sa.JSON(), nullable=False),
        sa.Column("topic", sa.String(20), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("urgency", sa.String(10), nullable=False),
        sa.Column("url", sa.String(2000), nullable=True),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=True),
        sa.Column("ends_at", UTCDateTime(), nullable=True),
        sa.Column("venue", sa.String(300), nullable=True),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.Column("on_noticeboard", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False, index=True),
    )
    op.create_table(
        "notice_ks",
        sa.Column("notice_id", sa.String(64), sa.ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("ks", sa.String(40), primary_key=True, index=True),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("notice_id", sa.String(64), sa.ForeignKey("notices.id"), nullable=False, index=True),
        sa.Column("subscriber_id", sa.String(64), nullable=True, index=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("address", sa.String(320), nullable=True),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("reference", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("notice_id", "subscriber_id", "channel", name="uq_delivery"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in ("deliveries", "notice_ks", "notices", "subscriber_topics", "subscriber_ks", "subscribers"):
        op.drop_table(table)
    op.drop_table("processed_messages")
    op.drop_table("outbox")
