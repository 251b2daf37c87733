"""events: attendance in the platform's one set of age bands, per date; iCalendar SEQUENCE

Revision ID: events_0004
Revises: events_0003
Create Date: 2026-12-04

Attendance was counted in four age groups of its own (otroci, mladi, odrasli, starejsi) that
could not be compared with the surveys' age bands. It is now counted in the bands of
`shared.contracts.age` (0-14, 15-29, 30-49, 50-64, 65+) and per date of the event
(`occurrence`: the start the event or its series gives that date).

Stored rows are mapped, keeping what was counted true rather than guessing:
- otroci   -> 0-14   (children, under 15)
- mladi    -> 15-29  (young people as Slovenian youth law counts them: the same band)
- starejsi -> 65+    (older people)
- odrasli  -> 30-64  a legacy band kept as such: "adults" spans two of the new bands (30-49 and
  50-64) and nothing says how to split them, so the rows keep their total under a label of
  their own ("30–64 let (pred delitvijo)") instead of being put wholly into 30-49. Totals
  stay right; a new recording for that date replaces them with the new bands.
Old rows had no date: they are put on the event's (first) start.

`events.sequence` is the iCalendar SEQUENCE of the event, 0 for every existing event.
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "events_0004"
down_revision = "events_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("sequence", sa.Integer(), nullable=False, server_default="0"))

    op.create_table(
        "attendance_bands",
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id"), nullable=False),
        sa.Column("occurrence", UTCDateTime(), nullable=False),
        sa.Column("age_band", sa.String(10), nullable=False),  # shared.contracts.age (or legacy 30-64)
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "occurrence", "age_band", name="pk_attendance_bands"),
    )
    op.execute(
        "INSERT INTO attendance_bands (event_id, occurrence, age_band, count, recorded_by, recorded_at) "
        "SELECT a.event_id, e.starts_at, "
        "CASE a.age_group WHEN 'otroci' THEN '0-14' WHEN 'mladi' THEN '15-29' WHEN 'odrasli' THEN '30-64' "
        "WHEN 'starejsi' THEN '65+' ELSE a.age_group END, "
        "a.count, a.recorded_by, a.recorded_at "
        "FROM attendance a JOIN events e ON e.id = a.event_id"
    )
    op.drop_table("attendance")
    op.rename_table("attendance_bands", "attendance")


def downgrade() -> None:
    op.create_table(
        "attendance_groups",
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id"), nullable=False),
        sa.Column("age_group", sa.String(20), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "age_group", name="pk_attendance_groups"),
    )
    op.execute(
        "INSERT INTO attendance_groups (event_id, age_group, count, recorded_by, recorded_at) "
        "SELECT event_id, g, SUM(count), MAX(recorded_by), MAX(recorded_at) FROM ("
        "SELECT event_id, count, recorded_by, recorded_at, "
        "CASE age_band WHEN '0-14' THEN 'otroci' WHEN '15-29' THEN 'mladi' WHEN '65+' THEN 'starejsi' "
        "ELSE 'odrasli' END AS g FROM attendance) AS banded GROUP BY event_id, g"
    )
    op.drop_table("attendance")
    op.rename_table("attendance_groups", "attendance")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("sequence")
