"""The public sign-up page with double opt-in: nothing but the confirmation itself is sent
before the resident confirms, and each channel is confirmed on its own (services.notify.consent):
the email by its emailed link, the phone by a 6-digit SMS code. A sign-up with both gets the
link first; when it is followed, the code goes to the phone, and until the code is entered no
SMS but the code goes there. A survey answer that asks to be kept informed starts the same
confirmation (`start_confirmation`)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from shared.contact import sms_refusal
from shared.contracts import KS_NAMES
from shared.contracts.notify import TOPICS
from shared.i18n import plural
from shared.models import utcnow
from shared.web import ServiceApp
from shared.web.forms import LANDING, Errors, field_errors
from shared.web.ratelimit import rate_limit
from shared.web.site import remembered_ks

from . import consent as channel_consent
from . import notices, subscribers
from .confirmation import (
    MAX_CODE_ATTEMPTS,
    VALID_FOR,
    code_after_link,
    code_hash,
    confirm_channel,
    read_token,
    read_token_at,
    send_code,
    token_for,
)
from .models import Confirmation, NoticeDraft, Subscriber, SubscriberKs, SubscriberTopic
from .render import Renderer, from_label

subscribe = APIRouter(include_in_schema=False)

CONSENT_HOW = "web"
CONSENT_WORDING = {
    "sl": "Soglašam, da mi Kranj ZA vse pošilja obvestila izbranih krajevnih skupnosti na izbrane kanale. "
    "Od obvestil se lahko kadar koli odjavim s povezavo v vsakem sporočilu.",
    "en": "I agree that Kranj ZA vse sends me notices of the chosen local communities on the chosen channels. "
    "I can unsubscribe at any time with the link in every message.",
}
TOPIC_LABELS = {
    "sl": {
        "general": "Splošna obvestila",
        "utilities": "Komunala (voda, elektrika, ceste)",
        "events": "Dogodki in delavnice",
        "rooms": "Prostori KS",
        "surveys": "Ankete",
        "safety": "Varnost in nujna obvestila",
    },
    "en": {
        "general": "General notices",
        "utilities": "Utilities (water, power, roads)",
        "events": "Events and workshops",
        "rooms": "KS rooms",
        "surveys": "Surveys",
        "safety": "Safety and urgent notices",
    },
}
TEXTS = {
    "sl": {
        "title": "Prijava na obvestila krajevne skupnosti",
        "intro": "Izberite, o čem in kako vas obveščamo. Najprej vam pošljemo le sporočilo za potrditev – "
        "nič drugega, dokler prijave ne potrdite.",
        "other": ("en", "English"),
        "fix": "Prosimo, popravite:",
        "where": "Kam naj pošiljamo obvestila",
        "email": "E-pošta",
        "phone": "Mobilni telefon (za SMS)",
        "one_of": "Vpišite vsaj enega od obeh.",
        "channels": "Kanali",
        "channels_hint": "Če ne izberete ničesar, pošiljamo na vse, kar ste vpisali zgoraj.",
        "digest_legend": "Kako pogosto po e-pošti",
        "digest_each": "Vsako obvestilo posebej, ko ga objavimo",
        "digest_weekly": "En tedenski pregled vsak ponedeljek zjutraj (nujna obvestila vseeno takoj)",
        "ks": "Krajevne skupnosti",
        "all_ks": "Vse krajevne skupnosti (cel Kranj)",
        "topics": "Teme",
        "language": "Jezik sporočil",
        "submit": "Prijava",
    },
    "en": {
        "title": "Sign up for notices of your local community",
        "intro": "Choose what we tell you about and how. First we send you only a message to confirm - "
        "nothing else until you confirm.",
        "other": ("sl", "Slovenščina"),
        "fix": "Please correct:",
        "where": "Where to send notices",
        "email": "Email",
        "phone": "Mobile phone (for SMS)",
        "one_of": "Give at least one of the two.",
        "channels": "Channels",
        "channels_hint": "If you choose none, we send to everything you entered above.",
        "digest_legend": "How often by email",
        "digest_each": "Each notice on its own, when it is published",
        "digest_weekly": "One weekly digest every Monday morning (urgent notices still at once)",
        "ks": "Local communities",
        "all_ks": "All local communities (all of Kranj)",
        "topics": "Topics",
        "language": "Language of the messages",
        "submit": "Sign up",
    },
}
# The ids of the form's inputs that the error summary links to (subscribe.html), in the
# order of the form; a group of checkboxes is reached at its first box.
FIELD_IDS = {
    "email": "email",
    "phone": "phone",
    "channels": "channel-email",
    "ks": "ks-all",
    "topics": "topic-general",
    "consent": "consent",
}
MESSAGES = {
    "sl": {
        "email": "Vpišite e-poštni naslov v obliki ime@primer.si.",
        "phone": "Vpišite slovensko mobilno številko, na primer 040 123 456.",
        "contact": "Vpišite e-poštni naslov ali mobilno številko (ali oboje).",
        "email_for_channel": "Vpišite e-poštni naslov ali odstranite kljukico pri »E-pošta«.",
        "phone_for_channel": "Vpišite mobilno številko ali odstranite kljukico pri »SMS«.",
        "channels": "Izberite, kam naj pošiljamo obvestila: e-pošta, SMS ali oboje.",
        "ks": "Izberite vsaj eno krajevno skupnost ali »Vse krajevne skupnosti«.",
        "topics": "Izberite vsaj eno temo.",
        "consent": "Za prijavo potrebujemo vaše soglasje: označite polje »Soglašam …« na koncu obrazca.",
    },
    "en": {
        "email": "Enter an email address like name@example.com.",
        "phone": "Enter a Slovenian mobile number, for example 040 123 456.",
        "contact": "Enter an email address or a mobile number (or both).",
        "email_for_channel": "Enter an email address, or untick “Email”.",
        "phone_for_channel": "Enter a mobile number, or untick “SMS”.",
        "channels": "Choose where we send notices: email, SMS or both.",
        "ks": "Choose at least one local community, or “All local communities”.",
        "topics": "Choose at least one topic.",
        "consent": "We need your consent to sign you up: tick “I agree …” at the end of the form.",
    },
}


def _subscribe_errors(exc: ValidationError, lang: str) -> Errors:
    """The sign-up model's errors, by field, in words a resident understands."""
    m = MESSAGES[lang]
    return field_errors(
        exc,
        {name: m[name] for name in ("email", "phone", "channels", "ks", "topics")},
        [
            ("channel email needs", m["email_for_channel"], "email"),
            ("channel sms needs", m["phone_for_channel"], "phone"),
            ("at least one channel", m["channels"], "channels"),
            ("or a phone number", m["contact"], "email"),
        ],
        ids=FIELD_IDS,
    )


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx


