"""booking: room rules (opening and office hours, durations, notice, buffer, approval),
closures, bookings; on PostgreSQL an exclusion constraint so no two holding bookings of a
room ever overlap

Revision ID: booking_0002
Revises: booking_0001
Create Date: 2026-11-24

Seeded rules for every room: open every day 08.00–22.00 (Sunday 09.00–21.00), the KS's
office hours blocked twice a week 17.00–19.00 (Monday and Wednesday, or Tuesday and
Thursday), bookings of 1 to 4 hours, at least 24 hours ahead and at most 180 days ahead,
no buffer, staff approval needed, requests lapse after 72 hours. The Intergenerational
Centre Kranj (MCK) is open on weekdays 08.00–20.00, has no KS office hours, and keeps a
15-minute buffer between bookings. Staff change all of it through the API.
"""

import sqlalchemy as sa
from alembic import op

from shared.contracts import KS_SLUGS
from shared.models import UTCDateTime

revision = "booking_0002"
down_revision = "booking_0001"
branch_labels = None
depends_on = None

_WEEK = {d: [["08:00", "22:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat")} | {"sun": [["09:00", "21:00"]]}
_MCK_WEEK = {d: [["08:00", "20:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
_ACCESS = (
    "Ključ prevzamete v pisarni KS v času uradnih ur ali po dogovoru s hišnikom. "
    "Ob odhodu prostor pospravite, ugasnite luči in zaklenite vrata."
)
_MCK_ACCESS = "Ob prihodu se oglasite na recepciji Medgeneracijskega centra, Cesta talcev 7 (pritličje)."


def upgrade() -> None:
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(sa.Column("accessibility", sa.String(500), nullable=False, server_default=""))
        batch.add_column(sa.Column("equipment", sa.String(500), nullable=False, server_default=""))
        batch.add_column(sa.Column("access_instructions", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("opening_hours", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("office_hours", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("min_duration_minutes", sa.Integer(), nullable=False, server_default="60"))
        batch.add_column(sa.Column("max_duration_minutes", sa.Integer(), nullable=False, server_default="240"))
        batch.add_column(sa.Column("min_notice_hours", sa.Integer(), nullable=False, server_default="24"))
        batch.add_column(sa.Column("max_ahead_days", sa.Integer(), nullable=False, server_default="180"))
        batch.add_column(sa.Column("buffer_minutes", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("requires_approval", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("request_ttl_hours", sa.Integer(), nullable=False, server_default="72"))

    rooms = sa.table(
        "rooms",
        sa.column("id", sa.String),
        sa.column("accessibility", sa.String),
        sa.column("equipment", sa.String),
        sa.column("access_instructions", sa.Text),
        sa.column("opening_hours", sa.JSON),
        sa.column("office_hours", sa.JSON),
        sa.column("buffer_minutes", sa.Integer),
    )
    for i, slug in enumerate(KS_SLUGS):
        days = ("mon", "wed") if i % 2 == 0 else ("tue", "thu")
        op.execute(
            rooms.update()
            .where(rooms.c.id == f"ks-{slug}")
            .values(
                accessibility="Dostop za gibalno ovirane: vhod v pritličju."
                if i % 3
                else "Prostor je v prvem nadstropju, brez dvigala.",
                equipment="mize, stoli, projektor, čajna kuhinja",
                access_instructions=_ACCESS,
                opening_hours=_WEEK,
                office_hours={d: [["17:00", "19:00"]] for d in days},
            )
        )
    op.execute(
        rooms.update()
        .where(rooms.c.id == "mck")
        .values(
            accessibility="Dostop brez ovir, dvigalo, prilagojene sanitarije, indukcijska zanka.",
            equipment="mize, stoli, projektor, ozvočenje, kuhinja",
            access_instructions=_MCK_ACCESS,
            opening_hours=_MCK_WEEK,
            office_hours={},
            buffer_minutes=15,
        )
    )

    op.create_table(
        "closures",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name="ck_closures_interval"),
    )
    op.create_table(
        "bookings",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("series_id", sa.String(64), nullable=True, index=True),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id"), nullable=False, index=True),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("purpose", sa.String(300), nullable=False),
        sa.Column("category", sa.String(30), nullable=False, server_default="other"),
        sa.Column("group_kind", sa.String(30), nullable=False, server_default="individual"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("language", sa.String(2), nullable=False, server_default="sl"),
        sa.Column("attendees", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True, index=True),
        sa.CheckConstraint("ends_at > starts_at", name="ck_bookings_interval"),
        sa.CheckConstraint("attendees > 0", name="ck_bookings_attendees"),
        sa.CheckConstraint(
            "status IN ('requested', 'confirmed', 'rejected', 'cancelled', 'expired')", name="ck_bookings_status"
        ),
    )
    op.create_index("ix_bookings_room_time", "bookings", ["room_id", "starts_at", "ends_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE bookings ADD CONSTRAINT ex_bookings_no_overlap "
            "EXCLUDE USING gist (room_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&) "
            "WHERE (status IN ('requested', 'confirmed'))"
        )


def downgrade() -> None:
    op.drop_table("bookings")
    op.drop_table("closures")
    with op.batch_alter_table("rooms") as batch:
        for column in (
            "request_ttl_hours",
            "requires_approval",
            "buffer_minutes",
            "max_ahead_days",
            "min_notice_hours",
            "max_duration_minutes",
            "min_duration_minutes",
            "office_hours",
            "opening_hours",
            "access_instructions",
            "equipment",
            "accessibility",
        ):
            batch.drop_column(column)
