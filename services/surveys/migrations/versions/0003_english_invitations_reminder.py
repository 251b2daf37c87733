"""surveys: English texts of questions and options, used invitations, the closing-soon reminder

Revision ID: surveys_0003
Revises: surveys_0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "surveys_0003"
down_revision = "surveys_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("surveys") as batch:
        batch.add_column(sa.Column("title_en", sa.String(200), nullable=True))
        batch.add_column(sa.Column("description_en", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reminder_sent_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("survey_questions") as batch:
        batch.add_column(sa.Column("text_en", sa.Text(), nullable=True))
        batch.add_column(sa.Column("help_en", sa.Text(), nullable=True))
    with op.batch_alter_table("survey_options") as batch:
        batch.add_column(sa.Column("text_en", sa.Text(), nullable=True))
    # Which invitations were used: deliberately NOT linked to the response (no response id).
    op.create_table(
        "survey_invitations_used",
        sa.Column("survey_id", sa.String(64), sa.ForeignKey("surveys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("invitee", sa.String(200), primary_key=True),
        sa.Column("used_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("survey_invitations_used")
    with op.batch_alter_table("survey_options") as batch:
        batch.drop_column("text_en")
    with op.batch_alter_table("survey_questions") as batch:
        batch.drop_column("help_en")
        batch.drop_column("text_en")
    with op.batch_alter_table("surveys") as batch:
        batch.drop_column("reminder_sent_at")
        batch.drop_column("description_en")
        batch.drop_column("title_en")
