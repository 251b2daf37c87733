"""surveys: definitions (questions, options, window, scope) and anonymous answers

Revision ID: surveys_0002
Revises: surveys_0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "surveys_0002"
down_revision = "surveys_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("surveys") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("template", sa.String(40), nullable=True))
        batch.add_column(sa.Column("contact", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("opens_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("closes_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("opened_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("closed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("results_published", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("results_published_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(200), nullable=True))
        batch.create_index("ix_surveys_closes_at", ["closes_at"])
    op.create_table(
        "survey_questions",
        sa.Column("survey_id", sa.String(64), sa.ForeignKey("surveys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("help", sa.Text(), nullable=False, server_default=""),
        sa.Column("required", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("show_if", sa.JSON(), nullable=True),
    )
    op.create_table(
        "survey_options",
        sa.Column("survey_id", sa.String(64), primary_key=True),
        sa.Column("question_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["survey_id", "question_id"], ["survey_questions.survey_id", "survey_questions.id"], ondelete="CASCADE"
        ),
    )
    op.create_table(
        "survey_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("survey_id", sa.String(64), sa.ForeignKey("surveys.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("age_band", sa.String(10), nullable=True),
        sa.Column("ks", sa.String(40), nullable=True),
        sa.Column("channel", sa.String(10), nullable=False, server_default="web"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True, index=True),
        sa.Column("entered_by", sa.String(200), nullable=True),
    )
    op.create_table(
        "survey_answers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "response_id", sa.String(64), sa.ForeignKey("survey_responses.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("survey_id", sa.String(64), nullable=False, index=True),
        sa.Column("question_id", sa.String(40), nullable=False),
        sa.Column("option_id", sa.String(40), nullable=True),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("survey_answers")
    op.drop_table("survey_responses")
    op.drop_table("survey_options")
    op.drop_table("survey_questions")
    with op.batch_alter_table("surveys") as batch:
        batch.drop_index("ix_surveys_closes_at")
        for column in (
            "created_by", "results_published_at", "results_published", "closed_at", "opened_at",
            "closes_at", "opens_at", "contact", "template", "description",
        ):  # fmt: skip
            batch.drop_column(column)
