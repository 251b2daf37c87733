"""surveys: the HTTP API's models (the bus messages are the contracts in shared/contracts/)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import phonenumbers
from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from shared.contracts.age import AgeBand
from shared.contracts.ks import KsOrAll, KsSlug

from .domain import ShowIf


class OptionOut(BaseModel):
    id: str
    text: str
    text_en: str | None = Field(default=None, description="English text, where the survey has one.")


class QuestionOut(BaseModel):
    id: str
    type: Literal["single", "multiple", "scale", "text"]
    text: str
    help: str = ""
    text_en: str | None = Field(default=None, description="English text, where the survey has one.")
    help_en: str | None = None
    required: bool
    options: list[OptionOut] = Field(default_factory=list, description="For single and multiple questions.")
    min: int | None = Field(default=None, description="Scale questions: 1.")
    max: int | None = Field(default=None, description="Scale questions: 5.")
    show_if: ShowIf | None = Field(default=None, description="Shown only when `question` was answered with `option`.")


class SurveyOut(BaseModel):
    id: str
    ks: str = Field(description='KS slug, or "*" for a city-wide survey.')
    title: str
    description: str = ""
    title_en: str | None = None
    description_en: str | None = None
    status: Literal["draft", "open", "closed"]
    accepting_answers: bool = Field(description="Open, and inside its opening and closing times.")
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    created_at: datetime
    results_published: bool = False
    contact: bool = Field(default=False, description="Respondents may leave contact details to take part.")
    url: str = Field(description="The public form.")
    questions: list[QuestionOut] = Field(
        default_factory=list,
        description="Each with `id`, `type` (single, multiple, scale, text), `text` and, for choices, `options`.",
    )


class Created(BaseModel):
    id: str
    status: str
    url: str


class ContactIn(BaseModel):
    """Who would like to take part and be contacted (PERSONAL DATA: sent to notify only)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=30, description="Slovenian or E.164; stored as E.164.")
    language: Literal["sl", "en"] = "sl"
    consent: bool = Field(default=False, description="Agrees to `consent_text` of the survey (must be true).")

    @field_validator("name", "phone", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("email", mode="before")
    @classmethod
    def _empty_email(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            number = phonenumbers.parse(value, "SI")
        except phonenumbers.NumberParseException:
            raise ValueError("ni veljavna telefonska številka / not a phone number") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError("ni veljavna telefonska številka / not a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    @model_validator(mode="after")
    def _complete(self) -> ContactIn:
        if not self.email and not self.phone:
            raise ValueError("vpišite e-naslov ali telefon / give an email or a phone")
        if not self.consent:
            raise ValueError("potrebna je privolitev (consent: true) / consent is required")
        return self


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answers: dict[str, Any] = Field(
        description="Question id -> option id (single) | [option ids] (multiple) | 1–5 (scale) | text."
    )
    age_band: AgeBand | None = Field(
        default=None,
        description="Optional: 15-29, 30-49, 50-64 or 65+ (the contract's bands), or 0-14 (children; a compatible "
        "extension: the platform's one set of age bands, shared with events attendance).",
    )
    ks: KsSlug | None = Field(default=None, description="Optional: the respondent's KS (default: the survey's KS).")
    contact: ContactIn | None = Field(
        default=None,
        description="Optional: to take part / be contacted; needs `consent: true` (surveys with `contact`).",
    )
    channel: Literal["web", "paper"] = Field(
        default="web", description="`paper` (staff only): a paper answer entered on behalf."
    )
    invitation: str | None = Field(
        default=None,
        max_length=1000,
        description=(
            "Optional: the `t` of a personal invitation link (`/surveys/{id}?t=…`). Each invitation answers "
            "once (409 the second time); a forged one, or one for another survey, is refused with 400. "
            "Without it, the per-address limit applies."
        ),
    )


class ResponseCreated(BaseModel):
    id: str
    survey_id: str
    channel: str
    volunteered: bool


class TemplateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    template: Literal["needs-assessment"]
    ks: KsOrAll
    title: str | None = Field(
        default=None, max_length=200, description="Default: the template's title with the KS name."
    )
    opens_at: AwareDatetime | None = None
    closes_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _check(self) -> TemplateRequest:
        if self.opens_at and self.closes_at and self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        return self


class OptionResultOut(BaseModel):
    id: str
    text: str
    count: int
    percent: float = Field(description="Of the respondents who answered this question.")
    by_age_band: dict[str, int]
    by_ks: dict[str, int]


class QuestionResultOut(BaseModel):
    id: str
    type: str
    text: str
    answered: int
    answered_by_age_band: dict[str, int]
    options: list[OptionResultOut] = Field(description="Choices; for scale questions the values 1–5.")
    mean: float | None = Field(default=None, description="Scale questions only.")
    texts: list[str] = Field(default_factory=list, description="Text questions: every answer given.")


class ClusterOut(BaseModel):
    address: str = Field(description="A keyed hash of the network address, shortened: never the address itself.")
    window_start: datetime = Field(description="Start of the 10-minute window.")
    count: int = Field(description="Web answers from this address in the window.")
    without_browser: int = Field(description="Of them, answers that carried no per-browser token (no form cookie).")
    flagged: bool = Field(
        description="More than KRANJ_SURVEYS_CLUSTER_THRESHOLD answers, or several without a browser token."
    )


class ResultsOut(BaseModel):
    survey_id: str
    title: str
    ks: str
    status: str
    results_published: bool
    response_count: int
    by_age_band: dict[str, int] = Field(
        description='Respondents per age band (the platform bands 0-14, 15-29, 30-49, 50-64, 65+; "unknown": not given).'
    )
    by_ks: dict[str, int]
    by_channel: dict[str, int]
    questions: list[QuestionResultOut]
    suspicious_clusters: list[ClusterOut] = Field(
        default_factory=list,
        description="Web answers from one address within 10 minutes (more than one), busiest first; `flagged` where "
        "they may be ballot stuffing. Nothing is refused for it: staff judge (a school class is a cluster too).",
    )
