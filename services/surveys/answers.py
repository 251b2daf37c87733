"""surveys: answering — a resident's (or a paper) response, checked and stored anonymously,
with a volunteer's contact passed on to notify in the same transaction; the personal
invitations and the one-answer-per-browser limit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff
from shared.contracts.surveys import RESPONDENT_VOLUNTEERED, RespondentVolunteered
from shared.db import Database
from shared.errors import Bilingual, Refused
from shared.invitations import read_invitation
from shared.models import utcnow
from shared.outbox import add_to_outbox
from shared.settings import Settings

from . import domain, needs
from .domain import AnswersInvalid
from .models import Answer, InvitationUsed, Response
from .schemas import ResponseIn
from .surveys import SOURCE, Conflict, definition_of, locked


class InvitationInvalid(Refused):
    """The `invitation` token is forged, altered, or for another survey (HTTP 400)."""

    status = 400


class InvitationUsedAlready(Conflict):
    """This personal invitation has already answered the survey (HTTP 409)."""


class BrowserAnsweredAlready(Conflict):
    """This browser (its per-browser token) has already answered the survey (HTTP 409)."""


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
        survey = await locked(db, session, survey_id)
        problem = domain.window_problem(survey.status, survey.opens_at, survey.closes_at, now)
        # Paper answers collected while the survey was open may be entered after it closed.
        if problem and not (paper and survey.status == "closed"):
            raise Conflict(problem)
        definition = await definition_of(session, survey)
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
                    channels=[c for c, v in (("email", contact.email), ("sms", contact.phone)) if v],
                    language=contact.language,
                    consent_text=needs.consent_text(contact.language),
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


BROWSER_ANSWERED = Bilingual(
    "Iz tega brskalnika je bil na to anketo že oddan odgovor. Hvala! Če ste isti računalnik ali telefon uporabili "
    "za več članov gospodinjstva, lahko drugi odgovorijo na svoji napravi ali na papirju v prostorih KS.",
    "This browser has already answered this survey.",
)


ALREADY_ANSWERED = Bilingual(
    "S tem osebnim vabilom ste na anketo že odgovorili. Hvala!", "You have already answered with this invitation."
)


def invitation_invalid(survey_id: str) -> Bilingual:
    return Bilingual(
        "Povezava do ankete ni veljavna (morda je nepopolna ali velja za drugo anketo). Anketo lahko izpolnite "
        f"brez nje na /surveys/{survey_id}.",
        "The invitation link is not valid for this survey.",
    )


def invitee_of(settings: Settings, survey_id: str, token: str) -> str:
    """The invitee of a genuine invitation to `survey_id`; else InvitationInvalid."""
    read = read_invitation(settings, token)
    if read is None or read[0] != survey_id:
        raise InvitationInvalid(invitation_invalid(survey_id))
    return read[1]


async def invitation_used(session: AsyncSession, survey_id: str, invitee: str) -> bool:
    return await session.get(InvitationUsed, (survey_id, invitee)) is not None


async def is_invitation_used(db: Database, survey_id: str, invitee: str) -> bool:
    async with db.session() as session:
        return await invitation_used(session, survey_id, invitee)


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)
