"""HTTP surface of surveys: public API and pages (thin: translate, call service)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from shared.web import ServiceApp

from . import service
from .service import SurveyOut

api = APIRouter(prefix="/api/v1", tags=["surveys"])
pages = APIRouter(include_in_schema=False)


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx  # type: ignore[no-any-return]


@api.get("/surveys/{survey_id}", response_model=SurveyOut, summary="One survey with its questions")
async def get_survey(survey_id: str, request: Request) -> SurveyOut:
    try:
        survey = await service.get_survey(_ctx(request).db, survey_id)
    except service.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Ankete ni. / No such survey.") from None
    return service.to_out(survey)


@pages.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/surveys", status_code=307)


@pages.get("/surveys", response_class=HTMLResponse)
async def surveys_page(request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    surveys = await service.list_open(ctx.db)
    return ctx.templates.TemplateResponse(request, "surveys.html", {"surveys": surveys})
