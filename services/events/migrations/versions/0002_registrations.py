"""events: audience, topics, organiser, accessibility, room, recurrence (RRULE + EXDATE),
registrations with a waitlist and reminders, attendance by age group

Revision ID: events_0002
Revises: events_0001
Create Date: 2026-11-24

Event status grows from draft | published | cancelled to also `pending-room` (waiting for
the booking service to confirm the KS room) and `room-refused` (the booking was refused).
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "events_0002"
down_revision = "events_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("audience", sa.JSON(), nullable=False, server_default='["vsi"]'))
        batch.add_column(sa.Column("topics", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("organiser", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("accessibility", sa.String(1000), nullable=False, server_default=""))
        batch.add_column(sa.Column("room_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("booking_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("room_note", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("rrule", sa.String(500), nullable=True))
        batch.add_column(sa.Column("exdates", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("cancel_reason", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("cancelled_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("updated_at", UTCDateTime(), nullable=True))
    op.create_table(
        "registrations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("language", sa.String(2), nullable=False, server_default="sl"),
        sa.Column("channel", sa.String(10), nullable=False, server_default="web"),  # web | phone | staff
        sa.Column("status", sa.String(20), nullable=False, index=True),  # confirmed | waitlisted | cancelled
        sa.Column("position", sa.Integer(), nullable=False),  # order of arrival within the event
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("reminder_sent_at", UTCDateTime(), nullable=True, index=True),
        sa.UniqueConstraint("event_id", "position", name="uq_registrations_event_position"),
    )
    op.create_table(
        "attendance",
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id"), primary_key=True),
        sa.Column("age_group", sa.String(20), primary_key=True),  # otroci | mladi | odrasli | starejsi
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("attendance")
    op.drop_table("registrations")
    with op.batch_alter_table("events") as batch:
        for name in (
            "updated_at", "cancelled_at", "cancel_reason", "exdates", "rrule", "room_note", "booking_id",
            "room_id", "accessibility", "organiser", "topics", "audience",
        ):  # fmt: skip
            batch.drop_column(name)