def _page_language(request: Request, chosen: str | None = None) -> str:
    """Slovenian first: English only when asked for (`?lang=en` or the form's choice)."""
    lang = chosen or request.query_params.get("lang")
    return lang if lang in ("sl", "en") else "sl"


def _form(
    request: Request, values: Mapping[str, object], errors: Errors, code: int = 200, lang: str = "sl"
) -> Response:
    ctx = _ctx(request)
    return ctx.templates.TemplateResponse(
        request,
        "subscribe.html",
        {
            "lang": lang,
            "T": TEXTS[lang],
            "values": values,
            "errors": errors,
            "topics": [(t, TOPIC_LABELS[lang][t]) for t in TOPICS],
            "consent": CONSENT_WORDING[lang],
        },
        status_code=code,
    )


@subscribe.get("/subscribe", response_class=HTMLResponse)
async def subscribe_page(request: Request) -> Response:
    lang = _page_language(request)
    # No channel ticked: nothing that fails an SMS-only (or email-only) sign-up; without a
    # tick every channel a contact is given for is used. The KS: the one in the link (a
    # poster's or the kiosk's QR code), else the one this browser picked on another page.
    wanted = request.query_params.get("ks")
    ks = wanted if wanted in KS_NAMES else remembered_ks(request)
    values = {
        "topics": ["general", "utilities", "events", "safety"],
        "channels": [],
        "ks": [ks] if ks else [],
        "language": lang,
    }
    return _form(request, values, Errors(), lang=lang)


