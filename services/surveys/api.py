"""surveys: the JSON API (`/api/v1/…`) for staff and residents, each staff route declaring
its permission (thin: translate the wire format, call the use cases); the HTML pages are in
pages.py, the helpers both share in web.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import Response

from shared.auth import Grant, MaybeStaff, Permit, Record, Staff, authorize, current_staff
from shared.web.ratelimit import RATE_LIMITED, rate_limit

from . import domain, needs, results, surveys, tally
from .domain import SurveyDefinition
from .schemas import (
    ClusterOut,
    Created,
    OptionResultOut,
    QuestionResultOut,
    ResponseCreated,
    ResponseIn,
    ResultsOut,
    SurveyOut,
    TemplateRequest,
)
from .web import config_of, results_or_404, service_app, submit, survey_or_404, survey_record

api = APIRouter(prefix="/api/v1", tags=["surveys"])


Create = Annotated[Grant, Permit("surveys.create")]
Manage = Annotated[Grant, Permit("surveys.manage", record=survey_record)]
ResultsRead = Annotated[Grant, Permit("surveys.results.read", record=survey_record)]


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
    ctx = service_app(request)
    staff.require(None, body.ks)
    if isinstance(body, TemplateRequest):
        definition = needs.needs_assessment(body.ks, title=body.title, opens_at=body.opens_at, closes_at=body.closes_at)
        survey = await surveys.create_survey(ctx.db, staff, definition, template=body.template)
    else:
        survey = await surveys.create_survey(ctx.db, staff, body)
    return Created(id=survey.id, status=survey.status, url=surveys.survey_url(ctx.settings, survey.id))


@api.get("/surveys", response_model=list[SurveyOut], summary="Surveys taking answers now")
async def list_surveys(request: Request) -> list[SurveyOut]:
    ctx = service_app(request)
    return [surveys.to_out(ctx.settings, s) for s in await surveys.list_open(ctx.db)]


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
    ctx = service_app(request)
    survey, definition = await survey_or_404(ctx, survey_id)
    if survey.status == "draft":
        authorize(staff or current_staff(request), "surveys.drafts.read", Record(ks=survey.ks, owner=survey.created_by))
    return surveys.to_out(ctx.settings, survey, definition)


async def _staff_action(request: Request, staff: Staff, survey_id: str, action: Any) -> SurveyOut:
    ctx = service_app(request)
    try:
        await action(ctx.db, ctx.settings, survey_id)
    except surveys.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    survey, definition = await survey_or_404(ctx, survey_id)
    return surveys.to_out(ctx.settings, survey, definition)


@api.post(
    "/surveys/{survey_id}/open",
    response_model=SurveyOut,
    summary="Open for answers; announces surveys.survey.opened (staff)",
    responses={409: {"description": "Not possible in the survey's present state (e.g. opening a closed survey)."}},
)
async def open_survey(survey_id: str, request: Request, staff: Manage) -> SurveyOut:
    return await _staff_action(request, staff, survey_id, surveys.open_survey)


@api.post(
    "/surveys/{survey_id}/close",
    response_model=SurveyOut,
    summary="Stop taking answers; announces surveys.survey.closed (staff)",
    responses={409: {"description": "Not possible in the survey's present state (e.g. opening a closed survey)."}},
)
async def close_survey(survey_id: str, request: Request, staff: Manage) -> SurveyOut:
    return await _staff_action(request, staff, survey_id, surveys.close_survey)


@api.post(
    "/surveys/{survey_id}/results/publish",
    response_model=SurveyOut,
    summary="Show the results (no free text) on the public page; announces surveys.results.published (staff)",
    responses={409: {"description": "Not possible in the survey's present state (e.g. opening a closed survey)."}},
)
async def publish_results(survey_id: str, request: Request, staff: Manage) -> SurveyOut:
    return await _staff_action(request, staff, survey_id, surveys.publish_results)


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
    ctx = service_app(request)
    staff = None
    if body.channel == "paper":
        survey, _ = await survey_or_404(ctx, survey_id)
        staff = authorize(paper_staff or current_staff(request), "surveys.responses.paper", Record(ks=survey.ks))
    response = await submit(ctx, request, survey_id, body, staff)
    return ResponseCreated(
        id=response.id, survey_id=survey_id, channel=response.channel, volunteered=body.contact is not None
    )


def _results_out(survey: Any, tallied: tally.Results, clusters: list[domain.Cluster] = ()) -> ResultsOut:  # type: ignore[assignment]
    return ResultsOut(
        suspicious_clusters=[ClusterOut(**vars(c)) for c in clusters],
        survey_id=survey.id,
        title=survey.title,
        ks=survey.ks,
        status=survey.status,
        results_published=survey.results_published,
        response_count=tallied.response_count,
        by_age_band=tallied.by_age_band,
        by_ks=tallied.by_ks,
        by_channel=tallied.by_channel,
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
            for q in tallied.questions
        ],
    )


@api.get(
    "/surveys/{survey_id}/results", response_model=ResultsOut, summary="Counts, percentages, splits, free text (staff)"
)
async def get_results(survey_id: str, request: Request, staff: ResultsRead) -> ResultsOut:
    ctx = service_app(request)
    survey, _definition, tallied = await results_or_404(ctx, survey_id)
    clusters = await results.answer_clusters(ctx.db, survey_id, config_of(ctx).cluster_threshold)
    return _results_out(survey, tallied, clusters)


@api.get(
    "/surveys/{survey_id}/results.csv",
    summary="Results as CSV for a Slovenian spreadsheet: UTF-8 with BOM, `;`, decimal comma (staff)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def get_results_csv(survey_id: str, request: Request, staff: ResultsRead) -> Response:
    ctx = service_app(request)
    survey, definition, tallied = await results_or_404(ctx, survey_id)
    body = tally.results_csv(definition, tallied)
    return Response(
        body.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="anketa-{survey.id[:8]}-rezultati.csv"'},
    )
