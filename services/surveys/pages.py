"""surveys: the HTML pages (Jinja2, no JavaScript) and feeds; the JSON API is in api.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared.auth import Grant, Staff, StaffPage
from shared.models import utcnow
from shared.web import ServiceApp
from shared.web.csrf import secure_cookies
from shared.web.forms import LANDING
from shared.web.ratelimit import rate_limit, survey_browser_cookie

from . import answers, domain, needs, surveys, tally, texts
from .domain import AnswersInvalid, SurveyDefinition
from .qr import qr_svg
from .schemas import ResponseIn
from .web import results_or_404, service_app, submit, survey_or_404, survey_record, survey_share

pages = APIRouter(include_in_schema=False)
paper_pages = APIRouter(tags=["staff pages"])  # staff enter paper answers (in the OpenAPI document)


# ======================================================================================
# Pages
# ======================================================================================
def _cookie(survey_id: str) -> str:
    return f"kzv_anketa_{survey_id.replace('-', '')[:32]}"


@pages.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/surveys", status_code=307)


@pages.get("/surveys", response_class=HTMLResponse)
async def surveys_page(request: Request) -> HTMLResponse:
    ctx = service_app(request)
    open_now = await surveys.list_open(ctx.db)
    published = await surveys.list_published(ctx.db)
    return ctx.templates.TemplateResponse(request, "surveys.html", {"surveys": open_now, "published": published})


def _form_context(survey: Any, definition: SurveyDefinition, *, lang: str = "sl", **extra: Any) -> dict[str, Any]:
    return {
        "survey": survey,
        "definition": definition,
        "lang": lang,
        "t": texts.ui(lang),
        "age_bands": domain.AGE_BANDS,
        "age_labels": texts.AGE_LABELS_EN if lang == "en" else domain.AGE_BAND_LABELS,
        "consent_text": needs.consent_text(lang),
        "invitation": None,
        "invitation_invalid": False,
        "answered_invitation": False,
        "values": {},
        "errors": {},
        "paper": False,
        "scale": range(domain.SCALE_MIN, domain.SCALE_MAX + 1),
        **extra,
    }


def _language(request: Request, form_value: Any = None) -> str:
    """`?lang=sl|en` (or the form's hidden `lang`), else Accept-Language; Slovenian by default."""
    chosen = form_value if form_value in texts.LANGUAGES else request.query_params.get("lang")
    return texts.choose_language(chosen, request.headers.get("accept-language"))


async def _invitation_state(ctx: ServiceApp, survey_id: str, token: str | None) -> dict[str, Any]:
    """What the form shows for `?t=`: the token to carry on, or that it is not valid / used."""
    if not token:
        return {}
    try:
        invitee = answers.invitee_of(ctx.settings, survey_id, token)
    except answers.InvitationInvalid:
        return {"invitation": token, "invitation_invalid": True}
    used = await answers.is_invitation_used(ctx.db, survey_id, invitee)
    return {"invitation": token, "answered_invitation": used}


@pages.get("/surveys/{survey_id}", response_class=HTMLResponse)
async def survey_form(survey_id: str, request: Request, t: str | None = None) -> HTMLResponse:
    ctx = service_app(request)
    survey, definition = await survey_or_404(ctx, survey_id)
    if survey.status == "draft":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Anketa še ni objavljena. / The survey is not open yet.")
    problem = domain.window_problem(survey.status, survey.opens_at, survey.closes_at, utcnow())
    answered = request.cookies.get(_cookie(survey_id)) is not None
    invitation = await _invitation_state(ctx, survey_id, t)
    page = ctx.templates.TemplateResponse(
        request,
        "survey_form.html",
        _form_context(
            survey,
            definition,
            lang=_language(request),
            problem=problem,
            answered=answered,
            share=survey_share(ctx, survey),
            **invitation,
        ),
    )
    _give_browser_token(ctx, request, page, survey_id)
    return page


def _give_browser_token(ctx: ServiceApp, request: Request, response: Response, survey_id: str) -> None:
    """The survey's per-browser token (issue 15): a random, signed value in a cookie, set
    when the form is served; answers are limited per token (one stored answer per browser,
    `KRANJ_RATE_LIMIT_SURVEY_ANSWER_BROWSER` attempts). Path `/` so the API sees it too."""
    name = survey_browser_cookie(survey_id)
    if domain.browser_fingerprint(ctx.settings.signing_key(), survey_id, request.cookies.get(name)) is not None:
        return
    response.set_cookie(
        name,
        domain.new_browser_token(ctx.settings.signing_key(), survey_id),
        max_age=180 * 86400,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request, ctx.settings),
        path="/",
    )


