"""notify: export_requests — a resident's request, from the manage page, for everything the
platform holds about them; the other services' parts are kept until the link has been sent
and has lapsed (services.notify.exports; issue 17).

Revision ID: notify_0011
Revises: notify_0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "notify_0011"
down_revision = "notify_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("subscriber_id", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("language", sa.String(2), nullable=False, server_default="sl"),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_export_requests_subscriber_id", "export_requests", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_export_requests_subscriber_id", table_name="export_requests")
    op.drop_table("export_requests")
