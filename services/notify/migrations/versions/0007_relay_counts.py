"""notify: relay_counts — daily counts of personal messages to unconfirmed contacts and
the series already told (services.notify.relay; docs/security.md)

Revision ID: notify_0007
Revises: notify_0006
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "notify_0007"
down_revision = "notify_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_counts",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("relay_counts")
