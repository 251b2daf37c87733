"""surveys: the staff console `/surveys/osebje` — the list of the KS's surveys (every KS for
the city's admins) with their answer counts and next step, a new survey from the
needs-assessment template, and the builder without JavaScript: a first page with the
survey's details and its first question creates the draft (`surveys.create_survey`, the
API's use case); on the draft's page (`/surveys/{id}/staff/uredi`) questions are added,
moved up or down and removed one at a time, each step stored at once (drafts.py).
Each route declares its action of the permission table (`StaffPage`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from shared import clock
from shared.auth import Grant, StaffPage
from shared.contracts import ALL_KS, KS_NAMES
from shared.web.forms import Confirmation, Errors, confirmed

from . import drafts, needs, surveys
from .domain import SurveyDefinition
from .staff_forms import TYPE_LABELS, TYPE_SHORT, Details, QuestionForm, definition_errors
from .web import service_app, survey_or_404, survey_record

console = APIRouter(tags=["staff pages"])

ListRead = Annotated[Grant, StaffPage("surveys.drafts.read")]
Create = Annotated[Grant, StaffPage("surveys.create")]
EditDraft = Annotated[Grant, StaffPage("surveys.create", record=survey_record)]

LIST = "/surveys/osebje"
SEE_OTHER: dict[int | str, dict[str, Any]] = {
    303: {"description": "Done: on to the page that shows it (HTML forms post and get redirected)."}
}
FORM_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "The form again, with what to correct (HTML).", "content": {"text/html": {}}},
    **SEE_OTHER,
}
DRAFT_FORM: dict[int | str, dict[str, Any]] = {
    409: {"description": "The survey is no longer a draft (HTML).", "content": {"text/html": {}}},
    **FORM_ERRORS,
}
STATUS_SL = {"draft": "Osnutek", "open": "Odprta", "closed": "Zaprta"}
QUESTIONS = {"one": "vprašanje", "two": "vprašanji", "few": "vprašanja", "other": "vprašanj"}
DONE = {
    "ustvarjena": "Osnutek ankete je shranjen s prvim vprašanjem. Dodajte še druga vprašanja.",
    "podatki": "Podatki ankete so shranjeni.",
    "dodano": "Vprašanje je dodano na konec ankete.",
    "premaknjeno": "Vprašanje je premaknjeno.",
    "odstranjeno": "Vprašanje je odstranjeno.",
}


def kss_of(grant: Grant) -> list[str]:
    """The KS a staff member may make a survey for ("*" first: the whole city, admins only)."""
    if grant.scope == "all":
        return [ALL_KS, *KS_NAMES]
    return [k for k in grant.ks if k in KS_NAMES or (k == ALL_KS and grant.may_act_for(ALL_KS))]


def _page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    ctx = service_app(request)
    return ctx.templates.TemplateResponse(
        request,
        template,
        {"section": "ankete", "type_labels": TYPE_LABELS, "type_short": TYPE_SHORT, **context},
        status_code=status_code,
    )


# ======================================================================================
# The list
# ======================================================================================
@console.get(
    LIST,
    response_class=HTMLResponse,
    summary="The surveys of one's KS (every KS for admins): drafts, open, closed, answers, next step (staff page)",
)
async def survey_list(request: Request, grant: ListRead) -> HTMLResponse:
    rows = await drafts.staff_list(service_app(request).db, None if grant.scope == "all" else list(grant.ks))
    groups = {kind: [row for row in rows if row.survey.status == kind] for kind in ("draft", "open", "closed")}
    return _page(request, "staff_surveys.html", {"groups": groups, "status_sl": STATUS_SL, "now": clock.now()})


# ======================================================================================
# From the needs-assessment template
# ======================================================================================
@console.get(
    f"{LIST}/predloga",
    response_class=HTMLResponse,
    summary="A new survey from the needs-assessment template: KS, title, answering window (staff page)",
)
async def template_form(request: Request, grant: Create) -> HTMLResponse:
    return _template_page(request, grant, Details.blank(kss_of(grant)))


def _template_page(request: Request, grant: Grant, details: Details, status_code: int = 200) -> HTMLResponse:
    example = needs.needs_assessment(details.values["ks"] if details.values["ks"] in KS_NAMES else ALL_KS)
    context = {"details": details, "errors": details.errors, "kss": kss_of(grant), "template": example}
    return _page(request, "staff_template.html", context, status_code)


@console.post(
    f"{LIST}/predloga",
    response_class=HTMLResponse,
    summary="Create a draft survey from the needs-assessment template (the API's use case)",
    responses=FORM_ERRORS,
)
async def template_create(request: Request, grant: Create) -> Response:
    details = Details.read(await request.form(), clock.now(), title_required=False)
    if details.errors:
        return _template_page(request, grant, details, status.HTTP_422_UNPROCESSABLE_CONTENT)
    grant.require(None, details.values["ks"])  # 403 for another KS, before anything is written
    definition = needs.needs_assessment(
        details.values["ks"],
        title=details.values["title"] or None,
        opens_at=details.opens_at,
        closes_at=details.closes_at,
    )
    survey = await surveys.create_survey(service_app(request).db, grant, definition, template="needs-assessment")
    return RedirectResponse(f"/surveys/{survey.id}/staff?done=created", status_code=status.HTTP_303_SEE_OTHER)


# ======================================================================================
# The builder: the first page creates the draft
# ======================================================================================
@console.get(
    f"{LIST}/nova",
    response_class=HTMLResponse,
    summary="Build a new survey: its details and its first question (staff page)",
)
async def builder_form(request: Request, grant: Create) -> HTMLResponse:
    return _builder_page(request, grant, Details.blank(kss_of(grant)), QuestionForm.blank())


def _builder_page(
    request: Request, grant: Grant, details: Details, question: QuestionForm, status_code: int = 200
) -> HTMLResponse:
    errors = Errors({**details.errors, **question.errors})
    context = {"details": details, "question": question, "errors": errors, "kss": kss_of(grant)}
    return _page(request, "staff_builder.html", context, status_code)


@console.post(
    f"{LIST}/nova",
    response_class=HTMLResponse,
    summary="Create the draft of a new survey with its first question (the API's use case)",
    responses=FORM_ERRORS,
)
async def builder_create(request: Request, grant: Create) -> Response:
    form = await request.form()
    details, question = Details.read(form, clock.now()), QuestionForm.read(form)
    if details.errors or question.question is None:
        return _builder_page(request, grant, details, question, status.HTTP_422_UNPROCESSABLE_CONTENT)
    grant.require(None, details.values["ks"])  # 403 for another KS, before anything is written
    v = details.values
    try:
        definition = SurveyDefinition(
            ks=v["ks"],
            title=v["title"],
            description=v["description"],
            opens_at=details.opens_at,
            closes_at=details.closes_at,
            questions=[question.question.model_copy(update={"id": "q1"})],
        )
    except ValidationError:
        details.errors.add("title", "Preverite podatke ankete.")
        return _builder_page(request, grant, details, question, status.HTTP_422_UNPROCESSABLE_CONTENT)
    survey = await surveys.create_survey(service_app(request).db, grant, definition)
    return RedirectResponse(
        f"/surveys/{survey.id}/staff/uredi?done=ustvarjena#vprasanja", status_code=status.HTTP_303_SEE_OTHER
    )


# ======================================================================================
# The builder: the draft's page, one step at a time
# ======================================================================================
def _editor_url(survey_id: str, done: str) -> str:
    return f"/surveys/{survey_id}/staff/uredi?done={done}#vprasanja"


async def _editor(
    request: Request,
    grant: Grant,
    survey_id: str,
    *,
    details: Details | None = None,
    question: QuestionForm | None = None,
    errors: Errors | None = None,
    done: str | None = None,
    status_code: int = 200,
) -> Response:
    survey, definition = await survey_or_404(service_app(request), survey_id)
    if survey.status != "draft":
        return RedirectResponse(f"/surveys/{survey_id}/staff", status_code=status.HTTP_303_SEE_OTHER)
    details = details or Details.of(definition)
    question = question or QuestionForm.blank()
    context = {
        "survey": survey,
        "definition": definition,
        "details": details,
        "question": question,
        "errors": errors or Errors({**details.errors, **question.errors}),
        "kss": kss_of(grant),
        "done": DONE.get(done or ""),
        "count": QUESTIONS,
    }
    return _page(request, "staff_draft.html", context, status_code)


@console.get(
    "/surveys/{survey_id}/staff/uredi",
    response_class=HTMLResponse,
    summary="A draft survey's builder: its questions (move, remove), a new question, its details (staff page)",
    responses={303: {"description": "The survey is no longer a draft: on to its staff page."}},
)
async def draft_page(survey_id: str, request: Request, grant: EditDraft, done: str = "") -> Response:
    return await _editor(request, grant, survey_id, done=done)


async def _change(
    request: Request,
    grant: Grant,
    survey_id: str,
    change: Callable[[SurveyDefinition], SurveyDefinition],
    done: str,
    **page: Any,
) -> Response:
    """Store one step of the builder; the draft's page again with the reason when refused."""
    try:
        await drafts.change_draft(service_app(request).db, survey_id, change)
    except surveys.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Ankete ni. / No such survey.") from None
    except drafts.NotADraft:
        return RedirectResponse(f"/surveys/{survey_id}/staff", status_code=status.HTTP_303_SEE_OTHER)
    except drafts.EditRefused as exc:
        errors = Errors({"vprasanja": exc.message.sl})
        return await _editor(request, grant, survey_id, errors=errors, status_code=422, **page)
    except ValidationError as exc:
        return await _editor(request, grant, survey_id, errors=definition_errors(exc), status_code=422, **page)
    return RedirectResponse(_editor_url(survey_id, done), status_code=status.HTTP_303_SEE_OTHER)


