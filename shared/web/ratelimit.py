"""Rate limits on the public forms and endpoints (issues #8 and #15), with the `limits` library.

One FastAPI dependency per kind of public write::

    @api.post("/events/{event_id}/registrations", dependencies=[rate_limit("registration")],
              responses={429: RATE_LIMITED})

Limits are keyed on WHO is acting first, and on the network address only to stop floods
(issue 15, finding 7): a school class on one network, a retirement home's Wi-Fi and mobile
carriers' shared addresses (CGNAT) all look like one address, so a per-address limit low
enough to stop one abuser also stops a crowd. In the order they are checked:

1. who: the phone number (E.164, `shared.contact.normalise_phone`) and the email address
   (lower-cased) the request carries; the signed link it acts through (path or query
   `token`); a survey's per-browser token (cookie `kzv_brskalnik_<survey>`, set when the
   form is served); the sender number of an inbound SMS. So one number cannot be fed
   through many addresses, and one browser cannot stuff a survey.
2. the client address: a flood limit only (default 120/minute and 600/hour for
   registrations, room requests and survey answers), far above what a class of 30 sends.

Staff (a valid bearer token or staff cookie) are never limited. Over a limit the answer is
429 with `Retry-After` (seconds) and a Slovenian/English `detail`, through the shared error
handler: JSON under `/api/`, the readable error page for HTML forms.

The client address is `request.client.host`: uvicorn (started with `proxy_headers=True`)
takes it from `X-Forwarded-For` only when the direct peer is a trusted proxy
(`FORWARDED_ALLOW_IPS`, default 127.0.0.1), so a resident cannot pick their own address.

Counters live in `KRANJ_RATE_LIMIT_STORAGE`: `memory://` (per process; N replicas of a
service allow N times the limit) or `redis://…` for replicas that share them (needs the
`coredis` client: `pip install "limits[async-redis]"`). The limits themselves are settings
(`KRANJ_RATE_LIMIT_<KIND>` per address, `KRANJ_RATE_LIMIT_<KIND>_CONTACT`,
`KRANJ_RATE_LIMIT_SURVEY_ANSWER_BROWSER`, `KRANJ_RATE_LIMIT_LINK` per link) in the notation
of `limits`; docs/security.md gives the numbers and why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

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


def link_token(request: Request) -> str | None:
    """The signed link a request acts through: path parameter or query `token`."""
    value = request.path_params.get("token") or request.query_params.get("token")
    return str(value)[:512] if value else None


SURVEY_BROWSER_COOKIE = "kzv_brskalnik_"


def survey_browser_cookie(survey_id: str) -> str:
    """The name of a survey's per-browser token cookie (set by the surveys form page)."""
    return SURVEY_BROWSER_COOKIE + survey_id.replace("-", "")[:32]


def survey_browser_token(request: Request) -> str | None:
    """The per-browser token of the survey in the path, when the browser sent one."""
    survey_id = request.path_params.get("survey_id")
    if not survey_id:
        return None
    value = request.cookies.get(survey_browser_cookie(str(survey_id)))
    return value[:200] if value else None


@dataclass(frozen=True)
class Kind:
    """One kind of public write and the settings that limit it."""

    name: str
    address: str | None  # Settings field: the limit per client address (a flood limit)
    contact: str | None = None  # Settings field: the limit per phone number / email address
    phone_fields: tuple[str, ...] = ("phone",)
    email_fields: tuple[str, ...] = ("email",)
    token: str | None = None  # Settings field: the limit per token (`token_of`: a signed link, a browser)
    token_of: Callable[[Request], str | None] = link_token
    token_by: str = "token"  # what the 429 says was over its limit: "token" (link) or "browser"


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("subscribe", "rate_limit_subscribe", "rate_limit_subscribe_contact"),
        Kind("sms_code", "rate_limit_sms_code"),
        Kind("registration", "rate_limit_registration", "rate_limit_registration_contact"),
        Kind("booking", "rate_limit_booking", "rate_limit_booking_contact"),
        # Survey answers: per browser (the form's cookie), then a flood limit per address.
        Kind(
            "survey_answer",
            "rate_limit_survey_answer",
            token="rate_limit_survey_answer_browser",
            token_of=survey_browser_token,
            token_by="browser",
        ),
        # Actions behind a signed link (cancel, manage): per link, then a flood limit per address.
        Kind("link", "rate_limit_link_address", token="rate_limit_link"),
        # RFC 8058 one-click unsubscribe is posted by mail providers from a few shared
        # addresses for many residents: count per link, never per address.
        Kind("unsubscribe", None, token="rate_limit_link"),
        # The SMS gateway forwards every reply from one address: count per sender number.
        Kind("sms_inbound", None, "rate_limit_sms_inbound", phone_fields=("from",), email_fields=()),
        # Printable PDFs (a notice's poster, a KS's weekly bulletin) are made on request.
        Kind("pdf", "rate_limit_pdf"),
    )
}

