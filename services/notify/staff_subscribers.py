"""Subscribers for a KS volunteer, `/osebje/narocniki` (issue 19, item 3): add one resident
from a paper sign-up form, upload the sign-up sheet (CSV) and download its template, find a
person by email or phone and — for the roles the permission table allows — export or erase
them.

The same use cases as the JSON API and the CLI: `subscribers.add_subscriber` with consent
recorded as staff-entered by the staff member (`staff:<subject>`), `csv_import` (the importer
`kranj subscriber import` uses; rows for a KS the staff member does not act for are row
errors), `privacy.find / export / erase` behind the frame of shared/privacy.py. Finding is
part of entering (is this person on the list already?), so it is `notify.subscribers.write`;
the contacts it shows are masked as the delivery log masks them unless the role may export
and erase (`notify.subscribers.privacy`). Contacts are always POSTed, never put in a URL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select

from shared.auth import Grant, StaffPage, may
from shared.contact import sms_refusal
from shared.contracts import ALL_KS, KS_NAMES
from shared.contracts.notify import TOPICS
from shared.logs import mask_email, mask_phone
from shared.privacy import Person
from shared.web.csv_export import csv_response
from shared.web.forms import Errors, field_errors

from . import privacy, subscribers
from .csv_import import COLUMNS, CsvFormatError, RowError, load_rows, parse_subscribers_csv
from .domain import normalise_phone
from .models import Subscriber, SubscriberKs, SubscriberTopic
from .staff import CHANNEL_LABELS, ctx_of, own_ks, page
from .staff_notices import FORM_ERRORS, SEE_OTHER
from .subscribe import MESSAGES, TOPIC_LABELS

log = logging.getLogger("kranj.notify.staff")

subscriber_pages = APIRouter(tags=["staff pages"])

Write = Annotated[Grant, StaffPage("notify.subscribers.write")]
Privacy = Annotated[Grant, StaffPage("notify.subscribers.privacy")]

HOME = "/osebje/narocniki"
MAX_UPLOAD = 2 * 1024 * 1024  # a KS's sign-up sheet is a few kilobytes
TEMPLATE_FILE = "narocniki-predloga.csv"
LANGUAGES = {"sl": "Slovenščina", "en": "Angleščina (English)"}
SUB_CHANNELS = {c: CHANNEL_LABELS[c] for c in ("email", "sms")}
STATUS_LABELS = {"active": "prijavljen(-a)", "pending": "čaka na potrditev", "unsubscribed": "odjavljen(-a)"}
CONSENT_LABELS = {"staff": "vpisal(-a) uslužbenec KS", "import": "uvoz prijavnic", "web": "spletna prijava"}
DONE = {
    "dodan": "Krajan je prijavljen na obvestila. Prejemal jih bo od zdaj naprej.",
    "izbrisan": "Podatki osebe so izbrisani iz obveščanja.",
}
# The ids of the add form's inputs the error summary links to (staff_subscribers.html).
FIELD_IDS = {"ks": "ks", "email": "email", "phone": "phone", "channels": "channel-email", "topics": "topic-general"}
FIND_FIELDS = ("email", "phone")


# ======================================================================================
# Reading a form (or the same fields as JSON from a script with a bearer token)
# ======================================================================================
async def _fields(request: Request) -> tuple[Mapping[str, Any], dict[str, list[str]]]:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        lists = {k: [str(v) for v in body[k]] for k in ("channels", "topics") if isinstance(body.get(k), list)}
        return body, lists
    form = await request.form()
    return form, {k: [str(v) for v in form.getlist(k)] for k in ("channels", "topics")}


def blank(grant: Grant) -> dict[str, Any]:
    kss = own_ks(grant)
    return {
        "ks": kss[0] if len(kss) == 1 else "",
        "email": "",
        "phone": "",
        "channels": [],
        "topics": ["general", "utilities", "events", "safety"],
        "language": "sl",
    }


def add_errors(exc: ValidationError) -> Errors:
    m = MESSAGES["sl"]
    return field_errors(
        exc,
        {"ks": "Izberite krajevno skupnost krajana.", **{n: m[n] for n in ("email", "phone", "channels", "topics")}},
        [
            ("channel email needs", m["email_for_channel"], "email"),
            ("channel sms needs", m["phone_for_channel"], "phone"),
            ("at least one channel", m["channels"], "channels"),
            ("or a phone number", m["contact"], "email"),
        ],
        ids=FIELD_IDS,
    )


async def _home(
    request: Request,
    grant: Grant,
    *,
    values: dict[str, Any] | None = None,
    errors: Errors | None = None,
    done: str | None = None,
    imported: dict[str, Any] | None = None,
    found: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "section": "narocniki",
        "grant": grant,
        "values": values or blank(grant),
        "errors": errors or Errors(),
        "done": done,
        "imported": imported,
        "found": found,
        "kss": own_ks(grant),
        "topics": TOPIC_LABELS["sl"],
        "channel_labels": SUB_CHANNELS,
        "languages": LANGUAGES,
        "columns": COLUMNS,
        "may_privacy": may(grant, "notify.subscribers.privacy"),
    }
    return page(request, "staff_subscribers.html", context, status_code)


# ======================================================================================
# The page, adding one resident, the template CSV, the upload
# ======================================================================================
@subscriber_pages.get(
    HOME,
    response_class=HTMLResponse,
    summary="Subscribers of one's KS: add one, upload a sign-up sheet, find (staff page)",
)
async def subscribers_page(request: Request, grant: Write, done: str | None = None) -> HTMLResponse:
    return await _home(request, grant, done=DONE.get(done or ""))


@subscriber_pages.post(
    HOME,
    response_class=HTMLResponse,
    summary="Subscribe a resident from a paper sign-up form; consent recorded as entered by this staff member",
    responses=FORM_ERRORS,
)
async def add_from_paper(request: Request, grant: Write) -> Response:
    ctx = ctx_of(request)
    form, lists = await _fields(request)
    values: dict[str, Any] = {k: str(form.get(k) or "").strip() for k in ("ks", "email", "phone", "language")}
    values.update(channels=lists.get("channels", []), topics=lists.get("topics", []))
    if values["ks"] in KS_NAMES or values["ks"] == ALL_KS:
        grant.require(None, values["ks"])  # 403 before anything is written
    errors = Errors()
    data: subscribers.SubscriberIn | None = None
    try:
        data = subscribers.SubscriberIn.model_validate(
            {
                "ks": [values["ks"]] if values["ks"] else [],
                "email": values["email"] or None,
                "phone": values["phone"] or None,
                "channels": [c for c in values["channels"] if c in SUB_CHANNELS] or None,
                "topics": [t for t in values["topics"] if t in TOPICS],
                "language": values["language"] if values["language"] in LANGUAGES else "sl",
            }
        )
    except ValidationError as exc:
        errors = add_errors(exc)
    if data is not None and (refusal := sms_refusal(data.phone, ctx.settings)):
        errors.add("phone", refusal.in_language("sl"))
    if data is not None and not errors:
        try:
            await subscribers.add_subscriber(ctx.db, data, consent_source="staff", entered_by=f"staff:{grant.subject}")
        except subscribers.Conflict as exc:
            errors.add("email" if data.email else "phone", exc.message.in_language("sl"))
        else:
            log.info("staff added a subscriber", extra={"ks": data.ks, "staff": grant.subject})
            return RedirectResponse(f"{HOME}?done=dodan", status_code=status.HTTP_303_SEE_OTHER)
    return await _home(request, grant, values=values, errors=errors.ordered(FIELD_IDS.values()), status_code=422)


@subscriber_pages.get(
    f"{HOME}/predloga.csv",
    summary="The sign-up sheet's template: its header row (CSV)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def template_csv(grant: Write) -> Response:
    return csv_response([], header=list(COLUMNS), filename=TEMPLATE_FILE)


@subscriber_pages.post(
    f"{HOME}/uvoz",
    response_class=HTMLResponse,
    summary="Upload a sign-up sheet (CSV): the good rows load, the bad ones are listed by line",
    responses=FORM_ERRORS,
)
async def upload_sheet(request: Request, grant: Write) -> Response:
    ctx = ctx_of(request)
    upload = None
    if not request.headers.get("content-type", "").startswith("application/json"):
        upload = (await request.form()).get("datoteka")
    raw = await upload.read(MAX_UPLOAD + 1) if upload is not None and hasattr(upload, "read") else b""
    errors = Errors()
    if not raw:
        errors.add("datoteka", "Izberite datoteko CSV s prijavnicami.")
    elif len(raw) > MAX_UPLOAD:
        errors.add("datoteka", "Datoteka je prevelika (največ 2 MB). Razdelite jo na več delov.")
    if errors:
        return await _home(request, grant, errors=errors, status_code=422)
    try:
        parsed = parse_subscribers_csv(raw, settings=ctx.settings)
    except CsvFormatError as exc:
        errors.add("datoteka", f"Datoteke ni mogoče prebrati: {exc.message.sl}. Uporabite predlogo CSV s te strani.")
        return await _home(request, grant, errors=errors, status_code=422)
    mine, row_errors = [], list(parsed.errors)
    for row in parsed.rows:
        refusals = [r for k in row.subscriber.ks if (r := grant.refusal(None, k)) is not None]
        if refusals:  # a volunteer loads only their own KS's residents
            row_errors.append(RowError(row.line, refusals[0].prefixed("ks: ", "ks: ")))
        else:
            mine.append(row)
    result = await load_rows(ctx.db, mine, consent_source="import", entered_by=f"import by staff:{grant.subject}")
    row_errors += result.errors
    imported = {
        "name": getattr(upload, "filename", None) or "CSV",
        "loaded": len(result.loaded),
        "errors": sorted(row_errors, key=lambda e: e.line),
        "warnings": parsed.warnings,
    }
    log.info("staff imported a sign-up sheet", extra={"loaded": len(result.loaded), "failed": len(row_errors)})
    return await _home(request, grant, imported=imported)


# ======================================================================================
# Finding a person; export and erase (admin)
# ======================================================================================
def _person_of(form: Mapping[str, Any]) -> tuple[dict[str, str], Person | None, Errors]:
    values = {k: str(form.get(k) or "").strip() for k in FIND_FIELDS}
    errors = Errors()
    phone = None
    if values["phone"]:
        try:
            phone = normalise_phone(values["phone"])
        except ValueError:
            errors.add("find-phone", MESSAGES["sl"]["phone"])
    if not values["email"] and not values["phone"]:
        errors.add("find-email", "Vpišite e-poštni naslov ali telefonsko številko osebe, ki jo iščete.")
    if errors:
        return values, None, errors
    return values, Person.of(email=values["email"] or None, phone=phone), errors


async def subscriptions_in_ks(request: Request, grant: Grant, person: Person) -> list[dict[str, Any]]:
    """The person's subscriptions that reach the staff member's KS, contacts masked unless
    the role may export and erase them."""
    db = ctx_of(request).db
    mine = own_ks(grant)
    reveal = may(grant, "notify.subscribers.privacy")
    rows = []
    async with db.session() as session:
        query = select(Subscriber).where(
            sa.or_(col(Subscriber.email).in_(sorted(person.emails)), col(Subscriber.phone).in_(sorted(person.phones)))
        )
        for sub in (await session.exec(query)).all():
            kss = list((await session.exec(select(SubscriberKs.ks).where(SubscriberKs.subscriber_id == sub.id))).all())
            shown = [k for k in kss if k == ALL_KS or k in mine]
            if not shown:
                continue  # another KS's resident: not this volunteer's to see
            topics = (
                await session.exec(select(SubscriberTopic.topic).where(SubscriberTopic.subscriber_id == sub.id))
            ).all()
            rows.append(
                {
                    "email": (sub.email if reveal else mask_email(sub.email)) if sub.email else None,
                    "phone": (sub.phone if reveal else mask_phone(sub.phone)) if sub.phone else None,
                    "ks": shown,
                    "topics": [TOPIC_LABELS["sl"].get(t, t) for t in topics],
                    "channels": [SUB_CHANNELS.get(c, c) for c in sub.channels],
                    "language": LANGUAGES.get(sub.language, sub.language),
                    "status": STATUS_LABELS.get(sub.status, sub.status),
                    "consent": CONSENT_LABELS.get(sub.consent_source, sub.consent_source),
                    "consent_at": sub.consent_at,
                }
            )
    return rows


@subscriber_pages.post(
    f"{HOME}/iskanje",
    response_class=HTMLResponse,
    summary="Find a person by email or phone: their subscriptions in one's KS (contacts masked for volunteers)",
    responses=FORM_ERRORS,
)
async def find_person(request: Request, grant: Write) -> HTMLResponse:
    form, _ = await _fields(request)
    values, person, errors = _person_of(form)
    if person is None:
        return await _home(request, grant, errors=errors, found={"values": values}, status_code=422)
    found = {"values": values, "rows": await subscriptions_in_ks(request, grant, person)}
    return await _home(request, grant, found=found)


@subscriber_pages.post(
    f"{HOME}/izvoz",
    summary="Everything notify holds about one person, as a JSON download (GDPR access; admin)",
    responses={422: FORM_ERRORS[422]},
)
async def export_person(request: Request, grant: Privacy) -> Response:
    form, _ = await _fields(request)
    values, person, errors = _person_of(form)
    if person is None:
        return await _home(request, grant, errors=errors, found={"values": values}, status_code=422)
    db = ctx_of(request).db
    data = await privacy.export(db, await privacy.find(db, person))
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="narocnik-izvoz.json"'},
    )


@subscriber_pages.post(
    f"{HOME}/izbris",
    response_class=HTMLResponse,
    summary="Erase one person from notify (GDPR; admin): korak=potrdi asks first, korak=izbrisi erases",
    responses={**SEE_OTHER, 422: FORM_ERRORS[422]},
)
async def erase_person(request: Request, grant: Privacy) -> Response:
    ctx = ctx_of(request)
    form, _ = await _fields(request)
    values, person, errors = _person_of(form)
    if person is None:
        return await _home(request, grant, errors=errors, found={"values": values}, status_code=422)
    if str(form.get("korak") or "potrdi") != "izbrisi":
        context = {"section": "narocniki", "values": values, "rows": await subscriptions_in_ks(request, grant, person)}
        return page(request, "staff_subscribers_erase.html", context)
    counts = await privacy.erase(ctx.db, await privacy.find(ctx.db, person), ctx.settings)
    log.info("staff erased a person from notify", extra={"staff": grant.subject, **counts})
    return RedirectResponse(f"{HOME}?done=izbrisan", status_code=status.HTTP_303_SEE_OTHER)
