"""HTTP surface of notify: staff API, noticeboard pages and feeds, unsubscribe (thin)."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from feedgen.feed import FeedGenerator
from pydantic import BaseModel, EmailStr, Field

from shared.auth import Grant, Permit, Record
from shared.contact import ContactFields, sms_refusal
from shared.contracts import KS_NAMES, NoticeRequested, ks_name
from shared.contracts.notify import Language
from shared.db import Database
from shared.logs import mask_email, mask_phone, scrub
from shared.privacy import Person
from shared.web import ServiceApp
from shared.web.csrf import csrf_exempt
from shared.web.ratelimit import RATE_LIMITED, rate_limit
from shared.web.site import remember_ks

from . import notices, privacy, subscribers
from .domain import normalise_phone
from .models import Notice
from .render import Renderer
from .sms import estimated_cost
from .subscribers import SubscriberIn, SubscriberOut

api = APIRouter(prefix="/api/v1", tags=["notify"])
pages = APIRouter(include_in_schema=False)


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx


def _known_ks(ks: str) -> str:
    if ks not in KS_NAMES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Krajevne skupnosti {ks!r} ni. / No such KS.")
    return ks


# The records of the permission table (shared/permissions.py).
async def notice_record(request: Request) -> Record:
    """A notice belongs to the KS it was sent to; one for several KS (or the whole city) to the
    city ("*"): only an administrator (or staff of every KS) sees its deliveries."""
    async with _ctx(request).db.session() as session:
        notice = await session.get(Notice, request.path_params["notice_id"])
    if notice is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Obvestila ni. / No such notice.")
    kss = set(notice.ks)
    return Record(ks=kss.pop() if len(kss) == 1 else "*")


async def ks_record(request: Request) -> Record:
    return Record(ks=_known_ks(request.path_params["ks"]))


Subscribers = Annotated[Grant, Permit("notify.subscribers.write")]
Privacy = Annotated[Grant, Permit("notify.subscribers.privacy")]
DeliveriesRead = Annotated[Grant, Permit("notify.deliveries.read", record=notice_record)]
Resend = Annotated[Grant, Permit("notify.deliveries.resend", record=notice_record)]
PreviewDep = Annotated[Grant, Permit("notify.preview")]
KsContactsRead = Annotated[Grant, Permit("notify.ks-contacts.read", record=ks_record)]
KsContactsWrite = Annotated[Grant, Permit("notify.ks-contacts.write", record=ks_record)]


@api.post(
    "/subscribers",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriberOut,
    summary="Subscribe a resident on their behalf (staff); consent recorded as staff-entered",
    responses={409: {"description": "That email address or phone number is subscribed already."}},
)
async def add_subscriber(body: SubscriberIn, request: Request, staff: Subscribers) -> SubscriberOut:
    for ks in body.ks:
        staff.require(None, ks)
    if refusal := sms_refusal(body.phone, _ctx(request).settings):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(refusal))
    try:
        return await subscribers.add_subscriber(
            _ctx(request).db, body, consent_source="staff", entered_by=f"staff:{staff.subject}"
        )
    except subscribers.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


class ContactIn(BaseModel):
    """Whose data: POSTed, so contact data never lands in URLs or access logs."""

    email: str | None = None
    phone: str | None = None


@api.post("/subscribers/export", summary="Everything notify holds about one resident, as JSON (GDPR access; admin)")
async def export_subscriber(body: ContactIn, request: Request, staff: Privacy) -> dict[str, Any]:
    db = _ctx(request).db
    return await privacy.export(db, await privacy.find(db, _person(body)))


@api.post("/subscribers/erase", summary="Erase one resident's contact data from notify (GDPR erasure; admin)")
async def erase_subscriber(body: ContactIn, request: Request, staff: Privacy) -> dict[str, int]:
    ctx = _ctx(request)
    return await privacy.erase(ctx.db, await privacy.find(ctx.db, _person(body)), ctx.settings)


def _person(body: ContactIn) -> Person:
    if not body.email and not body.phone:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "Vpišite e-poštni naslov ali telefonsko številko. / Give an email address or a phone number.",
        )
    try:
        return Person.of(email=body.email, phone=normalise_phone(body.phone) if body.phone else None)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"phone: {exc}") from None


class DeliveryRow(BaseModel):
    id: str
    channel: str
    to: str = Field(description="Masked contact: never the full address in the log")
    status: str
    attempts: int
    last_error: str | None = Field(description="Why it failed; contact data in it masked")
    reference: str | None
    created_at: datetime
    sent_at: datetime | None


class DeliveryLog(BaseModel):
    notice_id: str
    counts: dict[str, dict[str, int]] = Field(description="channel -> state -> count")
    deliveries: list[DeliveryRow]


@api.get(
    "/notices/{notice_id}/deliveries",
    response_model=DeliveryLog,
    summary="What was sent to whom, on which channel, with what result (staff of the notice's KS; contacts masked)",
)
async def deliveries(notice_id: str, request: Request, staff: DeliveriesRead) -> DeliveryLog:
    return await delivery_log_of(_ctx(request).db, notice_id)


async def delivery_log_of(db: Database, notice_id: str) -> DeliveryLog:
    """A notice's delivery log as staff see it: counts, and each delivery with its contact
    and any contact data in its error masked (the API's and the staff pages' one view)."""
    rows = await notices.delivery_log(db, notice_id)
    return DeliveryLog(
        notice_id=notice_id,
        counts=await notices.delivery_summary(db, notice_id),
        deliveries=[
            DeliveryRow(
                **row.model_dump(include={"id", "channel", "status", "attempts", "reference"}),
                last_error=scrub(row.last_error) if row.last_error else None,
                to=mask_email(row.address) if row.channel == "email" else mask_phone(row.address),
                created_at=row.created_at,
                sent_at=row.sent_at,
            )
            for row in rows
        ],
    )


@api.post(
    "/notices/{notice_id}/deliveries/resend",
    summary="Queue the failed deliveries of a notice again (staff of the notice's KS)",
)
async def resend(notice_id: str, request: Request, staff: Resend) -> dict[str, int]:
    ctx = _ctx(request)
    count = await notices.resend_failed(ctx.db, notice_id)
    ctx.extra["worker"].wake()
    return {"requeued": count}


class PreviewIn(NoticeRequested):
    language: Language = "sl"


class SmsPreview(BaseModel):
    text: str
    encoding: str = Field(description="GSM-7 or UCS-2")
    characters: int
    units: int = Field(description="septets (GSM-7) or UTF-16 code units (UCS-2)")
    segments: int
    transliterated: bool
    estimated_cost_eur: float


class Preview(BaseModel):
    email_subject: str
    email_text: str
    email_html: str
    sms: SmsPreview
    noticeboard_card_html: str


@api.post("/preview", response_model=Preview, summary="How a notice will read on every channel (staff)")
async def preview(body: PreviewIn, request: Request, staff: PreviewDep) -> Preview:
    for ks in body.ks:
        staff.require(None, ks)
    return preview_of(_ctx(request), body)


def preview_of(ctx: ServiceApp, body: PreviewIn) -> Preview:
    """How `body` will read on every channel (the API's and the staff pages' one preview)."""
    renderer: Renderer = ctx.extra["renderer"]
    notice = Notice(
        source="/preview",
        source_id="preview",
        title=body.title,
        body=body.body,
        ks=list(body.ks),
        topic=body.topic,
        channels=list(body.channels),
        urgency=body.urgency,
        url=str(body.url) if body.url else None,
        language=body.language,
        valid_until=body.valid_until,
    )
    link = renderer.unsubscribe_url("preview", "sms")
    email = renderer.email(notice, body.language, renderer.unsubscribe_url("preview", "email"))
    info = renderer.sms_info(notice, body.language, link)
    card = ctx.templates.get_template("_card.html").render(notice=notice)
    return Preview(
        email_subject=email.subject,
        email_text=email.text,
        email_html=email.html,
        sms=SmsPreview(
            text=info.text,
            encoding=info.encoding,
            characters=len(info.text),
            units=info.units,
            segments=info.segments,
            transliterated=info.transliterated,
            estimated_cost_eur=estimated_cost(info, ctx.settings.sms_price_per_segment),
        ),
        noticeboard_card_html=card,
    )


@pages.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/noticeboard", status_code=307)


@pages.get("/noticeboard", response_class=HTMLResponse)
async def city_board(request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    current = await notices.noticeboard(ctx.db, None)
    return ctx.templates.TemplateResponse(request, "noticeboard.html", {"ks": None, "notices": current})


@pages.get("/noticeboard/{ks}", response_class=HTMLResponse)
async def ks_board(ks: str, request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    current = await notices.noticeboard(ctx.db, _known_ks(ks))
    page = ctx.templates.TemplateResponse(request, "noticeboard.html", {"ks": ks, "notices": current})
    return remember_ks(request, page, ks, ctx.settings)


@pages.get("/noticeboard/{ks}/feed.atom")
async def ks_feed(ks: str, request: Request) -> Response:
    ctx = _ctx(request)
    current = await notices.noticeboard(ctx.db, _known_ks(ks), urgent_first=False)
    base = ctx.settings.public_base("notify")
    return Response(atom_feed(ks, current, base), media_type="application/atom+xml; charset=utf-8")


def atom_feed(ks: str | None, notices: list[Notice], base: str) -> bytes:
    """The Atom feed of one KS's noticeboard, or of the whole city's when `ks` is None."""
    fg = FeedGenerator()
    page = f"{base}/noticeboard/{ks}" if ks else f"{base}/noticeboard"
    fg.id(page)
    if ks:
        fg.title(f"Obvestila KS {ks_name(ks)}")
        fg.subtitle(f"Oglasna deska krajevne skupnosti {ks_name(ks)} · Kranj ZA vse")
    else:
        fg.title("Obvestila Mestne občine Kranj")
        fg.subtitle("Oglasna deska vseh krajevnih skupnosti Mestne občine Kranj · Kranj ZA vse")
    fg.link(href=page, rel="alternate")
    fg.link(href=f"{page}/feed.atom", rel="self")
    fg.language("sl")
    fg.author({"name": f"KS {ks_name(ks)}" if ks else "Mestna občina Kranj"})
    for notice in reversed(notices):  # feedgen prepends: oldest first gives newest on top
        entry = fg.add_entry()
        entry.id(f"urn:uuid:{notice.id}")
        entry.title(notice.title)
        entry.content(notice.body or notice.title, type="text")
        entry.updated(notice.created_at)
        entry.published(notice.created_at)
        entry.link(href=notice.url or f"{page}#n-{notice.id}")
        for slug in notice.ks:  # which KS it is for: the city-wide feed mixes all of them
            entry.category(term=slug, label=ks_name(slug))
    if notices:
        fg.updated(max(n.created_at for n in notices))
    return fg.atom_str(pretty=True)


def _renderer(request: Request) -> Renderer:
    return _ctx(request).extra["renderer"]


@pages.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    target = _renderer(request).read_unsubscribe_token(token)
    if target is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Povezava za odjavo ni veljavna. / Invalid link.")
    return ctx.templates.TemplateResponse(
        request,
        "unsubscribe.html",
        {"token": token, "channel": target[1], "done": False, "manage_url": _renderer(request).manage_url(target[0])},
    )


@pages.post("/unsubscribe/{token}", response_class=HTMLResponse, dependencies=[rate_limit("unsubscribe")])
@csrf_exempt  # RFC 8058 one-click posts come from mail providers; the signed link protects it
async def unsubscribe(token: str, request: Request) -> HTMLResponse:
    """RFC 8058 one-click (body `List-Unsubscribe=One-Click`) and the page's own button."""
    ctx = _ctx(request)
    target = _renderer(request).read_unsubscribe_token(token)
    if target is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Povezava za odjavo ni veljavna. / Invalid link.")
    await subscribers.unsubscribe_channel(ctx.db, *target)
    return ctx.templates.TemplateResponse(
        request,
        "unsubscribe.html",
        {"token": token, "channel": target[1], "done": True, "manage_url": _renderer(request).manage_url(target[0])},
    )


