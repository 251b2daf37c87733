"""HTTP surface of surveys: staff and resident API, public pages and staff pages
(thin: translate the wire format, call the service)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError

from shared.auth import Grant, MaybeStaff, Permit, Record, Staff, authorize, current_staff
from shared.models import utcnow
from shared.web import ServiceApp
from shared.web.csrf import secure_cookies
from shared.web.ratelimit import RATE_LIMITED, rate_limit, survey_browser_cookie

from . import domain, service, texts
from .config import SurveysConfig
from .domain import AnswersInvalid, SurveyDefinition, TemplateRequest
from .qr import qr_svg
from .service import Created, ResponseCreated, ResponseIn, SurveyOut

api = APIRouter(prefix="/api/v1", tags=["surveys"])
pages = APIRouter(include_in_schema=False)

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
    ctx = _ctx(request)
    surveys = await service.list_open(ctx.db)
    published = await service.list_published(ctx.db)
    return ctx.templates.TemplateResponse(request, "surveys.html", {"surveys": surveys, "published": published})


def _form_context(survey: Any, definition: SurveyDefinition, *, lang: str = "sl", **extra: Any) -> dict[str, Any]:
    return {
        "survey": survey,
        "definition": definition,
        "lang": lang,
        "t": texts.ui(lang),
        "age_bands": domain.AGE_BANDS,
        "age_labels": texts.AGE_LABELS_EN if lang == "en" else domain.AGE_BAND_LABELS,
        "consent_text": domain.consent_text(lang),
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
        invitee = service.invitee_of(ctx.settings, survey_id, token)
    except service.InvitationInvalid:
        return {"invitation": token, "invitation_invalid": True}
    used = await service.is_invitation_used(ctx.db, survey_id, invitee)
    return {"invitation": token, "answered_invitation": used}


@pages.get("/surveys/{survey_id}", response_class=HTMLResponse)
async def survey_form(survey_id: str, request: Request, t: str | None = None) -> HTMLResponse:
    ctx = _ctx(request)
    survey, definition = await _load(ctx, survey_id)
    if survey.status == "draft":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Anketa še ni objavljena. / The survey is not open yet.")
    problem = domain.window_problem(survey.status, survey.opens_at, survey.closes_at, utcnow())
    answered = request.cookies.get(_cookie(survey_id)) is not None
    invitation = await _invitation_state(ctx, survey_id, t)
    page = ctx.templates.TemplateResponse(
        request,
        "survey_form.html",
        _form_context(survey, definition, lang=_language(request), problem=problem, answered=answered, **invitation),
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
    values = {"answers": answers, **{k: form.get(k) or "" for k in ("age_band", "ks")}, "contact": contact, "consent": consent}
    return payload, values


async def _handle_form(request: Request, survey_id: str, *, paper: bool, staff: Staff | None) -> Response:
    ctx = _ctx(request)
    survey, definition = await _load(ctx, survey_id)
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
            await _submit(ctx, request, survey_id, body, staff, raw=True)
        except AnswersInvalid as exc:
            for e in exc.errors:
                message = e.en if lang == "en" else e.sl
                errors.setdefault(e.field, message[:1].upper() + message[1:] + ".")
        except service.BrowserAnsweredAlready:
            return ctx.templates.TemplateResponse(
                request,
                "survey_form.html",
                _form_context(survey, definition, lang=lang, problem=None, answered=True),
                status_code=status.HTTP_409_CONFLICT,
            )
        except (service.InvitationInvalid, service.InvitationUsedAlready) as exc:
            invalid = isinstance(exc, service.InvitationInvalid)
            return ctx.templates.TemplateResponse(
                request,
                "survey_form.html",
                _form_context(
                    survey, definition, lang=lang, values=values, problem=None, answered=False,
                    invitation=token, invitation_invalid=invalid, answered_invitation=not invalid,
                ),  # fmt: skip
                status_code=status.HTTP_400_BAD_REQUEST if invalid else status.HTTP_409_CONFLICT,
            )
    if errors:
        return ctx.templates.TemplateResponse(
            request,
            "survey_form.html",
            _form_context(
                survey, definition, lang=lang, values=values, errors=errors, paper=paper, problem=None, answered=False,
                invitation=token,
            ),  # fmt: skip
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    if paper:
        return RedirectResponse(f"/surveys/{survey_id}/paper?saved=1", status_code=303)
    by_header = texts.choose_language(None, request.headers.get("accept-language"))
    thanks = f"/surveys/{survey_id}/hvala" + ("" if lang == by_header else f"?lang={lang}")
    response = RedirectResponse(thanks, status_code=303)
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
    ctx = _ctx(request)
    survey, definition = await _load(ctx, survey_id)
    form = await request.form()
    # A personal invitation is its own limit (once each): the device's cookie does not apply to it.
    if request.cookies.get(_cookie(survey_id)) is not None and not form.get("t"):
        return ctx.templates.TemplateResponse(
            request,
            "survey_form.html",
            _form_context(
                survey, definition, lang=_language(request, form.get("lang")), problem=None, answered=True
            ),
            status_code=status.HTTP_409_CONFLICT,
        )
    return await _handle_form(request, survey_id, paper=False, staff=None)


@pages.get("/surveys/{survey_id}/hvala", response_class=HTMLResponse)
async def thanks(survey_id: str, request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    survey, _ = await _load(ctx, survey_id)
    lang = _language(request)
    return ctx.templates.TemplateResponse(
        request, "survey_thanks.html", {"survey": survey, "lang": lang, "t": texts.ui(lang)}
    )


@pages.get("/surveys/{survey_id}/print", response_class=HTMLResponse)
async def print_version(survey_id: str, request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    survey, definition = await _load(ctx, survey_id)
    url = service.survey_url(ctx.settings, survey.id)
    return ctx.templates.TemplateResponse(
        request,
        "survey_print.html",
        _form_context(survey, definition, url=url, qr=qr_svg(url, label=f"QR koda spletne ankete: {url}")),
    )


def _page_staff(request: Request, survey: Any, action: str) -> Staff:
    return authorize(current_staff(request), action, Record(ks=survey.ks, owner=survey.created_by))


@pages.get("/surveys/{survey_id}/paper", response_class=HTMLResponse)
async def paper_form(survey_id: str, request: Request, saved: int = 0) -> HTMLResponse:
    ctx = _ctx(request)
    survey, definition = await _load(ctx, survey_id)
    _page_staff(request, survey, "surveys.responses.paper")
    return ctx.templates.TemplateResponse(
        request, "survey_form.html", _form_context(survey, definition, paper=True, saved=bool(saved), problem=None, answered=False)
    )


@pages.post("/surveys/{survey_id}/paper", response_class=HTMLResponse)
async def paper_submit(survey_id: str, request: Request) -> Response:
    ctx = _ctx(request)
    survey, _ = await _load(ctx, survey_id)
    staff = _page_staff(request, survey, "surveys.responses.paper")
    return await _handle_form(request, survey_id, paper=True, staff=staff)


def _charts(results: domain.Results) -> dict[str, Any]:
    bands = [*domain.AGE_BANDS, domain.UNKNOWN]
    reach = domain.bar_chart(
        [
            (domain.AGE_BAND_LABELS[b], results.by_age_band[b], domain.percent(results.by_age_band[b], results.response_count))
            for b in bands
        ]
    )
    per_question = {
        q.id: domain.bar_chart([(o.text, o.count, o.percent) for o in q.options]) for q in results.questions if q.options
    }
    return {"reach": reach, "per_question": per_question}


@pages.get("/surveys/{survey_id}/results", response_class=HTMLResponse)
async def public_results(survey_id: str, request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    survey, definition, results = await _results(ctx, survey_id)
    if not survey.results_published:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Rezultati te ankete še niso objavljeni. / Not published yet.")
    return ctx.templates.TemplateResponse(
        request,
        "results.html",
        {"survey": survey, "results": results, "charts": _charts(results), "staff": False, "age_labels": domain.AGE_BAND_LABELS},
    )


# What staff read after pressing a button on their page (Slovenian; `?done=` after the redirect).
STAFF_DONE = {
    "opened": "Anketa je odprta. Krajani jo lahko izpolnijo na spletu in na papirju; naročniki KS bodo prejeli vabilo.",
    "closed": "Anketa je zaprta. Novih odgovorov ne sprejemamo več; papirnate ankete lahko še vnesete.",
    "published": "Rezultati so objavljeni na javni strani (brez odgovorov z besedilom); naročniki bodo obveščeni.",
}


@pages.get("/surveys/{survey_id}/staff", response_class=HTMLResponse)
async def staff_results(survey_id: str, request: Request, done: str = "") -> HTMLResponse:
    ctx = _ctx(request)
    survey, definition, results = await _results(ctx, survey_id)
    _page_staff(request, survey, "surveys.results.read")
    return ctx.templates.TemplateResponse(
        request,
        "results.html",
        {
            "survey": survey,
            "results": results,
            "charts": _charts(results),
            "staff": True,
            "age_labels": domain.AGE_BAND_LABELS,
            "done": STAFF_DONE.get(done),
            "action_error": None,
            "clusters": await service.answer_clusters(ctx.db, survey_id, _config(ctx).cluster_threshold),
            "cluster_threshold": _config(ctx).cluster_threshold,
        },
    )


async def _staff_page_action(request: Request, survey_id: str, action: Any, done: str) -> Response:
    """The staff page's buttons: plain HTML forms posting here; the same service functions
    as the API, then back to the staff page with a Slovenian confirmation (or the reason)."""
    ctx = _ctx(request)
    survey, _ = await _load(ctx, survey_id)
    _page_staff(request, survey, "surveys.manage")
    try:
        await action(ctx.db, ctx.settings, survey_id)
    except service.Conflict as exc:
        survey, definition, results = await _results(ctx, survey_id)
        return ctx.templates.TemplateResponse(
            request,
            "results.html",
            {
                "survey": survey,
                "results": results,
                "charts": _charts(results),
                "staff": True,
                "age_labels": domain.AGE_BAND_LABELS,
                "done": None,
                "action_error": str(exc).split(" / ")[0],
            },
            status_code=status.HTTP_409_CONFLICT,
        )
    return RedirectResponse(f"/surveys/{survey_id}/staff?done={done}", status_code=303)


@pages.post("/surveys/{survey_id}/staff/open")
async def staff_open(survey_id: str, request: Request) -> Response:
    return await _staff_page_action(request, survey_id, service.open_survey, "opened")


@pages.post("/surveys/{survey_id}/staff/close")
async def staff_close(survey_id: str, request: Request) -> Response:
    return await _staff_page_action(request, survey_id, service.close_survey, "closed")


@pages.post("/surveys/{survey_id}/staff/publish")
async def staff_publish(survey_id: str, request: Request) -> Response:
    return await _staff_page_action(request, survey_id, service.publish_results, "published")
