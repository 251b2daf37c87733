"""Use cases of the surveys service: each opens one transaction and writes rows + outbox."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff
from shared.contracts.age import AgeBand
from shared.contracts.ks import KsSlug
from shared.contracts.surveys import (
    RESPONDENT_VOLUNTEERED,
    RESULTS_PUBLISHED,
    SURVEY_CLOSED,
    SURVEY_CLOSING_SOON,
    SURVEY_OPENED,
    RespondentVolunteered,
    ResultsPublished,
    SurveyClosed,
    SurveyClosingSoon,
    SurveyOpened,
)
from shared.db import Database
from shared.invitations import read_invitation
from shared.models import utcnow
from shared.outbox import add_to_outbox
from shared.settings import Settings

from . import domain
from .domain import AnswersInvalid, SurveyDefinition
from .models import Answer, InvitationUsed, Option, Question, Response, Survey

SOURCE = "/kranj/surveys"
STATUSES = ("draft", "open", "closed")


class NotFound(Exception):
    pass


class Conflict(Exception):
    """Valid request, but the survey's state does not allow it (HTTP 409)."""


class InvitationInvalid(Exception):
    """The `invitation` token is forged, altered, or for another survey (HTTP 400)."""


class InvitationUsedAlready(Conflict):
    """This personal invitation has already answered the survey (HTTP 409)."""


class BrowserAnsweredAlready(Conflict):
    """This browser (its per-browser token) has already answered the survey (HTTP 409)."""


# ======================================================================================
# Wire models
# ======================================================================================
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
    show_if: domain.ShowIf | None = Field(
        default=None, description="Shown only when `question` was answered with `option`."
    )


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


# ======================================================================================
# Reading
# ======================================================================================
def survey_url(settings: Settings, survey_id: str) -> str:
    return f"{settings.public_base('surveys')}/surveys/{survey_id}"


async def _definition(session: AsyncSession, survey: Survey) -> SurveyDefinition:
    questions = (
        await session.exec(select(Question).where(Question.survey_id == survey.id).order_by(col(Question.position)))
    ).all()
    options = (
        await session.exec(select(Option).where(Option.survey_id == survey.id).order_by(col(Option.position)))
    ).all()
    by_question: dict[str, list[domain.OptionDef]] = {}
    for option in options:
        by_question.setdefault(option.question_id, []).append(
            domain.OptionDef.model_construct(id=option.id, text=option.text, text_en=option.text_en)
        )
    return SurveyDefinition.model_construct(
        ks=survey.ks,
        title=survey.title,
        description=survey.description,
        title_en=survey.title_en,
        description_en=survey.description_en,
        opens_at=survey.opens_at,
        closes_at=survey.closes_at,
        contact=survey.contact,
        questions=[
            domain.QuestionDef.model_construct(
                id=q.id,
                type=q.type,
                text=q.text,
                help=q.help,
                text_en=q.text_en,
                help_en=q.help_en,
                required=q.required,
                options=by_question.get(q.id, []),
                show_if=domain.ShowIf(**q.show_if) if q.show_if else None,
            )
            for q in questions
        ],
    )


async def load(db: Database, survey_id: str) -> tuple[Survey, SurveyDefinition]:
    async with db.session() as session:
        survey = await session.get(Survey, survey_id)
        if survey is None:
            raise NotFound(survey_id)
        definition = await _definition(session, survey)
    return survey, definition


def accepting(survey: Survey, now: datetime | None = None) -> bool:
    return domain.window_problem(survey.status, survey.opens_at, survey.closes_at, now or utcnow()) is None


def to_out(settings: Settings, survey: Survey, definition: SurveyDefinition | None = None) -> SurveyOut:
    questions = []
    for q in definition.questions if definition else []:
        questions.append(
            QuestionOut(
                id=q.id,
                type=q.type,
                text=q.text,
                help=q.help,
                text_en=q.text_en,
                help_en=q.help_en,
                required=q.required,
                options=[OptionOut(id=o.id, text=o.text, text_en=o.text_en) for o in q.options],
                min=domain.SCALE_MIN if q.type == "scale" else None,
                max=domain.SCALE_MAX if q.type == "scale" else None,
                show_if=q.show_if,
            )
        )
    return SurveyOut(
        id=survey.id,
        ks=survey.ks,
        title=survey.title,
        description=survey.description,
        title_en=survey.title_en,
        description_en=survey.description_en,
        status=survey.status,  # type: ignore[arg-type]
        accepting_answers=accepting(survey),
        opens_at=survey.opens_at,
        closes_at=survey.closes_at,
        created_at=survey.created_at,
        results_published=survey.results_published,
        contact=survey.contact,
        url=survey_url(settings, survey.id),
        questions=questions,
    )


