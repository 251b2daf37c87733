"""notify: deliveries are claimed through ix_deliveries_claim (status, channel, next_attempt_at),
which replaces ix_deliveries_due (status, next_attempt_at).

The delivery worker asks for each kind of due delivery of one channel in the order they fell
due, a batch at a time (services.notify.delivery, `_claim`): with the channel in the index,
each query reads its batch in index order and stops. Without it the database gathered and
sorted every due delivery of both channels for each batch of 100, so the claims of a
fan-out grew with the square of its size (issue 20 §4). Queries by status alone (held
deliveries at start) use the index's first column, as they used the old one's.

On PostgreSQL the index is built with a plain CREATE INDEX: writes to `deliveries` wait
until it is built, so on a large table upgrade outside a fan-out (docs/operations.md,
"Upgrade"). A notify one version behind works with either index.

Revision ID: notify_0013
Revises: notify_0012
Create Date: 2026-12-07
"""

from alembic import op

revision = "notify_0013"
down_revision = "notify_0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_claim", "deliveries", ["status", "channel", "next_attempt_at"])
    op.drop_index("ix_deliveries_due", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.drop_index("ix_deliveries_claim", table_name="deliveries")
