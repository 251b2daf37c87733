"""Messages owned by the surveys service (v1).

Import from here directly (`from shared.contracts.surveys import SURVEY_OPENED`).

Designed so that a consumer (notify) needs nothing but the message:
- `surveys.survey.opened` carries the title, the KS (or "*"), the public form's URL,
  the printable paper version's URL and the window, so notify can invite the KS's
  subscribers of topic `surveys` and put a notice on the noticeboard;
- `surveys.survey.closed` and `surveys.results.published` carry the same identity and
  the link to what residents can now see;
- `surveys.respondent.volunteered` carries everything notify needs to create a
  subscriber (KS, topic, channels, language, contact and the consent as given).
  It is the only one with personal data, and it never links the person to their answers
  (no response id): the answers stay anonymous;
- `surveys.survey.closing-soon` (48 hours before the closing time, once) carries the same
  identity, the closing time and `answered_invitees`, so notify reminds only the invited
  who have not answered yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from .envelope import MessageType
from .ks import KsOrAll

SurveyChannel = Literal["web", "paper"]
ContactChannel = Literal["email", "sms"]


class _Survey(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    survey_id: str = Field(min_length=1, max_length=64)
    ks: KsOrAll = Field(description='KS slug, or "*" for a city-wide survey.')
    title: str = Field(min_length=1, max_length=200, description="The survey's title, in Slovenian.")
    topic: Literal["surveys"] = Field(default="surveys", description="The notify topic these messages belong to.")
    language: Literal["sl", "en"] = Field(default="sl", description="Language of `title` and `description`.")


class SurveyOpened(_Survey):
    """A survey is open for answers: residents may fill it in online or on paper."""

    description: str = Field(default="", max_length=5000, description="Plain text, Slovenian.")
    url: AnyHttpUrl = Field(description="The public form, `/surveys/{id}`.")
    print_url: AnyHttpUrl = Field(description="The printable paper version, `/surveys/{id}/print`.")
    opens_at: datetime = Field(description="From when answers are taken (RFC 3339).")
    closes_at: datetime | None = Field(default=None, description="Until when answers are taken; absent: until closed.")
    question_count: int = Field(ge=1, description="How many questions the form has (for 'takes N minutes' wording).")


class SurveyClosed(_Survey):
    """A survey takes no more answers (closed by staff, or its closing time passed)."""

    url: AnyHttpUrl = Field(description="The public form's address (now says the survey is closed).")
    closed_at: datetime
    response_count: int = Field(ge=0, description="Answers received in total (web and paper).")


class ResultsPublished(_Survey):
    """Staff published a survey's results (counts and charts, no free text) on a public page."""

    url: AnyHttpUrl = Field(description="The public results page, `/surveys/{id}/results`.")
    published_at: datetime
    response_count: int = Field(ge=0)


class RespondentVolunteered(BaseModel):
    """A respondent asked to take part / be contacted and consented to it.

    PERSONAL DATA: `name`, `email` and `phone` identify a person. Keep them only to create
    or update a subscriber (for `ks`, `topic` and `channels`), record `consent_text` and
    `consent_at` with it, and honour erasure. The message never says how this person
    answered the survey."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    survey_id: str = Field(min_length=1, max_length=64)
    survey_title: str = Field(min_length=1, max_length=200)
    ks: KsOrAll = Field(description='The KS the person wants to take part in (theirs, else the survey\'s); "*" = any.')
    topic: Literal["surveys"] = "surveys"
    name: str | None = Field(default=None, max_length=200, description="PERSONAL DATA: how to address them (optional).")
    email: EmailStr | None = Field(default=None, description="PERSONAL DATA: e-mail address.")
    phone: str | None = Field(
        default=None, pattern=r"^\+[1-9][0-9]{6,14}$", description="PERSONAL DATA: phone number in E.164, e.g. +38640123456."
    )
    channels: list[ContactChannel] = Field(
        min_length=1, description="How they want to be reached: `email` when an e-mail was given, `sms` for a phone."
    )
    language: Literal["sl", "en"] = "sl"
    consent_text: str = Field(min_length=1, max_length=2000, description="The exact consent wording the person agreed to.")
    consent_at: datetime = Field(description="When they agreed (RFC 3339).")
    consent_source: SurveyChannel = Field(description="`web`: on the public form; `paper`: written on paper, entered by staff.")

    @field_validator("consent_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must be an RFC 3339 time with an offset")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> RespondentVolunteered:
        if not self.email and not self.phone:
            raise ValueError("email or phone is required")
        if "email" in self.channels and not self.email:
            raise ValueError("channel email needs an email")
        if "sms" in self.channels and not self.phone:
            raise ValueError("channel sms needs a phone")
        return self


SURVEY_OPENED = MessageType(
    "surveys.survey.opened",
    1,
    SurveyOpened,
    "Fact: a survey is open; notify invites the KS's subscribers of topic `surveys` with the link.",
)
SURVEY_CLOSED = MessageType(
    "surveys.survey.closed",
    1,
    SurveyClosed,
    "Fact: a survey takes no more answers.",
)
RESULTS_PUBLISHED = MessageType(
    "surveys.results.published",
    1,
    ResultsPublished,
    "Fact: staff published a survey's results on a public page.",
)
RESPONDENT_VOLUNTEERED = MessageType(
    "surveys.respondent.volunteered",
    1,
    RespondentVolunteered,
    "Fact (PERSONAL DATA): a respondent consented to take part and be contacted; notify makes them a "
    "subscriber of the KS and topic `surveys`. Never linked to their answers.",
)



class SurveyClosingSoon(_Survey):
    """A survey closes within 48 hours: time to remind the invited who have not answered yet.

    Announced once per survey (even with several replicas). Self-sufficient for notify:
    remind the KS's subscribers of topic `surveys` who were invited (`surveys.survey.opened`)
    except those whose invitee string (`shared.invitations.invitee_for`) is in
    `answered_invitees`. Residents who answered without their personal link cannot be
    known (answers are anonymous) and may be reminded anyway."""

    url: AnyHttpUrl = Field(description="The public form, `/surveys/{id}` (add `?t=<invitation>` per person).")
    print_url: AnyHttpUrl | None = Field(default=None, description="The printable paper version.")
    closes_at: datetime = Field(description="When answers stop being taken (RFC 3339).")
    response_count: int = Field(ge=0, description="Answers received so far (web and paper).")
    answered_invitees: list[str] = Field(
        default_factory=list,
        description=(
            "The opaque invitee strings of the personal invitations (`?t=` tokens) already used to answer: "
            "do not remind these. Never linked to what they answered."
        ),
    )


SURVEY_CLOSING_SOON = MessageType(
    "surveys.survey.closing-soon",
    1,
    SurveyClosingSoon,
    "Fact: a survey closes within 48 hours; notify reminds the invited who have not answered "
    "(all but `answered_invitees`).",
)

SURVEYS_MESSAGE_TYPES: tuple[MessageType, ...] = (
    SURVEY_OPENED,
    SURVEY_CLOSED,
    RESULTS_PUBLISHED,
    RESPONDENT_VOLUNTEERED,
    SURVEY_CLOSING_SOON,
)

__all__ = [
    "RESPONDENT_VOLUNTEERED",
    "RESULTS_PUBLISHED",
    "SURVEYS_MESSAGE_TYPES",
    "SURVEY_CLOSED",
    "SURVEY_CLOSING_SOON",
    "SURVEY_OPENED",
    "RespondentVolunteered",
    "ResultsPublished",
    "SurveyClosed",
    "SurveyClosingSoon",
    "SurveyOpened",
]
