"""notify: weekly digest — subscribers.digest, and at most one digest notice per key

Revision ID: notify_0002
Revises: notify_0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "notify_0002"
down_revision = "notify_0001"
branch_labels = None
depends_on = None

DIGEST_ONLY = "kind = 'digest'"


def upgrade() -> None:
    op.add_column(
        "subscribers",
        sa.Column("digest", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    # One digest per (source, source_id) — the source_id names the KS and the ISO week — so
    # two replicas running the weekly job at the same moment cannot both create it: the
    # second insert fails on this index and that replica rolls back. Partial, because
    # notices from outside systems may legitimately share (source, id) across kinds.
    op.create_index(
        "uq_notices_digest",
        "notices",
        ["source", "source_id"],
        unique=True,
        sqlite_where=sa.text(DIGEST_ONLY),
        postgresql_where=sa.text(DIGEST_ONLY),
    )


def downgrade() -> None:
    op.drop_index("uq_notices_digest", table_name="notices")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("digest")
