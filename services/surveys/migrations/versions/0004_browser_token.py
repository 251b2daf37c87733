"""surveys: the per-browser token of a web answer (a keyed hash), one answer per browser

Revision ID: surveys_0004
Revises: surveys_0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "surveys_0004"
down_revision = "surveys_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("survey_responses") as batch:
        batch.add_column(sa.Column("browser", sa.String(64), nullable=True))
    # One answer per browser token and survey; answers without a token (NULL) are not unique.
    op.create_index("ux_survey_responses_browser", "survey_responses", ["survey_id", "browser"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_survey_responses_browser", table_name="survey_responses")
    with op.batch_alter_table("survey_responses") as batch:
        batch.drop_column("browser")
