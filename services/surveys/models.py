"""Tables of the surveys service. Answers are anonymous: a response row holds no contact
data and no IP address, only a keyed hash of the address (anti-stuffing)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import new_id, ts_column, utcnow


class Survey(SQLModel, table=True):
    __tablename__ = "surveys"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    ks: str = Field(max_length=40, index=True)  # KS slug or "*"
    title: str = Field(max_length=200)
    status: str = Field(default="draft", max_length=20, index=True)  # draft | open | closed
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    description: str = Field(default="", sa_type=sa.Text)
    template: str | None = Field(default=None, max_length=40)
    contact: bool = Field(default=False)  # offer contact fields / take-part consent
    opens_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    closes_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True, index=True))
    opened_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    closed_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    results_published: bool = Field(default=False)
    results_published_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    created_by: str | None = Field(default=None, max_length=200)
    title_en: str | None = Field(default=None, max_length=200)
    description_en: str | None = Field(default=None, sa_type=sa.Text)
    # Claimed once (UPDATE … WHERE reminder_sent_at IS NULL) by whichever replica announces
    # `surveys.survey.closing-soon` first.
    reminder_sent_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


class Question(SQLModel, table=True):
    __tablename__ = "survey_questions"

    survey_id: str = Field(foreign_key="surveys.id", primary_key=True, max_length=64, ondelete="CASCADE")
    id: str = Field(primary_key=True, max_length=40)
    position: int
    type: str = Field(max_length=20)  # single | multiple | scale | text
    text: str = Field(sa_type=sa.Text)
    help: str = Field(default="", sa_type=sa.Text)
    required: bool = Field(default=False)
    show_if: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)  # {"question": id, "option": id}
    text_en: str | None = Field(default=None, sa_type=sa.Text)
    help_en: str | None = Field(default=None, sa_type=sa.Text)


class Option(SQLModel, table=True):
    __tablename__ = "survey_options"

    survey_id: str = Field(primary_key=True, max_length=64)
    question_id: str = Field(primary_key=True, max_length=40)
    id: str = Field(primary_key=True, max_length=40)
    position: int
    text: str = Field(sa_type=sa.Text)
    text_en: str | None = Field(default=None, sa_type=sa.Text)


class InvitationUsed(SQLModel, table=True):
    """A personal invitation (`?t=` token) that has answered its survey: once each.

    ANONYMITY: on purpose there is no link to the response (no response id, and `used_at`
    is kept to the day only, so it cannot be matched with a response's time). We know *that*
    an invitee answered (so notify reminds only the others), never *what* they answered.
    `invitee` is the opaque string from the token (notify's keyed hash of a subscriber id),
    never contact data."""

    __tablename__ = "survey_invitations_used"

    survey_id: str = Field(foreign_key="surveys.id", primary_key=True, max_length=64, ondelete="CASCADE")
    invitee: str = Field(primary_key=True, max_length=200)
    used_at: datetime = Field(sa_column=ts_column())


class Response(SQLModel, table=True):
    __tablename__ = "survey_responses"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    survey_id: str = Field(foreign_key="surveys.id", max_length=64, index=True, ondelete="CASCADE")
    age_band: str | None = Field(default=None, max_length=10)  # 0-14 | 15-29 | 30-49 | 50-64 | 65+ (shared.contracts.age)
    ks: str | None = Field(default=None, max_length=40)
    channel: str = Field(default="web", max_length=10)  # web | paper
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    fingerprint: str | None = Field(default=None, max_length=64, index=True)  # HMAC of the address, never the IP
    # Keyed hash of the per-browser token (cookie set by the form page); one answer per
    # browser and survey (unique index ux_survey_responses_browser, migration surveys_0004).
    browser: str | None = Field(default=None, max_length=64)
    entered_by: str | None = Field(default=None, max_length=200)  # staff subject for paper answers


class Answer(SQLModel, table=True):
    """One row per answered question; a `multiple` answer has one row per chosen option."""

    __tablename__ = "survey_answers"

    id: int | None = Field(default=None, primary_key=True)
    response_id: str = Field(foreign_key="survey_responses.id", max_length=64, index=True, ondelete="CASCADE")
    survey_id: str = Field(max_length=64, index=True)
    question_id: str = Field(max_length=40)
    option_id: str | None = Field(default=None, max_length=40)
    number: int | None = None
    text: str | None = Field(default=None, sa_type=sa.Text)