async def list_open(db: Database, limit: int = 200) -> list[Survey]:
    now = utcnow()
    async with db.session() as session:
        query = select(Survey).where(Survey.status == "open").order_by(col(Survey.created_at).desc()).limit(limit)
        rows = (await session.exec(query)).all()
    return [s for s in rows if accepting(s, now)]


async def list_published(db: Database, limit: int = 200) -> list[Survey]:
    async with db.session() as session:
        query = select(Survey).where(col(Survey.results_published).is_(True)).order_by(col(Survey.created_at).desc())
        rows = (await session.exec(query.limit(limit))).all()
    return list(rows)


# ======================================================================================
# Staff: build, open, close, publish
# ======================================================================================
async def create_survey(
    db: Database, staff: Staff | None, definition: SurveyDefinition, *, template: str | None = None
) -> Survey:
    survey = Survey(
        ks=definition.ks,
        title=definition.title,
        description=definition.description,
        title_en=definition.title_en,
        description_en=definition.description_en,
        template=template,
        contact=definition.contact,
        opens_at=definition.opens_at,
        closes_at=definition.closes_at,
        created_by=staff.subject if staff else None,
    )
    async with db.session() as session:
        session.add(survey)
        await session.flush()
        for position, q in enumerate(definition.questions):
            session.add(
                Question(
                    survey_id=survey.id,
                    id=q.id,
                    position=position,
                    type=q.type,
                    text=q.text,
                    help=q.help,
                    text_en=q.text_en,
                    help_en=q.help_en,
                    required=q.required,
                    show_if=q.show_if.model_dump() if q.show_if else None,
                )
            )
        await session.flush()
        for q in definition.questions:
            for position, o in enumerate(q.options):
                session.add(
                    Option(
                        survey_id=survey.id,
                        question_id=q.id,
                        id=o.id,
                        position=position,
                        text=o.text,
                        text_en=o.text_en,
                    )
                )
        await session.commit()
    return survey


async def _locked(db: Database, session: AsyncSession, survey_id: str) -> Survey:
    query = select(Survey).where(Survey.id == survey_id)
    if not db.is_sqlite:
        query = query.with_for_update()
    survey = (await session.exec(query)).first()
    if survey is None:
        raise NotFound(survey_id)
    return survey


async def _count(session: AsyncSession, survey_id: str) -> int:
    return int((await session.exec(select(func.count()).where(Response.survey_id == survey_id))).one())


async def open_survey(db: Database, settings: Settings, survey_id: str) -> Survey:
    """draft -> open, and `surveys.survey.opened` in the same transaction. Opening an open
    survey changes nothing (safe to retry); a closed survey stays closed."""
    now = utcnow()
    async with db.session() as session:
        survey = await _locked(db, session, survey_id)
        if survey.status == "open":
            return survey
        if survey.status == "closed":
            raise Conflict(
                "Anketa je že zaprta in je ni mogoče znova odpreti. / The survey is closed; it cannot be reopened."
            )
        if survey.closes_at is not None and survey.closes_at <= now:
            raise Conflict("Čas za odgovore je že potekel (closes_at). / The closing time has already passed.")
        definition = await _definition(session, survey)
        survey.status = "open"
        survey.opened_at = now
        session.add(survey)
        add_to_outbox(
            session,
            SURVEY_OPENED,
            SurveyOpened(
                survey_id=survey.id,
                ks=survey.ks,
                title=survey.title,
                description=survey.description,
                url=survey_url(settings, survey.id),  # type: ignore[arg-type]
                print_url=f"{survey_url(settings, survey.id)}/print",  # type: ignore[arg-type]
                opens_at=survey.opens_at or now,
                closes_at=survey.closes_at,
                question_count=len(definition.questions),
            ),
            source=SOURCE,
            subject=survey.id,
        )
        await session.commit()
    return survey