RATE_LIMITED: dict[str, Any] = {
    "description": "Too many requests from this phone number, email address, link, browser or (a flood) address: "
    "wait `Retry-After` "
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
    "browser": ("iz tega brskalnika", "from this browser"),
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
        self.storage = cast(Storage, storage_from_string(_async_uri(settings.rate_limit_storage)))  # an async+ URI
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
        keys: list[tuple[str, str, str]] = []  # (by, value, settings field): who first, the address last
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
        if kind.token:
            token = kind.token_of(request)
            if token:
                keys.append((kind.token_by, token, kind.token))
        if kind.address:
            keys.append(("address", client_address(request), kind.address))
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
    return limiter


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


# ======================================================================================
# Staff login (issue 15): throttled by address and by (account, address), never locked
# ======================================================================================
LOGIN_SLOWDOWN_SECONDS = 1.0


class LoginThrottle:
    """Failed staff logins, counted so that a stranger cannot keep the owner out.

    - per client address (`KRANJ_RATE_LIMIT_LOGIN`, default 10 failures a minute, 100 an
      hour): one address cannot try many passwords, for any accounts;
    - per (account, address) (`KRANJ_RATE_LIMIT_LOGIN_ACCOUNT`, default 5 failures in 15
      minutes): guessing one account's password from one address stops, while its owner,
      from an address that has not failed, logs in as always;
    - per account across all addresses (`KRANJ_RATE_LIMIT_LOGIN_ACCOUNT_GLOBAL`, default 20
      in 15 minutes): beyond it, attempts from addresses that have already failed for the
      account wait `LOGIN_SLOWDOWN_SECONDS` before the answer. Never a refusal.

    Only failures are counted, whether or not the account exists (the key is the email as
    typed, normalised), so the answers do not tell which accounts exist."""

    def __init__(self, limiter: Limiter, settings: Settings) -> None:
        self.limiter = limiter
        self.per_address = parse_many(settings.rate_limit_login)
        self.per_pair = parse_many(settings.rate_limit_login_account)
        self.per_account = parse_many(settings.rate_limit_login_account_global)

    def _keys(self, request: Request, email: str) -> list[tuple[list[RateLimitItem], tuple[str, ...]]]:
        account = _email(email) or email.strip().lower()[:320]
        address = client_address(request)
        return [
            (self.per_address, ("login", "address", address)),
            (self.per_pair, ("login", "pair", account, address)),
        ]

    async def refused_for(self, request: Request, email: str) -> int | None:
        """Seconds to wait when this address (or this account from it) has failed too often."""
        if not self.limiter.enabled:
            return None
        strategy = self.limiter.strategy
        for items, key in self._keys(request, email):
            for item in items:
                if not await strategy.test(item, self.limiter.service, *key):
                    stats = await strategy.get_window_stats(item, self.limiter.service, *key)
                    RATE_LIMITED_TOTAL.labels(self.limiter.service, "/login", "address").inc()
                    log.warning("login throttled", extra={"limit": str(item)})
                    return max(1, math.ceil(stats.reset_time - time.time()))
        return None

    async def failed(self, request: Request, email: str) -> None:
        """Count a failed attempt; slow the answer down when the account is under attack
        and this address has failed for it before."""
        if not self.limiter.enabled:
            return
        strategy = self.limiter.strategy
        service = self.limiter.service
        account = _email(email) or email.strip().lower()[:320]
        pair_key = ("login", "pair", account, client_address(request))
        failed_here_before = False
        for item in self.per_pair:
            stats = await strategy.get_window_stats(item, service, *pair_key)
            failed_here_before = failed_here_before or stats.remaining < item.amount
        for items, key in self._keys(request, email):
            for item in items:
                await strategy.hit(item, service, *key)
        under_attack = False
        for item in self.per_account:
            if not await strategy.hit(item, service, "login", "account", account):
                under_attack = True
        if under_attack and failed_here_before:
            await asyncio.sleep(LOGIN_SLOWDOWN_SECONDS)


def login_throttle(request: Request) -> LoginThrottle:
    """This app's LoginThrottle (sharing the Limiter's counters)."""
    ctx = request.app.state.ctx
    throttle = ctx.extra.get("login_throttle")
    if throttle is None:
        throttle = ctx.extra["login_throttle"] = LoginThrottle(limiter_for(request), ctx.settings)
    return throttle


LOGIN_THROTTLED = (
    "Preveč neuspešnih prijav z vašega naslova. Prosimo, poskusite znova čez {sl}. "
    "/ Too many failed logins from your address; please try again in {en}."
)


def login_throttled_detail(seconds: int) -> str:
    sl, en = _wait_text(seconds)
    return LOGIN_THROTTLED.format(sl=sl, en=en)