@console.post(
    "/surveys/{survey_id}/staff/uredi",
    response_class=HTMLResponse,
    summary="Change a draft survey's details: KS, title, introduction, answering window",
    responses=FORM_ERRORS,
)
async def draft_details(survey_id: str, request: Request, grant: EditDraft) -> Response:
    details = Details.read(await request.form(), clock.now())
    if details.errors:
        return await _editor(request, grant, survey_id, details=details, status_code=422)
    survey, _ = await survey_or_404(service_app(request), survey_id)
    grant.require(survey.ks, details.values["ks"])  # the KS it belongs to now and the one it moves to
    v = details.values

    def change(definition: SurveyDefinition) -> SurveyDefinition:
        return drafts.with_details(
            definition,
            ks=v["ks"],
            title=v["title"],
            description=v["description"],
            opens_at=details.opens_at,
            closes_at=details.closes_at,
        )

    return await _change(request, grant, survey_id, change, "podatki", details=details)


@console.post(
    "/surveys/{survey_id}/staff/vprasanja",
    response_class=HTMLResponse,
    summary="Add a question at the end of a draft survey",
    responses=FORM_ERRORS,
)
async def draft_add(survey_id: str, request: Request, grant: EditDraft) -> Response:
    question = QuestionForm.read(await request.form())
    if question.question is None:
        return await _editor(request, grant, survey_id, question=question, status_code=422)
    new = question.question
    return await _change(request, grant, survey_id, lambda d: drafts.with_question(d, new), "dodano", question=question)


