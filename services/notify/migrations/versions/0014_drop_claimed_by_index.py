"""notify: deliveries lose the index ix_deliveries_claimed_by.

Every claimed delivery changed it twice (claimed by a worker, then recorded and claimed by
none), and it was never read where it helped: a worker's own claims (`retire`, at a graceful
stop) are `sending` rows, which ix_deliveries_claim (status, channel, next_attempt_at) finds
among the deliveries in flight; the claims of a stopped worker are found the same way
(services.notify.delivery). Without it notify's bookkeeping per SMS fell by about a
twelfth (issue 20 §3; docs/scaling.md).

A notify one version behind works without it. Dropping an index takes a moment on either
database.

Revision ID: notify_0014
Revises: notify_0013
Create Date: 2026-12-07
"""

from alembic import op

revision = "notify_0014"
down_revision = "notify_0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_claimed_by", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_claimed_by", "deliveries", ["claimed_by"])
