"""surveys: the surveys themselves — reading them, staff building, opening, closing and
publishing them, closing the due ones and the reminder before closing. Each use case opens
one transaction and writes rows and outbox messages together."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlmodel import col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff
from shared.contracts.surveys import (
    RESULTS_PUBLISHED,
    SURVEY_CLOSED,
    SURVEY_CLOSING_SOON,
    SURVEY_OPENED,
    ResultsPublished,
    SurveyClosed,
    SurveyClosingSoon,
    SurveyOpened,
)
from shared.db import Database
from shared.errors import Bilingual, Refused
from shared.models import utcnow
from shared.outbox import add_to_outbox
from shared.settings import Settings

from . import domain
from .domain import SurveyDefinition
from .models import InvitationUsed, Option, Question, Response, Survey
from .schemas import OptionOut, QuestionOut, SurveyOut

SOURCE = "/kranj/surveys"
STATUSES = ("draft", "open", "closed")


class NotFound(Exception):
    pass


class Conflict(Refused):
    """Valid request, but the survey's state does not allow it (HTTP 409)."""


# ======================================================================================
# Reading
# ======================================================================================
def survey_url(settings: Settings, survey_id: str) -> str:
    return f"{settings.public_base('surveys')}/surveys/{survey_id}"


async def definition_of(session: AsyncSession, survey: Survey) -> SurveyDefinition:
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
                type=cast("domain.QuestionType", q.type),
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
        definition = await definition_of(session, survey)
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
        status=survey.status,
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
        await write_questions(session, survey.id, definition)
        await session.commit()
    return survey


async def write_questions(session: AsyncSession, survey_id: str, definition: SurveyDefinition) -> None:
    """The definition's questions and options as rows of `survey_id` (in their order)."""
    for position, q in enumerate(definition.questions):
        session.add(
            Question(
                survey_id=survey_id,
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
                    survey_id=survey_id, question_id=q.id, id=o.id, position=position, text=o.text, text_en=o.text_en
                )
            )


async def locked(db: Database, session: AsyncSession, survey_id: str) -> Survey:
    query = select(Survey).where(Survey.id == survey_id)
    if not db.is_sqlite:
        query = query.with_for_update()
    survey = (await session.exec(query)).first()
    if survey is None:
        raise NotFound(survey_id)
    return survey


async def response_count(session: AsyncSession, survey_id: str) -> int:
    return int((await session.exec(select(func.count()).where(Response.survey_id == survey_id))).one())


async def open_survey(db: Database, settings: Settings, survey_id: str) -> Survey:
    """draft -> open, and `surveys.survey.opened` in the same transaction. Opening an open
    survey changes nothing (safe to retry); a closed survey stays closed."""
    now = utcnow()
    async with db.session() as session:
        survey = await locked(db, session, survey_id)
        if survey.status == "open":
            return survey
        if survey.status == "closed":
            raise Conflict(
                Bilingual(
                    "Anketa je že zaprta in je ni mogoče znova odpreti.", "The survey is closed; it cannot be reopened."
                )
            )
        if survey.closes_at is not None and survey.closes_at <= now:
            raise Conflict(
                Bilingual("Čas za odgovore je že potekel (closes_at).", "The closing time has already passed.")
            )
        definition = await definition_of(session, survey)
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
                url=survey_url(settings, survey.id),
                print_url=f"{survey_url(settings, survey.id)}/print",
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
        survey = await locked(db, session, survey_id)
        if survey.status == "closed":
            return survey
        if survey.status == "draft":
            raise Conflict(Bilingual("Anketa še ni bila odprta.", "The survey was never opened."))
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
            url=survey_url(settings, survey.id),
            closed_at=now,
            response_count=await response_count(session, survey.id),
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
        survey = await locked(db, session, survey_id)
        if survey.results_published:
            return survey
        if survey.status == "draft":
            raise Conflict(Bilingual("Anketa še ni bila odprta, rezultatov ni.", "The survey was never opened."))
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
                url=f"{survey_url(settings, survey.id)}/results",
                published_at=now,
                response_count=await response_count(session, survey.id),
            ),
            source=SOURCE,
            subject=survey.id,
        )
        await session.commit()
    return survey


# ======================================================================================
# The reminder before closing
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
                    url=survey_url(settings, survey.id),
                    print_url=f"{survey_url(settings, survey.id)}/print",
                    closes_at=survey.closes_at,
                    response_count=await response_count(session, survey.id),
                    answered_invitees=list(answered),
                ),
                source=SOURCE,
                subject=survey.id,
            )
            await session.commit()
            announced += 1
    return announced
