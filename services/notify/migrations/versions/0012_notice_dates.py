"""notify: notices.dates — every date of an announced event (a series: all of them), so a
weekly event stays on the noticeboard until its last date and the weekly bulletin lists
the dates of its week (services.notify.agenda; issue 18).

Revision ID: notify_0012
Revises: notify_0011
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "notify_0012"
down_revision = "notify_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.add_column(sa.Column("dates", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("dates")
