"""notify: KS staff contacts, told of new booking requests

Revision ID: notify_0004
Revises: notify_0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "notify_0004"
down_revision = "notify_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ks_contacts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ks", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
    )
    op.create_index("ix_ks_contacts_ks", "ks_contacts", ["ks"])


def downgrade() -> None:
    op.drop_index("ix_ks_contacts_ks", table_name="ks_contacts")
    op.drop_table("ks_contacts")