@subscribe.post("/subscribe", response_class=HTMLResponse, dependencies=[rate_limit("subscribe")])
async def subscribe_submit(
    request: Request,
    email: Annotated[str, Form()] = "",
    phone: Annotated[str, Form()] = "",
    ks: Annotated[list[str] | None, Form()] = None,
    topics: Annotated[list[str] | None, Form()] = None,
    channels: Annotated[list[str] | None, Form()] = None,
    language: Annotated[str, Form()] = "sl",
    consent: Annotated[str, Form()] = "",
    digest: Annotated[str, Form()] = "",
) -> Response:
    ctx = _ctx(request)
    page_lang = _page_language(request, language)
    values = {
        "email": email,
        "phone": phone,
        "ks": ks or [],
        "topics": topics or [],
        "channels": channels or [],
        "language": page_lang,
        "digest": digest == "weekly",
        "consent": consent == "yes",
    }
    data = None
    try:
        data = subscribers.SubscriberIn(
            email=email or None,
            phone=phone or None,
            ks=ks or [],
            topics=topics or [],
            channels=channels or None,
            language=language if language in ("sl", "en") else "sl",
            digest=digest == "weekly",
        )
        errors = Errors()
    except ValidationError as exc:
        errors = _subscribe_errors(exc, page_lang)
    if data is not None and (refusal := sms_refusal(data.phone, ctx.settings)):
        errors.add(FIELD_IDS["phone"], refusal.in_language(page_lang))
    if consent != "yes":
        errors.add(FIELD_IDS["consent"], MESSAGES[page_lang]["consent"])
    errors = errors.ordered(FIELD_IDS.values())
    if errors or data is None:
        return _form(request, values, errors, code=422, lang=page_lang)

    renderer: Renderer = ctx.extra["renderer"]
    # The answer never tells whether a contact is subscribed (issue 15): an email sign-up
    # always gets the same "check your inbox" page; a phone sign-up always goes on to the
    # code page, and the number always gets a code (for an active subscriber, entering it
    # changes nothing). An email or a phone that belongs to an active subscriber is never
    # taken over by a new sign-up, and a clash of the two is no longer a 500.
    async with ctx.db.session() as session:
        found: list[Subscriber] = []
        if data.email:
            found += (await session.exec(select(Subscriber).where(col(Subscriber.email) == data.email))).all()
        if data.phone:
            found += (await session.exec(select(Subscriber).where(col(Subscriber.phone) == data.phone))).all()
        active = [s for s in found if s.status == "active"]
        if active and data.email:
            # Nothing to confirm, nothing sent; the same page as a new sign-up.
            return ctx.templates.TemplateResponse(request, "subscribe_sent.html", {"by": "email"})
        if active:  # a phone-only sign-up of an active number: a code, as for a new one
            return await _code_for_active(ctx, session, renderer, active[0], data)
        for stale in {s.id: s for s in found}.values():  # pending or unsubscribed before: start again
            await session.delete(stale)
        await session.flush()
        subscriber = Subscriber(
            email=data.email,
            phone=data.phone,
            language=data.language,
            channels=list(data.channels or []),
            digest=data.digest,
            status="pending",
            consent_source="web",
            consent_text=CONSENT_WORDING[data.language],
        )
        session.add(subscriber)
        await session.flush()
        session.add_all(SubscriberKs(subscriber_id=subscriber.id, ks=k) for k in data.ks)
        session.add_all(SubscriberTopic(subscriber_id=subscriber.id, topic=t) for t in data.topics)
        for channel in subscriber.channels:
            await channel_consent.request(
                session, subscriber.id, channel, how=CONSENT_HOW, wording=subscriber.consent_text
            )
        where = from_label(list(data.ks))
        token = token_for(ctx, subscriber.id)
        if data.email:
            link = f"{ctx.settings.public_base('notify')}/subscribe/confirm/{token}"
            title, body = renderer.personal("subscribe_confirm", data.language, link=link, where=where)
            confirmation = Confirmation(subscriber_id=subscriber.id, expires_at=utcnow() + VALID_FOR)
            email_to, phone_to, channels_used = data.email, None, ["email"]
        else:
            code = f"{secrets.randbelow(1_000_000):06d}"
            title, body = renderer.personal("subscribe_code", data.language, code=code)
            confirmation = Confirmation(
                subscriber_id=subscriber.id,
                code_hash=code_hash(ctx, subscriber.id, code),
                expires_at=utcnow() + VALID_FOR,
            )
            email_to, phone_to, channels_used = None, data.phone, ["sms"]
        session.add(confirmation)
        notice = NoticeDraft(
            source="/kranj/notify/subscribe",
            source_id=subscriber.id,
            title=title,
            body=body,
            ks=list(data.ks),
            topic="general",
            channels=channels_used,
            language=data.language,
        )
        await notices.record_personal(session, notice, email=email_to, phone=phone_to, language=data.language)
        try:
            await session.commit()
        except IntegrityError:  # the same contact signing up twice at the same moment
            await session.rollback()
            return ctx.templates.TemplateResponse(
                request, "subscribe_sent.html", {"by": "email" if data.email else "sms"}
            )
    ctx.extra["worker"].wake()
    if data.email:
        return ctx.templates.TemplateResponse(request, "subscribe_sent.html", {"by": "email"})
    return RedirectResponse(f"/subscribe/code/{token}{LANDING}", status_code=status.HTTP_303_SEE_OTHER)