class InboundSms(BaseModel):
    """What the SMS gateway forwards when a resident texts back."""

    model_config = {"populate_by_name": True}

    from_: str = Field(alias="from", description="Sender's number, E.164 (+386...)")
    text: str = Field(max_length=1600)


class InboundSmsResult(BaseModel):
    action: str = Field(description="`stopped` (STOP/ODJAVA) or `ignored` (any other text)")
    subscriber_found: bool = False
    subscription_status: str | None = Field(default=None, description="active, or unsubscribed if no channel is left")
    channels: list[str] = Field(default_factory=list, description="The channels the subscription keeps")
    skipped_deliveries: int = Field(default=0, description="Queued SMS to that number that will not be sent")


@api.post(
    "/sms/inbound",
    response_model=InboundSmsResult,
    summary="Inbound SMS webhook of the gateway: STOP or ODJAVA stops SMS to that number",
    description="Authenticated with `Authorization: Bearer <KRANJ_SMS_GATEWAY_TOKEN>` (401 otherwise); "
    "404 when no gateway token is configured. `STOP`/`ODJAVA` (any case, spaces and punctuation ignored) "
    "removes SMS from that number's subscription (which ends when no channel is left) and skips SMS still "
    "queued for it. Other texts are acknowledged and ignored. Limited per sender number (429 with Retry-After).",
    dependencies=[rate_limit("sms_inbound")],
    responses={
        401: {"description": "Not the gateway's token."},
        404: {"description": "No gateway token is configured."},
        429: RATE_LIMITED,
    },
)
async def sms_inbound(
    body: InboundSms, request: Request, authorization: str | None = Header(default=None)
) -> InboundSmsResult:
    ctx = _ctx(request)
    secret = ctx.settings.sms_gateway_token
    if secret is None or not secret.get_secret_value():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    scheme, _, given = (authorization or "").partition(" ")
    expected = secret.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Napačen žeton prehoda SMS. / Bad gateway token.",
            {"WWW-Authenticate": "Bearer"},
        )
    try:
        phone = normalise_phone(body.from_)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"from: {exc}") from None
    if not subscribers.is_stop(body.text):
        return InboundSmsResult(action="ignored")
    return InboundSmsResult(**await subscribers.stop_sms(ctx.db, phone))


