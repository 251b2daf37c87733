"""booking: bookings asked for by the events service remember the event (`event_id`), so
every later answer (approved, rejected, cancelled, expired) reaches that event

Revision ID: booking_0003
Revises: booking_0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "booking_0003"
down_revision = "booking_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bookings") as batch:
        batch.add_column(sa.Column("event_id", sa.String(64), nullable=True))
        batch.create_index("ix_bookings_event_id", ["event_id"])


def downgrade() -> None:
    with op.batch_alter_table("bookings") as batch:
        batch.drop_index("ix_bookings_event_id")
        batch.drop_column("event_id")
