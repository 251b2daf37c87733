"""surveys: the request helpers the JSON API (api.py) and the HTML pages (pages.py) share —
the service's context, its configuration, a survey or its results by id (404 when there is
none), and storing one response with the use cases' refusals turned into HTTP errors."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request, status

from shared.auth import Record, Staff
from shared.contracts import ks_name
from shared.i18n import format_date
from shared.web import ServiceApp
from shared.web.ratelimit import survey_browser_cookie
from shared.web.share import Share, share

from . import answers, domain, results, tally
from .config import SurveysConfig
from .domain import AnswersInvalid, SurveyDefinition
from .schemas import ResponseIn
from .surveys import Conflict, NotFound, load

NOT_FOUND = "Ankete ni. / No such survey."


def service_app(request: Request) -> ServiceApp:
    return request.app.state.ctx


def survey_share(ctx: ServiceApp, survey: Any) -> Share:
    """The survey's link preview (Viber, WhatsApp, Facebook): its title, whose survey it is
    and until when it is open."""
    whose = "vse Mestne občine Kranj" if survey.ks == "*" else f"KS {ks_name(survey.ks)}"
    until = f" · odprta do {format_date(survey.closes_at)}" if survey.closes_at else ""
    line = f"Anketa {whose}{until}"
    return share(
        ctx.settings,
        "surveys",
        f"/surveys/{survey.id}",
        kind="survey",
        title=survey.title,
        description=f"{line}. {survey.description}" if survey.description else line,
    )


def config_of(ctx: ServiceApp) -> SurveysConfig:
    return ctx.extra["config"]


async def survey_or_404(ctx: ServiceApp, survey_id: str) -> tuple[Any, SurveyDefinition]:
    try:
        return await load(ctx.db, survey_id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None


async def results_or_404(ctx: ServiceApp, survey_id: str) -> tuple[Any, SurveyDefinition, tally.Results]:
    try:
        return await results.results(ctx.db, survey_id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None


async def survey_record(request: Request) -> Record:
    """A survey for the permission table (shared/permissions.py): its KS and who created it."""
    survey, _definition = await survey_or_404(service_app(request), request.path_params["survey_id"])
    return Record(ks=survey.ks, owner=survey.created_by)


def unprocessable(errors: list[domain.AnswerError]) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "; ".join(e.line() for e in errors))


async def submit(
    ctx: ServiceApp, request: Request, survey_id: str, body: ResponseIn, staff: Staff | None, *, raw: bool = False
) -> Any:
    """Store one response; service errors become HTTP errors (AnswersInvalid kept when `raw`)."""
    try:
        return await answers.submit_response(
            ctx.db,
            ctx.settings,
            survey_id,
            body,
            address=request.client.host if request.client else None,
            browser=request.cookies.get(survey_browser_cookie(survey_id)),
            staff=staff,
        )
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None
    except answers.InvitationInvalid as exc:
        if raw:
            raise
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except (answers.InvitationUsedAlready, answers.BrowserAnsweredAlready) as exc:
        if raw:
            raise
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except AnswersInvalid as exc:
        if raw:
            raise
        raise unprocessable(exc.errors) from None
