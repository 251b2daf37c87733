"""Confirming a channel (double opt-in): the signed token of a confirmation link or code page,
the 6-digit SMS code (only its HMAC is stored), the email link, and recording the confirmation
with when and the pseudonymised address it came from (services.notify.consent). Used by the
sign-up pages (subscribe.py) and by a survey answer that asks to be kept informed
(`start_confirmation`, handlers.py)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from fastapi import HTTPException, Request, status
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from shared import clock
from shared.models import utcnow
from shared.web import ServiceApp

from . import consent as channel_consent
from . import notices
from .models import ChannelConsent, Confirmation, NoticeDraft, Subscriber
from .render import Renderer, from_label

CONFIRM_SALT = "kranj.subscribe-confirm.v1"
VALID_FOR = timedelta(hours=48)
MAX_CODE_ATTEMPTS = 5


def signer(ctx: ServiceApp) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(ctx.settings.signing_key(), salt=CONFIRM_SALT)


def code_hash(ctx: ServiceApp, subscriber_id: str, code: str) -> str:
    key = ctx.settings.signing_key().encode()
    return hmac.new(key, f"{subscriber_id}:{code}".encode(), hashlib.sha256).hexdigest()


def token_for(ctx: ServiceApp, subscriber_id: str) -> str:
    """A signed confirmation token: the subscriber and when it was issued (the platform clock),
    so that a confirmation sent before an opt-out cannot undo it."""
    return signer(ctx).dumps([subscriber_id, clock.now().isoformat()])


async def send_code(
    ctx: ServiceApp | Any,
    session: Any,
    renderer: Renderer,
    subscriber: Subscriber,
    *,
    link: bool,
    language: str | None = None,
) -> None:
    """A fresh 6-digit code to the subscriber's phone (hashed in `confirmations`); `link`
    adds the page to enter it (when the person is not on that page already); `language`
    is the form's when the person is on it (default: the subscriber's)."""
    language = language or subscriber.language
    code = f"{secrets.randbelow(1_000_000):06d}"
    url = f"{ctx.settings.public_base('notify')}/subscribe/code/{token_for(ctx, subscriber.id)}" if link else None
    title, body = renderer.personal("subscribe_code", language, code=code, link=url)
    old = await session.get(Confirmation, subscriber.id)
    if old is not None:
        await session.delete(old)
        await session.flush()
    session.add(
        Confirmation(
            subscriber_id=subscriber.id, code_hash=code_hash(ctx, subscriber.id, code), expires_at=utcnow() + VALID_FOR
        )
    )
    notice = NoticeDraft(
        source="/kranj/notify/subscribe",
        source_id=f"{subscriber.id}:sms:{secrets.token_hex(4)}",
        title=title,
        body=body,
        topic="general",
        channels=["sms"],
        language=language,
    )
    await notices.record_personal(session, notice, email=None, phone=subscriber.phone, language=language)


async def start_confirmation(
    ctx: Any, session: Any, renderer: Renderer, subscriber: Subscriber, channels: list[str], ks: list[str]
) -> None:
    """Ask the person to confirm `channels` (not yet active): the email by its link — the
    phone's code follows once the link is followed — or, without an email to confirm, the
    phone by an SMS code with the page to enter it. `ctx` needs `settings` (a ServiceApp)."""
    if "email" in channels and subscriber.email:
        link = f"{ctx.settings.public_base('notify')}/subscribe/confirm/{token_for(ctx, subscriber.id)}"
        title, body = renderer.personal("subscribe_confirm", subscriber.language, link=link, where=from_label(ks))
        notice = NoticeDraft(
            source="/kranj/notify/subscribe",
            source_id=f"{subscriber.id}:email:{secrets.token_hex(4)}",
            title=title,
            body=body,
            ks=list(ks),
            topic="general",
            channels=["email"],
            language=subscriber.language,
        )
        await notices.record_personal(session, notice, email=subscriber.email, phone=None, language=subscriber.language)
    elif "sms" in channels and subscriber.phone:
        await send_code(ctx, session, renderer, subscriber, link=True)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def confirm_channel(ctx: ServiceApp, subscriber_id: str, channel: str, issued_at: Any, request: Request) -> bool:
    """The person followed the link (email) or entered the code (sms): that channel is active
    from now, recorded with when and the pseudonymised address it came from."""
    async with ctx.db.session() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return False
        proof = channel_consent.ip_proof(ctx.settings, client_ip(request))
        done = await channel_consent.confirm(session, subscriber_id, channel, proof=proof, issued_at=issued_at)
        if done:
            if subscriber.status != "active":
                subscriber.status = "active"
                subscriber.consent_at = utcnow()  # consent counts from the confirmation
            if channel not in subscriber.channels:
                subscriber.channels = [*subscriber.channels, channel]
            subscriber.updated_at = utcnow()
            session.add(subscriber)
        confirmation = await session.get(Confirmation, subscriber_id)
        if confirmation is not None and (channel == "sms" or confirmation.code_hash is None):
            await session.delete(confirmation)
        await session.commit()
    return True


async def code_after_link(ctx: ServiceApp, subscriber_id: str) -> str | None:
    """After the email link of a sign-up that also chose SMS: the phone gets its code (once
    while a code is valid); returns the token of the code page, or None (nothing to confirm)."""
    renderer: Renderer = ctx.extra["renderer"]
    async with ctx.db.session() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        row = await session.get(ChannelConsent, (subscriber_id, "sms"))
        if subscriber is None or not subscriber.phone or row is None or row.status == "active":
            return None
        if row.status == "withdrawn" and "sms" not in subscriber.channels:
            return None  # they stopped SMS; the email link does not ask again
        live = await session.get(Confirmation, subscriber_id)
        if live is None or live.code_hash is None or live.expires_at <= utcnow():
            await send_code(ctx, session, renderer, subscriber, link=False)
            await session.commit()
            ctx.extra["worker"].wake()
    return token_for(ctx, subscriber_id)


def read_token(ctx: ServiceApp, token: str) -> str:
    return read_token_at(ctx, token)[0]


def read_token_at(ctx: ServiceApp, token: str) -> tuple[str, Any]:
    """The subscriber id of a confirmation token and when it was issued (None for a token of
    the earlier form, which held the id alone)."""
    try:
        value = signer(ctx).loads(token, max_age=int(VALID_FOR.total_seconds()))
    except SignatureExpired:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Povezava je potekla. Prosimo, prijavite se znova.") from None
    except BadSignature:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Povezava ni veljavna. / The link is not valid.") from None
    if isinstance(value, str):
        return value, None
    try:
        subscriber_id, issued = value
        return str(subscriber_id), datetime.fromisoformat(issued)
    except (TypeError, ValueError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Povezava ni veljavna. / The link is not valid.") from None