def _parse_form(
    definition: SurveyDefinition, form: Any, paper: bool, lang: str = "sl"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Form fields -> (ResponseIn payload, values to redisplay). Questions hidden by
    `show_if` are dropped: without JavaScript every question is on the page."""
    answers: dict[str, Any] = {}
    for q in definition.questions:
        name = f"q.{q.id}"
        if q.type == "multiple":
            chosen = [v for v in form.getlist(name) if v]
            if chosen:
                answers[q.id] = chosen
        else:
            value = (form.get(name) or "").strip()
            if not value:
                continue
            if q.type == "scale":
                answers[q.id] = int(value) if value.isdigit() else value
            else:
                answers[q.id] = value
    for q in definition.questions:
        if q.id in answers and not domain.is_shown(q, answers):
            answers.pop(q.id)
    payload: dict[str, Any] = {"answers": answers, "channel": "paper" if paper else "web"}
    for key in ("age_band", "ks"):
        if form.get(key):
            payload[key] = form.get(key)
    contact = {k: (form.get(f"contact_{k}") or "").strip() for k in ("name", "email", "phone")}
    consent = form.get("contact_consent") == "yes"
    if any(contact.values()) or consent:
        payload["contact"] = {**contact, "consent": consent, "language": lang}
    if form.get("t") and not paper:
        payload["invitation"] = form.get("t")
    values = {
        "answers": answers,
        **{k: form.get(k) or "" for k in ("age_band", "ks")},
        "contact": contact,
        "consent": consent,
    }
    return payload, values


async def _handle_form(request: Request, survey_id: str, *, paper: bool, staff: Staff | None) -> Response:
    ctx = service_app(request)
    survey, definition = await survey_or_404(ctx, survey_id)
    form = await request.form()
    lang = "sl" if paper else _language(request, form.get("lang"))
    payload, values = _parse_form(definition, form, paper, lang)
    token = payload.get("invitation")
    errors: dict[str, str] = {}
    body: ResponseIn | None = None
    try:
        body = ResponseIn.model_validate(payload)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            key = "contact" if loc and loc[0] == "contact" else (loc[0] if loc else "form")
            errors.setdefault(key, _form_message(key, str(err["msg"]), lang))
    if body is not None:
        try:
            await submit(ctx, request, survey_id, body, staff, raw=True)
        except AnswersInvalid as exc:
            for e in exc.errors:
                errors.setdefault(e.field, e.message.sentence().in_language(lang))
        except answers.BrowserAnsweredAlready:
            return ctx.templates.TemplateResponse(
                request,
                "survey_form.html",
                _form_context(survey, definition, lang=lang, problem=None, answered=True),
                status_code=status.HTTP_409_CONFLICT,
            )
        except (answers.InvitationInvalid, answers.InvitationUsedAlready) as exc:
            invalid = isinstance(exc, answers.InvitationInvalid)
            return ctx.templates.TemplateResponse(
                request,
                "survey_form.html",
                _form_context(
                    survey,
                    definition,
                    lang=lang,
                    values=values,
                    problem=None,
                    answered=False,
                    invitation=token,
                    invitation_invalid=invalid,
                    answered_invitation=not invalid,
                ),  # fmt: skip
                status_code=status.HTTP_400_BAD_REQUEST if invalid else status.HTTP_409_CONFLICT,
            )
    if errors:
        return ctx.templates.TemplateResponse(
            request,
            "survey_form.html",
            _form_context(
                survey,
                definition,
                lang=lang,
                values=values,
                errors=errors,
                paper=paper,
                problem=None,
                answered=False,
                invitation=token,
            ),  # fmt: skip
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    if paper:
        return RedirectResponse(f"/surveys/{survey_id}/paper?saved=1{LANDING}", status_code=303)
    by_header = texts.choose_language(None, request.headers.get("accept-language"))
    thanks = f"/surveys/{survey_id}/hvala" + ("" if lang == by_header else f"?lang={lang}")
    response = RedirectResponse(thanks + LANDING, status_code=303)
    response.set_cookie(
        _cookie(survey_id), "1", max_age=180 * 86400, httponly=True, samesite="lax", path=f"/surveys/{survey_id}"
    )
    return response


def _form_message(key: str, msg: str, lang: str = "sl") -> str:
    t = texts.ui(lang)
    msg = msg.removeprefix("Value error, ")
    if key == "contact":
        if "consent" in msg or "privolitev" in msg:
            return t["err_consent"]
        if "e-naslov ali telefon" in msg:
            return t["err_contact_missing"]
        if "phone" in msg or "telefonsk" in msg:
            return t["err_phone"]
        if "email" in msg.lower():
            return t["err_email"]
        return t["err_contact"]
    if key == "age_band":
        return t["err_age_band"]
    if key == "ks":
        return t["err_ks"]
    return t["err_other"]


@pages.post("/surveys/{survey_id}", response_class=HTMLResponse, dependencies=[rate_limit("survey_answer")])
async def submit_form(survey_id: str, request: Request) -> Response:
    ctx = service_app(request)
    survey, definition = await survey_or_404(ctx, survey_id)
    form = await request.form()
    # A personal invitation is its own limit (once each): the device's cookie does not apply to it.
    if request.cookies.get(_cookie(survey_id)) is not None and not form.get("t"):
        return ctx.templates.TemplateResponse(
            request,
            "survey_form.html",
            _form_context(survey, definition, lang=_language(request, form.get("lang")), problem=None, answered=True),
            status_code=status.HTTP_409_CONFLICT,
        )
    return await _handle_form(request, survey_id, paper=False, staff=None)


@pages.get("/surveys/{survey_id}/hvala", response_class=HTMLResponse)
async def thanks(survey_id: str, request: Request) -> HTMLResponse:
    ctx = service_app(request)
    survey, _ = await survey_or_404(ctx, survey_id)
    lang = _language(request)
    return ctx.templates.TemplateResponse(
        request, "survey_thanks.html", {"survey": survey, "lang": lang, "t": texts.ui(lang)}
    )


@pages.get("/surveys/{survey_id}/print", response_class=HTMLResponse)
async def print_version(survey_id: str, request: Request) -> HTMLResponse:
    ctx = service_app(request)
    survey, definition = await survey_or_404(ctx, survey_id)
    url = surveys.survey_url(ctx.settings, survey.id)
    return ctx.templates.TemplateResponse(
        request,
        "survey_print.html",
        _form_context(survey, definition, url=url, qr=qr_svg(url, label=f"QR koda spletne ankete: {url}")),
    )


Paper = Annotated[Grant, StaffPage("surveys.responses.paper", record=survey_record)]


@paper_pages.get(
    "/surveys/{survey_id}/paper",
    response_class=HTMLResponse,
    summary="Enter the answers of a paper form: the survey's form, for staff (staff page)",
)
async def paper_form(survey_id: str, request: Request, grant: Paper, saved: int = 0) -> HTMLResponse:
    ctx = service_app(request)
    survey, definition = await survey_or_404(ctx, survey_id)
    return ctx.templates.TemplateResponse(
        request,
        "survey_form.html",
        _form_context(survey, definition, paper=True, saved=bool(saved), problem=None, answered=False),
    )


@paper_pages.post(
    "/surveys/{survey_id}/paper",
    response_class=HTMLResponse,
    summary="Store the answers of one paper form (channel paper); the form again after it (staff page)",
    responses={
        303: {"description": "Stored: the empty form again, for the next paper form."},
        409: {"description": "The survey takes no answers (never opened).", "content": {"text/html": {}}},
        422: {"description": "The form again, with what to correct (HTML).", "content": {"text/html": {}}},
    },
)
async def paper_submit(survey_id: str, request: Request, grant: Paper) -> Response:
    return await _handle_form(request, survey_id, paper=True, staff=grant)


@pages.get("/surveys/{survey_id}/results", response_class=HTMLResponse)
async def public_results(survey_id: str, request: Request) -> HTMLResponse:
    ctx = service_app(request)
    survey, definition, results = await results_or_404(ctx, survey_id)
    if not survey.results_published:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Rezultati te ankete še niso objavljeni. / Not published yet.")
    return ctx.templates.TemplateResponse(
        request,
        "results.html",
        {
            "survey": survey,
            "results": results,
            "charts": tally.charts_of(results),
            "staff": False,
            "age_labels": domain.AGE_BAND_LABELS,
        },
    )
