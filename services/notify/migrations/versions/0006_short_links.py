"""notify: short_links — the short signed action links of personal SMS (/k/{code})

Revision ID: notify_0006
Revises: notify_0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "notify_0006"
down_revision = "notify_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "short_links",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("short_links")
