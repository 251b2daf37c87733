"""Short signed links for personal SMS: `/k/{code}` redirects to the long signed link of
another service (cancel a registration, cancel a booking).

A personal SMS must keep its action link whatever the segment cap cuts (services.notify.render
keeps the paragraph holding it out of the cut); the other services' signed links are over 100
characters, a third of a segment budget, so notify sends `<public URL>/k/<14 characters>`
instead. The code is 8 random characters and 6 of their HMAC under `KRANJ_SECRET_KEY`: a
forged or mistyped code is refused without a database read, a real one is looked up in
`short_links` (migration notify_0006), which holds the target and no contact data. The
target's own signature still decides what the link may do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.settings import Settings
from shared.web import ServiceApp

from .models import ShortLink

links = APIRouter(include_in_schema=False)

PREFIX = "/k/"
SALT = b"kranj.short-link.v1"
RANDOM_CHARS = 8
SIGNATURE_CHARS = 6


def _signature(settings: Settings, random_part: str) -> str:
    digest = hmac.new(settings.signing_key().encode(), SALT + random_part.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def signed_code(settings: Settings) -> str:
    random_part = secrets.token_urlsafe(6)[:RANDOM_CHARS]
    return random_part + _signature(settings, random_part)


def code_is_signed(settings: Settings, code: str) -> bool:
    if len(code) != RANDOM_CHARS + SIGNATURE_CHARS or not code.isascii():
        return False
    random_part, signature = code[:RANDOM_CHARS], code[RANDOM_CHARS:]
    return hmac.compare_digest(signature, _signature(settings, random_part))


def short_base(settings: Settings) -> str:
    return settings.public_base("notify") + PREFIX


async def shorten(session: AsyncSession, settings: Settings, target: str) -> str:
    """A short link to `target`, written with the session's transaction."""
    code = signed_code(settings)
    session.add(ShortLink(code=code, target=target))
    return short_base(settings) + code


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx


@links.get("/k/{code}", response_class=RedirectResponse, status_code=status.HTTP_303_SEE_OTHER)
async def follow(code: str, request: Request) -> RedirectResponse:
    """The short link of a personal SMS: on to the signed page it stands for."""
    ctx = _ctx(request)
    link = None
    if code_is_signed(ctx.settings, code):
        async with ctx.db.session() as session:
            link = await session.get(ShortLink, code)
    if link is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Povezava ni veljavna. / This link is not valid.")
    return RedirectResponse(link.target, status_code=status.HTTP_303_SEE_OTHER)