class KsContactIn(ContactFields):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, description="E.164 (Slovenian formats accepted)")


class KsContactsIn(BaseModel):
    contacts: list[KsContactIn] = Field(max_length=20, description="The whole list: it replaces the previous one")


class KsContactsOut(BaseModel):
    ks: str
    contacts: list[KsContactIn]


@api.put(
    "/ks/{ks}/contacts",
    response_model=KsContactsOut,
    summary="Who at a KS is told of new booking requests (admin or that KS's staff); replaces the list",
)
async def put_ks_contacts(ks: str, body: KsContactsIn, request: Request, staff: KsContactsWrite) -> KsContactsOut:
    ctx = _ctx(request)
    for number, contact in enumerate(body.contacts, start=1):
        if refusal := sms_refusal(contact.phone, ctx.settings):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"{number}. kontakt / contact {number}: {refusal}"
            )
    contacts = [c.model_dump() for c in body.contacts]
    await subscribers.set_ks_contacts(ctx.db, ks, contacts)
    return KsContactsOut(ks=ks, contacts=body.contacts)


@api.get("/ks/{ks}/contacts", response_model=KsContactsOut, summary="A KS's contacts for booking requests (staff)")
async def get_ks_contacts(ks: str, request: Request, staff: KsContactsRead) -> KsContactsOut:
    rows = await subscribers.ks_contacts(_ctx(request).db, ks)
    return KsContactsOut(ks=ks, contacts=[KsContactIn.model_construct(**r) for r in rows])