def _question_id(request: Request, form: Any) -> str:
    """The question a button names (the confirmation carries it in its address)."""
    value = form.get("vprasanje") or request.query_params.get("vprasanje")
    return value if isinstance(value, str) else ""


@console.post(
    "/surveys/{survey_id}/staff/vprasanja/premik",
    response_class=HTMLResponse,
    summary="Move a question of a draft survey one place up (smer=gor) or down (smer=dol)",
    responses=FORM_ERRORS,
)
async def draft_move(survey_id: str, request: Request, grant: EditDraft) -> Response:
    form = await request.form()
    question_id, up = _question_id(request, form), form.get("smer") == "gor"
    return await _change(request, grant, survey_id, lambda d: drafts.moved(d, question_id, up), "premaknjeno")


@console.post(
    "/surveys/{survey_id}/staff/vprasanja/odstrani",
    response_class=HTMLResponse,
    summary="Remove a question from a draft survey: the first post asks, potrdi=da removes it",
    responses=FORM_ERRORS,
)
async def draft_remove(survey_id: str, request: Request, grant: EditDraft) -> Response:
    form = await request.form()
    question_id = _question_id(request, form)
    if not confirmed(form):
        survey, definition = await survey_or_404(service_app(request), survey_id)
        question = definition.question(question_id)
        if survey.status != "draft" or question is None:
            return RedirectResponse(_editor_url(survey_id, ""), status_code=status.HTTP_303_SEE_OTHER)
        return Confirmation(
            title=f"Ali res želite odstraniti vprašanje »{question.text}«?",
            follows=["Vprašanje bo odstranjeno iz osnutka ankete.", "Druga vprašanja ostanejo, kot so."],
            action=f"/surveys/{survey_id}/staff/vprasanja/odstrani?{urlencode({'vprasanje': question_id})}",
            yes="Da, odstrani vprašanje",
            back=f"/surveys/{survey_id}/staff/uredi#v-{question_id}",
        ).page(service_app(request).templates, request)
    return await _change(request, grant, survey_id, lambda d: drafts.without(d, question_id), "odstranjeno")
