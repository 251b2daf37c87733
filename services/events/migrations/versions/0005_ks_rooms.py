"""events: its copy of the room catalogue, and when an event's room was last asked for

Revision ID: events_0005
Revises: events_0004
Create Date: 2027-01-12

`ks_rooms` holds the community rooms as booking announces them (`booking.room.updated`), so the
event editor offers a KS's rooms from a list instead of asking for a room code. It fills from
the bus: booking announces every room when it starts and once a day.

`events.room_requested_at` is when the event last asked booking for its room: a request that
booking has not answered for long is shown to staff as such (existing pending events: unknown,
NULL, shown as waiting).
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "events_0005"
down_revision = "events_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ks_rooms",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ks", sa.String(40), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("address", sa.String(300), nullable=False, server_default=""),
        sa.Column("capacity", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("requires_approval", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("closures", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("announced_at", UTCDateTime(), nullable=False),
    )
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("room_requested_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("room_requested_at")
    op.drop_table("ks_rooms")