async def close_survey(db: Database, settings: Settings, survey_id: str) -> Survey:
    """open -> closed, and `surveys.survey.closed`. Closing a closed survey changes nothing."""
    async with db.session() as session:
        survey = await _locked(db, session, survey_id)
        if survey.status == "closed":
            return survey
        if survey.status == "draft":
            raise Conflict("Anketa še ni bila odprta. / The survey was never opened.")
        await _close(session, settings, survey)
        await session.commit()
    return survey


async def _close(session: AsyncSession, settings: Settings, survey: Survey) -> None:
    now = utcnow()
    survey.status = "closed"
    survey.closed_at = now
    session.add(survey)
    add_to_outbox(
        session,
        SURVEY_CLOSED,
        SurveyClosed(
            survey_id=survey.id,
            ks=survey.ks,
            title=survey.title,
            url=survey_url(settings, survey.id),  # type: ignore[arg-type]
            closed_at=now,
            response_count=await _count(session, survey.id),
        ),
        source=SOURCE,
        subject=survey.id,
    )


async def close_due(db: Database, settings: Settings) -> int:
    """Close (and announce) every open survey whose closing time has passed."""
    now = utcnow()
    async with db.session() as session:
        query = select(Survey).where(Survey.status == "open", col(Survey.closes_at) <= now)
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        due = list((await session.exec(query)).all())
        for survey in due:
            await _close(session, settings, survey)
        await session.commit()
    return len(due)


async def publish_results(db: Database, settings: Settings, survey_id: str) -> Survey:
    async with db.session() as session:
        survey = await _locked(db, session, survey_id)
        if survey.results_published:
            return survey
        if survey.status == "draft":
            raise Conflict("Anketa še ni bila odprta, rezultatov ni. / The survey was never opened.")
        now = utcnow()
        survey.results_published = True
        survey.results_published_at = now
        session.add(survey)
        add_to_outbox(
            session,
            RESULTS_PUBLISHED,
            ResultsPublished(
                survey_id=survey.id,
                ks=survey.ks,
                title=survey.title,
                url=f"{survey_url(settings, survey.id)}/results",  # type: ignore[arg-type]
                published_at=now,
                response_count=await _count(session, survey.id),
            ),
            source=SOURCE,
            subject=survey.id,
        )
        await session.commit()
    return survey


