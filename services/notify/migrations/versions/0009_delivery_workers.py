"""notify: delivery_workers — each process's delivery worker registers and heartbeats here,
and each claimed delivery names its worker (`deliveries.claimed_by`): the claims of a worker
that stopped heartbeating are claimed again within KRANJ_DELIVERY_STALE_SECONDS, not after
the lease (services.notify.delivery; issue 20).

Revision ID: notify_0009
Revises: notify_0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "notify_0009"
down_revision = "notify_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    )
    # Claims made before this revision name no worker: they wait for their lease as before.
    op.add_column("deliveries", sa.Column("claimed_by", sa.String(64), nullable=True))
    op.create_index("ix_deliveries_claimed_by", "deliveries", ["claimed_by"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_claimed_by", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claimed_by")
    op.drop_table("delivery_workers")
