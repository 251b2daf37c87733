"""notify: job_runs — a periodic job claims its run here, so it fires once across replicas

Revision ID: notify_0005
Revises: notify_0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "notify_0005"
down_revision = "notify_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (job, run_key) is the claim: the first replica's insert wins, the others' fail on the key.
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(60), primary_key=True),
        sa.Column("run_key", sa.String(60), primary_key=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
    )
    # The retention job looks for old deliveries that still hold an address.
    op.create_index("ix_deliveries_created_at", "deliveries", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_created_at", table_name="deliveries")
    op.drop_table("job_runs")
