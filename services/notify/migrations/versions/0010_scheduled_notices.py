"""notify: scheduled_notices — a notice a staff member wrote on the staff pages
(`/osebje/obvestila`) to be sent later: at `send_at` a periodic job writes its
`notify.notice.requested` to notify's own outbox (the one fan-out path), in the same
transaction as `sent_at` (services.notify.staff; issue 19).

Revision ID: notify_0010
Revises: notify_0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "notify_0010"
down_revision = "notify_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_notices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("ks", sa.String(40), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("send_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(320), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_scheduled_notices_send_at", "scheduled_notices", ["send_at"])
    op.create_index("ix_scheduled_notices_ks", "scheduled_notices", ["ks"])


def downgrade() -> None:
    op.drop_index("ix_scheduled_notices_ks", table_name="scheduled_notices")
    op.drop_index("ix_scheduled_notices_send_at", table_name="scheduled_notices")
    op.drop_table("scheduled_notices")
