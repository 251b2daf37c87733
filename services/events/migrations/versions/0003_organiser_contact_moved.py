"""events: the organiser's contact (told when the room is refused) and moved occurrences
of a recurring event (RFC 5545 RECURRENCE-ID overrides)

Revision ID: events_0003
Revises: events_0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "events_0003"
down_revision = "events_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("organiser_email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("organiser_phone", sa.String(20), nullable=True))
        batch.add_column(sa.Column("moved", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        for name in ("moved", "organiser_phone", "organiser_email"):
            batch.drop_column(name)
