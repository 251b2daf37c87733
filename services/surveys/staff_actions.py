"""surveys: one survey's staff page `/surveys/{id}/staff` — its results with the charts (of
everyone, or of one age band), the CSV, the answer clusters — and its buttons: open, close
(asks once first), publish the results. Plain HTML forms posting to the same use cases as
the JSON API; each route declares its action of the permission table (`StaffPage`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shared.auth import Grant, StaffPage, may
from shared.i18n import plural
from shared.web.forms import Confirmation, confirmed

from . import domain, surveys, tally
from .results import answer_clusters
from .web import config_of, results_or_404, service_app, survey_or_404, survey_record

survey_staff = APIRouter(tags=["staff pages"])

ResultsRead = Annotated[Grant, StaffPage("surveys.results.read", record=survey_record)]
Manage = Annotated[Grant, StaffPage("surveys.manage", record=survey_record)]

SEE_OTHER: dict[int | str, dict[str, Any]] = {
    303: {"description": "Done (or nothing to do): on to the survey's staff page (HTML forms post and get redirected)."}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "The survey's state does not allow it: the page again, saying why.",
        "content": {"text/html": {}},
    },
    **SEE_OTHER,
}

# What staff read after pressing a button on their page (Slovenian; `?done=` after the redirect).
STAFF_DONE = {
    "created": "Osnutek ankete je shranjen. Preglejte vprašanja in anketo odprite, ko je pripravljena.",
    "opened": "Anketa je odprta. Krajani jo lahko izpolnijo na spletu in na papirju; naročniki KS bodo prejeli vabilo.",
    "closed": "Anketa je zaprta. Novih odgovorov ne sprejemamo več; papirnate ankete lahko še vnesete.",
    "published": "Rezultati so objavljeni na javni strani (brez odgovorov z besedilom); naročniki bodo obveščeni.",
}
ANSWERS = {"one": "odgovor", "two": "odgovora", "few": "odgovori", "other": "odgovorov"}
BANDS = (*domain.AGE_BANDS, domain.UNKNOWN)


async def _staff_page(
    request: Request, grant: Grant, survey_id: str, *, done: str | None, error: str | None, band: str | None
) -> HTMLResponse:
    ctx = service_app(request)
    survey, _definition, results = await results_or_404(ctx, survey_id)
    band = band if band in BANDS else None
    record = await survey_record(request)
    context = {
        "section": "ankete",
        "survey": survey,
        "results": results,
        "charts": tally.charts_of(results, band),
        "band": band,
        "bands": BANDS,
        "staff": True,
        "age_labels": domain.AGE_BAND_LABELS,
        "done": STAFF_DONE.get(done or ""),
        "action_error": error,
        "may_manage": may(grant, "surveys.manage", record),
        "may_paper": may(grant, "surveys.responses.paper", record),
        "may_edit": survey.status == "draft" and may(grant, "surveys.create", record),
        "clusters": await answer_clusters(ctx.db, survey_id, config_of(ctx).cluster_threshold),
        "cluster_threshold": config_of(ctx).cluster_threshold,
    }
    code = status.HTTP_409_CONFLICT if error else status.HTTP_200_OK
    return ctx.templates.TemplateResponse(request, "results.html", context, status_code=code)


@survey_staff.get(
    "/surveys/{survey_id}/staff",
    response_class=HTMLResponse,
    summary="One survey for staff: its state, the buttons to open, close and publish, the results with charts "
    "(everyone or one age band: `starost`), free text, answer clusters and the CSV (staff page)",
)
async def staff_results(
    survey_id: str, request: Request, grant: ResultsRead, done: str = "", starost: str = ""
) -> HTMLResponse:
    return await _staff_page(request, grant, survey_id, done=done, error=None, band=starost or None)


async def _act(request: Request, grant: Grant, survey_id: str, action: Any, done: str) -> Response:
    """A button: the use case of the API, then back to the staff page with a Slovenian
    confirmation (or the page again with the reason, 409)."""
    ctx = service_app(request)
    try:
        await action(ctx.db, ctx.settings, survey_id)
    except surveys.Conflict as exc:
        return await _staff_page(request, grant, survey_id, done=None, error=exc.message.sl, band=None)
    return RedirectResponse(f"/surveys/{survey_id}/staff?done={done}", status_code=status.HTTP_303_SEE_OTHER)


@survey_staff.post(
    "/surveys/{survey_id}/staff/open",
    response_class=HTMLResponse,
    summary="Open the survey for answers (staff page button; surveys.survey.opened)",
    responses=REFUSED,
)
async def staff_open(survey_id: str, request: Request, grant: Manage) -> Response:
    return await _act(request, grant, survey_id, surveys.open_survey, "opened")


async def _close_question(request: Request, survey_id: str) -> Response:
    """Before closing: what will follow (no more answers, N so far; results can then be
    published), "Da, zapri anketo" or back. A survey that is not open goes back to its page."""
    ctx = service_app(request)
    survey, _ = await survey_or_404(ctx, survey_id)
    if survey.status != "open":
        return RedirectResponse(f"/surveys/{survey_id}/staff", status_code=status.HTTP_303_SEE_OTHER)
    _, _, results = await results_or_404(ctx, survey_id)
    return Confirmation(
        title=f"Ali res želite zapreti anketo »{survey.title}«?",
        follows=[
            f"Anketa bo zaprta: novih odgovorov na spletu ne bomo več sprejemali "
            f"(do zdaj ste prejeli {plural(results.response_count, ANSWERS)}).",
            "Papirnate ankete lahko še vnesete.",
            "Nato lahko objavite rezultate.",
            "Zaprte ankete ni mogoče znova odpreti.",
        ],
        action=f"/surveys/{survey_id}/staff/close",
        yes="Da, zapri anketo",
        back=f"/surveys/{survey_id}/staff",
    ).page(ctx.templates, request)


@survey_staff.get(
    "/surveys/{survey_id}/staff/close",
    response_class=HTMLResponse,
    summary="Before closing a survey: what will follow, and the button that closes it (staff page)",
    responses=SEE_OTHER,
)
async def staff_close_page(survey_id: str, request: Request, grant: Manage) -> Response:
    return await _close_question(request, survey_id)


@survey_staff.post(
    "/surveys/{survey_id}/staff/close",
    response_class=HTMLResponse,
    summary="Close the survey: the first post asks (what will follow), the confirmation's potrdi=da closes it",
    responses=REFUSED,
)
async def staff_close(survey_id: str, request: Request, grant: Manage) -> Response:
    if not confirmed(await request.form()):
        return await _close_question(request, survey_id)
    return await _act(request, grant, survey_id, surveys.close_survey, "closed")


@survey_staff.post(
    "/surveys/{survey_id}/staff/publish",
    response_class=HTMLResponse,
    summary="Publish the results on the public page (staff page button; surveys.results.published)",
    responses=REFUSED,
)
async def staff_publish(survey_id: str, request: Request, grant: Manage) -> Response:
    return await _act(request, grant, survey_id, surveys.publish_results, "published")