# ======================================================================================
# Residents: answering
# ======================================================================================
async def submit_response(
    db: Database,
    settings: Settings,
    survey_id: str,
    body: ResponseIn,
    *,
    address: str | None,
    browser: str | None = None,
    staff: Staff | None = None,
) -> Response:
    """Validate and store one anonymous response; a take-part consent becomes a
    `surveys.respondent.volunteered` message in the same transaction.

    With a personal `invitation`: the token must be genuine and for this survey
    (InvitationInvalid, 400), and answers once (InvitationUsedAlready, 409). The used
    invitation is stored apart from the response.

    Without one, a web answer is tied to its per-browser token (`browser`, the form's
    cookie) when it carries a genuine one: one answer per browser (BrowserAnsweredAlready,
    409). No number of answers per address is refused here (a school class shares one
    address, issue 15): the address's keyed hash is kept so staff see clusters of answers
    (`answer_clusters`); floods are stopped by the per-address rate limit.

    Raises NotFound, Conflict (outside the window), AnswersInvalid (422)."""
    now = utcnow()
    paper = body.channel == "paper"
    invitee = None
    if body.invitation is not None:
        invitee = invitee_of(settings, survey_id, body.invitation)
    async with db.session() as session:
        survey = await _locked(db, session, survey_id)
        problem = domain.window_problem(survey.status, survey.opens_at, survey.closes_at, now)
        # Paper answers collected while the survey was open may be entered after it closed.
        if problem and not (paper and survey.status == "closed"):
            raise Conflict(problem)
        definition = await _definition(session, survey)
        answers = domain.validate_answers(definition, body.answers)
        if body.contact is not None and not survey.contact:
            raise AnswersInvalid(
                [domain.AnswerError("contact", "ta anketa ne zbira kontaktov", "this survey takes no contact details")]
            )
        if invitee is not None and await invitation_used(session, survey.id, invitee):
            raise InvitationUsedAlready(ALREADY_ANSWERED)
        fingerprint = browser_print = None
        if not paper and invitee is None:
            if address:
                fingerprint = domain.address_fingerprint(settings.signing_key(), survey.id, address)
            browser_print = domain.browser_fingerprint(settings.signing_key(), survey.id, browser)
            if browser_print is not None and await _browser_answered(session, survey.id, browser_print):
                raise BrowserAnsweredAlready(BROWSER_ANSWERED)
        response = Response(
            survey_id=survey.id,
            age_band=body.age_band,
            ks=body.ks or (survey.ks if survey.ks != "*" else None),
            channel=body.channel,
            created_at=now,
            fingerprint=fingerprint,
            browser=browser_print,
            entered_by=staff.subject if (paper and staff) else None,
        )
        session.add(response)
        await session.flush()
        for question_id, value in answers.items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                q = definition.question(question_id)
                assert q is not None
                session.add(
                    Answer(
                        response_id=response.id,
                        survey_id=survey.id,
                        question_id=question_id,
                        option_id=str(item) if q.type in ("single", "multiple") else None,
                        number=int(item) if q.type == "scale" else None,
                        text=str(item) if q.type == "text" else None,
                    )
                )
        if body.contact is not None:
            contact = body.contact
            add_to_outbox(
                session,
                RESPONDENT_VOLUNTEERED,
                RespondentVolunteered(
                    survey_id=survey.id,
                    survey_title=survey.title,
                    ks=response.ks or survey.ks,
                    name=contact.name,
                    email=contact.email,
                    phone=contact.phone,
                    channels=[c for c, v in (("email", contact.email), ("sms", contact.phone)) if v],  # type: ignore[misc]
                    language=contact.language,
                    consent_text=domain.consent_text(contact.language),
                    consent_at=now,
                    consent_source=body.channel,
                ),
                source=SOURCE,
                subject=survey.id,
            )
        if invitee is not None:
            # Deliberately not linked to `response` (no response id; the day only): anonymous answers.
            session.add(InvitationUsed(survey_id=survey.id, invitee=invitee, used_at=_day(now)))
        try:
            await session.commit()
        except IntegrityError:  # the same invitation (or browser), answering twice at the same moment
            await session.rollback()
            if invitee is None:
                raise BrowserAnsweredAlready(BROWSER_ANSWERED) from None
            raise InvitationUsedAlready(ALREADY_ANSWERED) from None
    return response


async def _browser_answered(session: AsyncSession, survey_id: str, browser_print: str) -> bool:
    found = await session.exec(
        select(Response.id).where(Response.survey_id == survey_id, Response.browser == browser_print).limit(1)
    )
    return found.first() is not None


BROWSER_ANSWERED = (
    "Iz tega brskalnika je bil na to anketo že oddan odgovor. Hvala! Če ste isti računalnik ali telefon uporabili "
    "za več članov gospodinjstva, lahko drugi odgovorijo na svoji napravi ali na papirju v prostorih KS. "
    "/ This browser has already answered this survey."
)


async def answer_clusters(db: Database, survey_id: str, threshold: int) -> list[domain.Cluster]:
    """Suspicious clusters of web answers: many from one address in 10 minutes (domain.answer_clusters)."""
    async with db.session() as session:
        rows = (
            await session.exec(
                select(Response.fingerprint, Response.created_at, Response.browser).where(
                    Response.survey_id == survey_id, Response.channel == "web"
                )
            )
        ).all()
    return domain.answer_clusters([(fp, at, browser is not None) for fp, at, browser in rows], threshold)


ALREADY_ANSWERED = (
    "S tem osebnim vabilom ste na anketo že odgovorili. Hvala! / You have already answered with this invitation."
)
INVITATION_INVALID = (
    "Povezava do ankete ni veljavna (morda je nepopolna ali velja za drugo anketo). Anketo lahko izpolnite "
    "brez nje na /surveys/{id}. / The invitation link is not valid for this survey."
)


def invitee_of(settings: Settings, survey_id: str, token: str) -> str:
    """The invitee of a genuine invitation to `survey_id`; else InvitationInvalid."""
    read = read_invitation(settings, token)
    if read is None or read[0] != survey_id:
        raise InvitationInvalid(INVITATION_INVALID.format(id=survey_id))
    return read[1]


async def invitation_used(session: AsyncSession, survey_id: str, invitee: str) -> bool:
    return await session.get(InvitationUsed, (survey_id, invitee)) is not None