async def _code_for_active(
    ctx: ServiceApp, session: Any, renderer: Renderer, subscriber: Subscriber, data: subscribers.SubscriberIn
) -> Response:
    """A phone sign-up of a number already subscribed: the same SMS code and code page as a
    new sign-up (so the answer does not tell), and the subscription stays as it was."""
    await send_code(ctx, session, renderer, subscriber, link=False, language=data.language)
    await session.commit()
    ctx.extra["worker"].wake()
    token = token_for(ctx, subscriber.id)
    return RedirectResponse(f"/subscribe/code/{token}{LANDING}", status_code=status.HTTP_303_SEE_OTHER)


@subscribe.get("/subscribe/confirm/{token}", response_class=HTMLResponse)
async def confirm_link(token: str, request: Request) -> Response:
    ctx = _ctx(request)
    subscriber_id, issued_at = read_token_at(ctx, token)
    if not await confirm_channel(ctx, subscriber_id, "email", issued_at, request):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Te prijave ni več. / This sign-up no longer exists.")
    code_token = await code_after_link(ctx, subscriber_id)
    if code_token is not None:  # the phone is confirmed on its own, by its code
        return ctx.templates.TemplateResponse(
            request, "subscribe_code.html", {"token": code_token, "errors": None, "email_confirmed": True}
        )
    return ctx.templates.TemplateResponse(request, "subscribe_done.html", {})


@subscribe.get("/subscribe/code/{token}", response_class=HTMLResponse)
async def code_page(token: str, request: Request) -> Response:
    ctx = _ctx(request)
    read_token(ctx, token)
    return ctx.templates.TemplateResponse(request, "subscribe_code.html", {"token": token, "errors": None})


@subscribe.post("/subscribe/code/{token}", response_class=HTMLResponse, dependencies=[rate_limit("sms_code")])
async def code_submit(token: str, request: Request, code: Annotated[str, Form()] = "") -> Response:
    ctx = _ctx(request)
    subscriber_id, issued_at = read_token_at(ctx, token)
    async with ctx.db.session() as session:
        confirmation = await session.get(Confirmation, subscriber_id)
        if confirmation is None or confirmation.code_hash is None or confirmation.expires_at <= utcnow():
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "Koda ni več veljavna. Prosimo, prijavite se znova.")
        if confirmation.attempts >= MAX_CODE_ATTEMPTS:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "Preveč poskusov. Prosimo, prijavite se znova.",
                {"Retry-After": "3600"},
            )
        good = hmac.compare_digest(confirmation.code_hash, code_hash(ctx, subscriber_id, code.strip()))
        if not good:
            confirmation.attempts += 1
            session.add(confirmation)
            await session.commit()
            left = MAX_CODE_ATTEMPTS - confirmation.attempts
            return ctx.templates.TemplateResponse(
                request,
                "subscribe_code.html",
                {
                    "token": token,
                    "errors": {
                        "code": "Koda ni pravilna. Še "
                        + plural(left, {"one": "poskus", "two": "poskusa", "few": "poskusi", "other": "poskusov"})
                        + "."
                    },
                },
                status_code=422,
            )
    await confirm_channel(ctx, subscriber_id, "sms", issued_at, request)
    return ctx.templates.TemplateResponse(request, "subscribe_done.html", {})
