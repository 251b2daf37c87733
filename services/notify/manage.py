"""The resident's own "manage my notices" page, reached by the signed link in every message:
change KS, topics, channels and language, or leave. Plain HTML forms, no JavaScript. A
forged or altered link gets 400 and changes nothing."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from shared.contracts import KS_NAMES
from shared.logs import mask_email, mask_phone
from shared.web import ServiceApp
from shared.web.forms import Errors
from shared.web.ratelimit import rate_limit

from . import exports, subscribers
from .render import Renderer
from .subscribe import TOPIC_LABELS

manage = APIRouter(include_in_schema=False)
INVALID = "Povezava za urejanje obvestil ni veljavna. / This link is not valid."


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx


def _subscriber_id(request: Request, token: str) -> str:
    renderer: Renderer = _ctx(request).extra["renderer"]
    subscriber_id = renderer.read_manage_token(token)
    if subscriber_id is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, INVALID)
    return subscriber_id


async def _page(
    request: Request,
    token: str,
    sub: subscribers.SubscriberOut,
    *,
    message: str | None = None,
    errors: Errors | None = None,
    chosen: dict[str, object] | None = None,
    code: int = 200,
) -> Response:
    """The manage page; after a failed save, `chosen` is what the resident ticked (kept)."""
    ctx = _ctx(request)
    return ctx.templates.TemplateResponse(
        request,
        "manage.html",
        {
            "token": token,
            "sub": sub,
            "email": mask_email(sub.email) if sub.email else None,
            "phone": mask_phone(sub.phone) if sub.phone else None,
            "topics": list(TOPIC_LABELS["sl"].items()),
            "message": message,
            "errors": errors or Errors(),
            "chosen": chosen,
        },
        status_code=code,
    )


async def _load(request: Request, token: str) -> tuple[str, subscribers.SubscriberOut]:
    subscriber_id = _subscriber_id(request, token)
    sub = await subscribers.get_subscription(_ctx(request).db, subscriber_id)
    if sub is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Te prijave ni več. / This subscription no longer exists.")
    return subscriber_id, sub


def _first_channel(sub: subscribers.SubscriberOut) -> str:
    """The id of the first channel box on the page (the email's when there is an email)."""
    return "channel-email" if sub.email else "channel-sms"


def _manage_errors(sub: subscribers.SubscriberOut, chosen: dict[str, Any]) -> Errors:
    """What cannot be saved, by field (the ids of manage.html), in the order of the form."""
    errors = Errors()
    available = [c for c, v in (("email", sub.email), ("sms", sub.phone)) if v]
    if not any(c in available for c in chosen["channels"]):
        errors.add(
            _first_channel(sub),
            "Izberite vsaj en kanal (e-pošta ali SMS). Če ne želite ničesar več, se odjavite spodaj.",
        )
    if not any(k == "*" or k in KS_NAMES for k in chosen["ks"]):
        errors.add("ks-all", "Izberite vsaj eno krajevno skupnost ali »Vse krajevne skupnosti«.")
    if not any(t in TOPIC_LABELS["sl"] for t in chosen["topics"]):
        errors.add("topic-general", "Izberite vsaj eno temo.")
    if chosen["language"] not in ("sl", "en"):
        errors.add("language-sl", "Izberite jezik sporočil: slovenščina ali angleščina.")
    return errors


@manage.get("/manage/{token}", response_class=HTMLResponse)
async def manage_page(token: str, request: Request) -> Response:
    _, sub = await _load(request, token)
    return await _page(request, token, sub)


@manage.post("/manage/{token}", response_class=HTMLResponse, dependencies=[rate_limit("link")])
async def manage_submit(
    token: str,
    request: Request,
    action: Annotated[str, Form()] = "save",
    ks: Annotated[list[str] | None, Form()] = None,
    topics: Annotated[list[str] | None, Form()] = None,
    channels: Annotated[list[str] | None, Form()] = None,
    language: Annotated[str, Form()] = "sl",
    digest: Annotated[str | None, Form()] = None,
) -> Response:
    subscriber_id, sub = await _load(request, token)
    db = _ctx(request).db
    if action == "leave":
        await subscribers.leave(db, subscriber_id)
        left = await subscribers.get_subscription(db, subscriber_id)
        assert left is not None
        return await _page(request, token, left, message="Odjavljeni ste. Ne boste več prejemali obvestil.")
    chosen: dict[str, object] = {
        "ks": ks or [],
        "topics": topics or [],
        "channels": channels or [],
        "language": language,
        "digest": sub.digest if digest is None else digest == "weekly",
    }
    errors = _manage_errors(sub, chosen)
    if errors:
        return await _page(request, token, sub, errors=errors, chosen=chosen, code=422)
    try:
        changed = await subscribers.change_subscription(
            db,
            subscriber_id,
            ks=ks or [],
            topics=topics or [],
            channels=channels or [],
            language=language,
            digest=None if digest is None else digest == "weekly",  # a form without the choice keeps it
        )
    except ValueError as exc:  # what the form cannot check (the subscription changed meanwhile)
        return await _page(request, token, sub, errors=Errors({_first_channel(sub): str(exc)}), chosen=chosen, code=422)
    assert changed is not None
    return await _page(request, token, changed, message="Shranjeno. Obvestila boste prejemali tako, kot ste izbrali.")


@manage.post("/manage/{token}/izvoz", response_class=HTMLResponse, dependencies=[rate_limit("link")])
async def request_export(token: str, request: Request) -> Response:
    """GDPR access from the manage page: everything the platform holds, as a link sent to
    the subscription's confirmed address once every service has answered (services/notify/exports.py)."""
    subscriber_id, sub = await _load(request, token)
    try:
        asked = await exports.request_export(_ctx(request).db, subscriber_id)
    except exports.ExportRefused as refused:
        return await _page(request, token, sub, message=refused.message.in_language("sl"), code=409)
    where = mask_email(asked.email) if asked.email else mask_phone(asked.phone or "")
    return await _page(
        request,
        token,
        sub,
        message=f"Zahteva je oddana. Ko zberemo vaše podatke, vam povezavo pošljemo na {where}.",
    )


@manage.get("/manage/izvoz/{token}")
async def download_export(token: str, request: Request) -> Response:
    """The document the link in the message leads to (JSON, for the resident to keep)."""
    ctx = _ctx(request)
    request_id = exports.read_export_token(ctx.settings, token)
    found = await exports.completed(ctx.db, request_id) if request_id else None
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"Povezava ni veljavna ali je potekla (velja {exports.EXPORT_DAYS} dni). Na strani za urejanje "
            "obvestil lahko podatke zahtevate znova. / The link is not valid or has expired.",
        )
    body = json.dumps(await exports.document(ctx.db, found), ensure_ascii=False, indent=2, default=str)
    return Response(
        body.encode(),
        media_type="application/json; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="kranj-za-vse-moji-podatki.json"',
            "Cache-Control": "no-store",
        },  # fmt: skip
    )
