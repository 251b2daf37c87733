"""accounts: API tokens expire (issue 15); tokens made before this get 90 days from the upgrade

Revision ID: accounts_0002
Revises: accounts_0001
Create Date: 2026-11-25
"""

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

from shared import clock
from shared.models import UTCDateTime

revision = "accounts_0002"
down_revision = "accounts_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
    tokens = sa.table("api_tokens", sa.column("expires_at", UTCDateTime()))
    op.execute(tokens.update().where(tokens.c.expires_at.is_(None)).values(expires_at=clock.now() + timedelta(days=90)))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
