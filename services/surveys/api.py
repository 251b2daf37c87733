"""HTTP surface of surveys: staff and resident API, public pages and staff pages
(thin: translate the wire format, call the service)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, Field

from shared.auth import Grant, MaybeStaff, Permit, Record, Staff, authorize, current_staff
from shared.web import ServiceApp
from shared.web.ratelimit import RATE_LIMITED, rate_limit, survey_browser_cookie

from . import domain, service
from .config import SurveysConfig
from .domain import AnswersInvalid, SurveyDefinition, TemplateRequest
from .service import Created, ResponseCreated, ResponseIn, SurveyOut

api = APIRouter(prefix="/api/v1", tags=["surveys"])

NOT_FOUND = "Ankete ni. / No such survey."


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _config(ctx: ServiceApp) -> SurveysConfig:
    return ctx.extra["config"]  # type: ignore[no-any-return]


def _staff_or_none(request: Request) -> Staff | None:
    try:
        return current_staff(request)
    except HTTPException:
        return None


async def _load(ctx: ServiceApp, survey_id: str) -> tuple[Any, SurveyDefinition]:
    try:
        return await service.load(ctx.db, survey_id)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None


async def survey_record(request: Request) -> Record:
    """A survey for the permission table (shared/permissions.py): its KS."""
    survey, _definition = await _load(_ctx(request), request.path_params["survey_id"])
    return Record(ks=survey.ks, owner=survey.created_by)


Create = Annotated[Grant, Permit("surveys.create")]
Manage = Annotated[Grant, Permit("surveys.manage", record=survey_record)]
ResultsRead = Annotated[Grant, Permit("surveys.results.read", record=survey_record)]


def _unprocessable(errors: list[domain.AnswerError]) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "; ".join(e.line() for e in errors))


# ======================================================================================
# API
# ======================================================================================
@api.post(
    "/surveys",
    status_code=status.HTTP_201_CREATED,
    response_model=Created,
    summary="Create a draft survey from a template or a full definition (staff)",
)
async def create_survey(
    request: Request,
    staff: Create,
    body: Annotated[
        TemplateRequest | SurveyDefinition,
        Body(
            openapi_examples={
                "template": {
                    "summary": "The needs-assessment template",
                    "value": {"template": "needs-assessment", "ks": "primskovo"},
                }
            }
        ),
    ],
) -> Created:
    ctx = _ctx(request)
    staff.require(None, body.ks)
    if isinstance(body, TemplateRequest):
        definition = domain.needs_assessment(body.ks, title=body.title, opens_at=body.opens_at, closes_at=body.closes_at)
        survey = await service.create_survey(ctx.db, staff, definition, template=body.template)
    else:
        survey = await service.create_survey(ctx.db, staff, body)
    return Created(id=survey.id, status=survey.status, url=service.survey_url(ctx.settings, survey.id))


@api.get("/surveys", response_model=list[SurveyOut], summary="Surveys taking answers now")
async def list_surveys(request: Request) -> list[SurveyOut]:
    ctx = _ctx(request)
    return [service.to_out(ctx.settings, s) for s in await service.list_open(ctx.db)]


@api.get(
    "/surveys/{survey_id}",
    response_model=SurveyOut,
    summary="One survey with its questions (a draft needs a staff token allowed `surveys.drafts.read` on it)",
    responses={
        401: {"description": "A draft, and no staff token."},
        403: {"description": "A draft, and the staff token may not read it (another KS)."},
    },
)
async def get_survey(
    survey_id: str, request: Request, staff: Annotated[Staff | None, MaybeStaff("surveys.drafts.read")]
) -> SurveyOut:
    ctx = _ctx(request)
    survey, definition = await _load(ctx, survey_id)
    if survey.status == "draft":
        authorize(staff or current_staff(request), "surveys.drafts.read", Record(ks=survey.ks, owner=survey.created_by))
    return service.to_out(ctx.settings, survey, definition)


async def _staff_action(request: Request, staff: Staff, survey_id: str, action: Any) -> SurveyOut:
    ctx = _ctx(request)
    try:
        await action(ctx.db, ctx.settings, survey_id)
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    survey, definition = await _load(ctx, survey_id)
    return service.to_out(ctx.settings, survey, definition)


@api.post(
    "/surveys/{survey_id}/open",
    response_model=SurveyOut,
    summary="Open for answers; announces surveys.survey.opened (staff)",
    responses={409: {"description": "Not possible in the survey's present state (e.g. opening a closed survey)."}},
)
async def open_survey(survey_id: str, request: Request, staff: Manage) -> SurveyOut:
    return await _staff_action(request, staff, survey_id, service.open_survey)


@api.post(
    "/surveys/{survey_id}/close",
    response_model=SurveyOut,
    summary="Stop taking answers; announces surveys.survey.closed (staff)",
    responses={409: {"description": "Not possible in the survey's present state (e.g. opening a closed survey)."}},
)
async def close_survey(survey_id: str, request: Request, staff: Manage) -> SurveyOut:
    return await _staff_action(request, staff, survey_id, service.close_survey)


@api.post(
    "/surveys/{survey_id}/results/publish",
    response_model=SurveyOut,
    summary="Show the results (no free text) on the public page; announces surveys.results.published (staff)",
    responses={409: {"description": "Not possible in the survey's present state (e.g. opening a closed survey)."}},
)
async def publish_results(survey_id: str, request: Request, staff: Manage) -> SurveyOut:
    return await _staff_action(request, staff, survey_id, service.publish_results)


@api.post(
    "/surveys/{survey_id}/responses",
    status_code=status.HTTP_201_CREATED,
    response_model=ResponseCreated,
    summary="Answer a survey (resident, no token); staff enter paper answers with channel=paper",
    responses={
        400: {"description": "The `invitation` is forged, altered, or for another survey."},
        401: {"description": "`channel: paper` without a staff token."},
        403: {"description": "`channel: paper` with a staff token that may not enter paper answers here."},
        422: {"description": "Says which question is wrong."},
        409: {
            "description": "The survey is not open (yet, or any more), this invitation has already answered, "
            "or this browser (its per-browser token, cookie `kzv_brskalnik_<survey>`) has already answered."
        },
        429: {
            **RATE_LIMITED,
            "description": "Too many answers from this browser, or a flood from one address (default 120 a minute, "
            "600 an hour): wait `Retry-After` seconds.",
        },
    },
    dependencies=[rate_limit("survey_answer")],
)
async def answer(
    survey_id: str,
    body: ResponseIn,
    request: Request,
    paper_staff: Annotated[Staff | None, MaybeStaff("surveys.responses.paper")],
) -> ResponseCreated:
    ctx = _ctx(request)
    staff = None
    if body.channel == "paper":
        survey, _ = await _load(ctx, survey_id)
        staff = authorize(paper_staff or current_staff(request), "surveys.responses.paper", Record(ks=survey.ks))
    response = await _submit(ctx, request, survey_id, body, staff)
    return ResponseCreated(
        id=response.id, survey_id=survey_id, channel=response.channel, volunteered=body.contact is not None
    )


async def _submit(
    ctx: ServiceApp, request: Request, survey_id: str, body: ResponseIn, staff: Staff | None, *, raw: bool = False
) -> Any:
    """Store one response; service errors become HTTP errors (AnswersInvalid kept when `raw`)."""
    try:
        return await service.submit_response(
            ctx.db,
            ctx.settings,
            survey_id,
            body,
            address=request.client.host if request.client else None,
            browser=request.cookies.get(survey_browser_cookie(survey_id)),
            staff=staff,
        )
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None
    except service.InvitationInvalid as exc:
        if raw:
            raise
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except (service.InvitationUsedAlready, service.BrowserAnsweredAlready) as exc:
        if raw:
            raise
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except AnswersInvalid as exc:
        if raw:
            raise
        raise _unprocessable(exc.errors) from None


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
    flagged: bool = Field(description="More than KRANJ_SURVEYS_CLUSTER_THRESHOLD answers, or several without a browser token.")


class ResultsOut(BaseModel):
    survey_id: str
    title: str
    ks: str
    status: str
    results_published: bool
    response_count: int
    by_age_band: dict[str, int] = Field(description='Respondents per age band (the platform bands 0-14, 15-29, 30-49, 50-64, 65+; "unknown": not given).')
    by_ks: dict[str, int]
    by_channel: dict[str, int]
    questions: list[QuestionResultOut]
    suspicious_clusters: list[ClusterOut] = Field(
        default_factory=list,
        description="Web answers from one address within 10 minutes (more than one), busiest first; `flagged` where "
        "they may be ballot stuffing. Nothing is refused for it: staff judge (a school class is a cluster too).",
    )


def _results_out(survey: Any, results: domain.Results, clusters: list[domain.Cluster] = ()) -> ResultsOut:  # type: ignore[assignment]
    return ResultsOut(
        suspicious_clusters=[ClusterOut(**vars(c)) for c in clusters],
        survey_id=survey.id,
        title=survey.title,
        ks=survey.ks,
        status=survey.status,
        results_published=survey.results_published,
        response_count=results.response_count,
        by_age_band=results.by_age_band,
        by_ks=results.by_ks,
        by_channel=results.by_channel,
        questions=[
            QuestionResultOut(
                id=q.id,
                type=q.type,
                text=q.text,
                answered=q.answered,
                answered_by_age_band=q.answered_by_age_band,
                options=[OptionResultOut(**vars(o)) for o in q.options],
                mean=q.mean,
                texts=q.texts,
            )
            for q in results.questions
        ],
    )


async def _results(ctx: ServiceApp, survey_id: str) -> tuple[Any, SurveyDefinition, domain.Results]:
    try:
        return await service.results(ctx.db, survey_id)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None


@api.get("/surveys/{survey_id}/results", response_model=ResultsOut, summary="Counts, percentages, splits, free text (staff)")
async def get_results(survey_id: str, request: Request, staff: ResultsRead) -> ResultsOut:
    ctx = _ctx(request)
    survey, _definition, results = await _results(ctx, survey_id)
    clusters = await service.answer_clusters(ctx.db, survey_id, _config(ctx).cluster_threshold)
    return _results_out(survey, results, clusters)


@api.get(
    "/surveys/{survey_id}/results.csv",
    summary="Results as CSV for a Slovenian spreadsheet: UTF-8 with BOM, `;`, decimal comma (staff)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def get_results_csv(survey_id: str, request: Request, staff: ResultsRead) -> Response:
    ctx = _ctx(request)
    survey, definition, results = await _results(ctx, survey_id)
    body = domain.results_csv(definition, results)
    return Response(
        body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="anketa-{survey.id[:8]}-rezultati.csv"'},
    )