async def is_invitation_used(db: Database, survey_id: str, invitee: str) -> bool:
    async with db.session() as session:
        return await invitation_used(session, survey_id, invitee)


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


# ======================================================================================
# Reminder before closing
# ======================================================================================
async def remind_closing_soon(
    db: Database,
    settings: Settings,
    *,
    hours_before: float = 48.0,
    not_within_hours_of_opening: float = 24.0,
    now: datetime | None = None,
) -> int:
    """Announce `surveys.survey.closing-soon` for every open survey that closes within
    `hours_before` hours, once per survey even with several replicas running this at the
    same moment: the claim is `UPDATE … SET reminder_sent_at WHERE reminder_sent_at IS NULL`
    in the same transaction as the outbox row, so exactly one transaction wins it.
    A survey opened less than `not_within_hours_of_opening` hours ago is not reminded yet
    (its invitation is still fresh). Returns how many reminders this call announced."""
    now = now or utcnow()
    horizon = now + timedelta(hours=hours_before)
    async with db.session() as session:
        query = select(Survey.id, Survey.opened_at, Survey.opens_at).where(
            Survey.status == "open",
            col(Survey.reminder_sent_at).is_(None),
            col(Survey.closes_at).is_not(None),
            col(Survey.closes_at) > now,
            col(Survey.closes_at) <= horizon,
        )
        candidates = (await session.exec(query)).all()
    announced = 0
    for survey_id, opened_at, opens_at in candidates:
        started = max([t for t in (opened_at, opens_at) if t is not None], default=None)
        if started is not None and started > now - timedelta(hours=not_within_hours_of_opening):
            continue
        async with db.session() as session:
            claim = await session.exec(
                update(Survey)
                .where(
                    col(Survey.id) == survey_id, col(Survey.reminder_sent_at).is_(None), col(Survey.status) == "open"
                )
                .values(reminder_sent_at=now)
            )
            if claim.rowcount != 1:  # another replica (or an earlier run) has it
                await session.rollback()
                continue
            survey = await session.get(Survey, survey_id)
            assert survey is not None and survey.closes_at is not None
            answered = (
                await session.exec(
                    select(InvitationUsed.invitee)
                    .where(InvitationUsed.survey_id == survey_id)
                    .order_by(col(InvitationUsed.invitee))
                )
            ).all()
            add_to_outbox(
                session,
                SURVEY_CLOSING_SOON,
                SurveyClosingSoon(
                    survey_id=survey.id,
                    ks=survey.ks,
                    title=survey.title,
                    url=survey_url(settings, survey.id),  # type: ignore[arg-type]
                    print_url=f"{survey_url(settings, survey.id)}/print",  # type: ignore[arg-type]
                    closes_at=survey.closes_at,
                    response_count=await _count(session, survey.id),
                    answered_invitees=list(answered),
                ),
                source=SOURCE,
                subject=survey.id,
            )
            await session.commit()
            announced += 1
    return announced


# ======================================================================================
# Results
# ======================================================================================
async def results(db: Database, survey_id: str) -> tuple[Survey, SurveyDefinition, domain.Results]:
    async with db.session() as session:
        survey = await session.get(Survey, survey_id)
        if survey is None:
            raise NotFound(survey_id)
        definition = await _definition(session, survey)
        responses = (await session.exec(select(Response).where(Response.survey_id == survey_id))).all()
        answers = (await session.exec(select(Answer).where(Answer.survey_id == survey_id))).all()
    types = {q.id: q.type for q in definition.questions}
    by_response: dict[str, dict[str, Any]] = {r.id: {} for r in responses}
    for a in answers:
        given = by_response.setdefault(a.response_id, {})
        kind = types.get(a.question_id)
        if kind == "multiple":
            given.setdefault(a.question_id, []).append(a.option_id)
        elif kind == "single":
            given[a.question_id] = a.option_id
        elif kind == "scale":
            given[a.question_id] = a.number
        elif kind == "text":
            given[a.question_id] = a.text
    data = [
        domain.ResponseData(answers=by_response[r.id], age_band=r.age_band, ks=r.ks, channel=r.channel)
        for r in sorted(responses, key=lambda r: r.created_at)
    ]
    return survey, definition, domain.compute_results(definition, data)
