"""Rate limits on the public forms and endpoints (issue #8), with the `limits` library.

One FastAPI dependency per kind of public write::

    @api.post("/events/{event_id}/registrations", dependencies=[rate_limit("registration")],
              responses={429: RATE_LIMITED})

counts the request per client address and, where the request carries one, per phone
number (E.164, `shared.contact.normalise_phone`) and per email address (lower-cased),
so one number cannot be fed through many addresses and one address cannot try many
numbers. Staff (a valid bearer token or staff cookie) are never limited. Over the limit
the answer is 429 with `Retry-After` (seconds) and a Slovenian/English `detail`, through
the shared error handler: JSON under `/api/`, the readable error page for HTML forms.

The client address is `request.client.host`: uvicorn (started with `proxy_headers=True`)
takes it from `X-Forwarded-For` only when the direct peer is a trusted proxy
(`FORWARDED_ALLOW_IPS`, default 127.0.0.1), so a resident cannot pick their own address.

Counters live in `KRANJ_RATE_LIMIT_STORAGE`: `memory://` (per process; N replicas of a
service allow N times the limit) or `redis://…` for replicas that share them (needs the
`coredis` client: `pip install "limits[async-redis]"`). The limits themselves are settings
(`KRANJ_RATE_LIMIT_<KIND>`, `KRANJ_RATE_LIMIT_<KIND>_CONTACT`) in the notation of `limits`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from limits import RateLimitItem, parse_many
from limits.aio.storage import MovingWindowSupport, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter
from limits.storage import storage_from_string

from ..contact import normalise_phone
from ..i18n import plural
from ..metrics import RATE_LIMITED as RATE_LIMITED_TOTAL
from ..settings import Settings

log = logging.getLogger("kranj.ratelimit")


@dataclass(frozen=True)
class Kind:
    """One kind of public write and the settings that limit it."""

    name: str
    address: str | None  # Settings field: the limit per client address
    contact: str | None = None  # Settings field: the limit per phone number / email address
    phone_fields: tuple[str, ...] = ("phone",)
    email_fields: tuple[str, ...] = ("email",)
    token: str | None = None  # Settings field: the limit per signed link (path parameter `token_param`)
    token_param: str = "token"


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("subscribe", "rate_limit_subscribe", "rate_limit_subscribe_contact"),
        Kind("sms_code", "rate_limit_sms_code"),
        Kind("registration", "rate_limit_registration", "rate_limit_registration_contact"),
        Kind("booking", "rate_limit_booking", "rate_limit_booking_contact"),
        Kind("survey_answer", "rate_limit_survey_answer"),
        # Actions behind a signed link (cancel, manage): a generous limit per address.
        Kind("link", "rate_limit_link"),
        # RFC 8058 one-click unsubscribe is posted by mail providers from a few shared
        # addresses for many residents: count per link, never per address.
        Kind("unsubscribe", None, token="rate_limit_link"),
        # The SMS gateway forwards every reply from one address: count per sender number.
        Kind("sms_inbound", None, "rate_limit_sms_inbound", phone_fields=("from",), email_fields=()),
    )
}

RATE_LIMITED: dict[str, Any] = {
    "description": "Too many requests from this address, phone number or email address: wait `Retry-After` "
    "seconds. `detail` says so in Slovenian, then English.",
    "headers": {"Retry-After": {"description": "Seconds until a request is accepted again", "schema": {"type": "integer"}}},
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        }
    },
}
"""The OpenAPI description of the 429 answer: `responses={429: RATE_LIMITED}`."""

_WHO = {
    "address": ("z vašega naslova", "from your address"),
    "phone": ("za to telefonsko številko", "for this phone number"),
    "email": ("za ta e-poštni naslov", "for this email address"),
    "token": ("za to povezavo", "for this link"),
}


def _wait_text(seconds: int) -> tuple[str, str]:
    if seconds < 120:
        sl = plural(seconds, {"one": "sekundo", "two": "sekundi", "few": "sekunde", "other": "sekund"})
        return sl, f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    sl = plural(minutes, {"one": "minuto", "two": "minuti", "few": "minute", "other": "minut"})
    return sl, f"{minutes} min"


def too_many_detail(by: str, seconds: int) -> str:
    """`Prejeli smo preveč zahtev z vašega naslova. Poskusite znova čez 40 sekund. / …`"""
    sl_who, en_who = _WHO[by]
    sl_wait, en_wait = _wait_text(seconds)
    return (
        f"Prejeli smo preveč zahtev {sl_who}. Prosimo, poskusite znova čez {sl_wait}. "
        f"/ Too many requests {en_who}; please try again in {en_wait}."
    )


def _async_uri(uri: str) -> str:
    return uri if uri.startswith("async+") else f"async+{uri}"


class Limiter:
    """The counters of one service process and its parsed limits."""

    def __init__(self, settings: Settings, service: str) -> None:
        self.service = service
        self.enabled = settings.rate_limit_enabled
        self.storage: Storage = storage_from_string(_async_uri(settings.rate_limit_storage))
        self.strategy: RateLimiter = (
            MovingWindowRateLimiter(self.storage)
            if isinstance(self.storage, MovingWindowSupport)
            else FixedWindowRateLimiter(self.storage)
        )
        self.limits: dict[str, list[RateLimitItem]] = {}
        for kind in KINDS.values():
            for field in (kind.address, kind.contact, kind.token):
                if field and field not in self.limits:
                    self.limits[field] = parse_many(getattr(settings, field))

    async def check(self, request: Request, kind: Kind) -> None:
        """Count this request; 429 when one of its keys is over its limit."""
        if not self.enabled or _is_staff(request):
            return
        keys: list[tuple[str, str, str]] = []  # (by, value, settings field)
        if kind.token:
            keys.append(("token", str(request.path_params.get(kind.token_param, "")), kind.token))
        if kind.address:
            keys.append(("address", client_address(request), kind.address))
        if kind.contact and (kind.phone_fields or kind.email_fields):
            fields = await _request_fields(request)
            for name in kind.phone_fields:
                phone = _phone(fields.get(name))
                if phone:
                    keys.append(("phone", phone, kind.contact))
            for name in kind.email_fields:
                email = _email(fields.get(name))
                if email:
                    keys.append(("email", email, kind.contact))
        for by, value, field in keys:
            for item in self.limits[field]:
                identifiers = (self.service, kind.name, by, value)
                if await self.strategy.hit(item, *identifiers):
                    continue
                stats = await self.strategy.get_window_stats(item, *identifiers)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                route = request.scope.get("route")
                endpoint = getattr(route, "path", request.url.path)
                RATE_LIMITED_TOTAL.labels(self.service, endpoint, by).inc()
                log.warning(
                    "rate limited",
                    extra={"endpoint": endpoint, "limit_kind": kind.name, "by": by, "limit": str(item)},
                )
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    too_many_detail(by, retry_after),
                    headers={"Retry-After": str(retry_after)},
                )


def limiter_for(request: Request) -> Limiter:
    """This app's Limiter, made on first use from the service's settings."""
    ctx = request.app.state.ctx
    limiter = ctx.extra.get("rate_limiter")
    if limiter is None:
        limiter = ctx.extra["rate_limiter"] = Limiter(ctx.settings, ctx.service)
    return limiter  # type: ignore[no-any-return]


def rate_limit(kind: str) -> Any:
    """`dependencies=[rate_limit("booking")]`: count the request, 429 over the limit."""
    spec = KINDS[kind]

    async def check_rate_limit(request: Request) -> None:
        await limiter_for(request).check(request, spec)

    check_rate_limit.__name__ = f"rate_limit_{kind}"
    return Depends(check_rate_limit)


def client_address(request: Request) -> str:
    """The resident's address as uvicorn's proxy-headers handling left it."""
    return request.client.host if request.client else "unknown"


def _is_staff(request: Request) -> bool:
    from ..auth import current_staff

    try:
        current_staff(request)
    except HTTPException:
        return False
    return True


async def _request_fields(request: Request) -> dict[str, Any]:
    """Top-level fields of a JSON object or form body (FastAPI has read and cached the
    body before dependencies run, so this reads nothing twice)."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            return {k: v for k, v in form.items() if isinstance(v, str)}
        if "json" in content_type:
            data = json.loads(await request.body() or b"null")
            return data if isinstance(data, dict) else {}
    except Exception:  # noqa: BLE001 - a body we cannot read carries no contact to count
        return {}
    return {}


def _phone(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return normalise_phone(value.strip())
    except ValueError:
        return None  # refused by the route's own validation


def _email(value: Any) -> str | None:
    if not isinstance(value, str) or "@" not in value:
        return None
    return value.strip().lower() or None
