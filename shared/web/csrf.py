"""Cross-site request forgery protection for every HTML form of every service.

Signed double submit: a random `kranj_csrf` cookie (HttpOnly, SameSite=Lax) and, in each
form, `{{ csrf_field() }}` = HMAC(KRANJ_SECRET_KEY, cookie, session). The HMAC means a
cookie planted by a neighbouring subdomain is useless without the key; binding it to the
session cookie means a token seen before logging in does not work after it.

`csrf_protect` (an app-wide dependency) checks unsafe requests:
- form bodies (urlencoded, multipart, text/plain — what a cross-site `<form>` can send)
  need a valid `csrf_token` field or `X-CSRF-Token` header, whoever sends them: resident
  forms too;
- other requests that carry the session cookie (a JSON call from a staff page) need the
  `X-CSRF-Token` header, or must come from this origin (`Sec-Fetch-Site: same-origin`, or
  an `Origin` of this site);
- requests with `Authorization: Bearer …` need nothing: a browser never adds that header
  by itself, so there is no ambient credential to abuse.
Refused requests get 403 with a Slovenian/English explanation. Endpoints that must take
posts from elsewhere (RFC 8058 one-click unsubscribe, from mail providers) are marked
`@csrf_exempt`; they are protected by the signed link in their URL.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status
from jinja2 import pass_context
from markupsafe import Markup
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import COOKIE_NAME, auth_of, bearer_of
from ..settings import Settings

CSRF_COOKIE = "kranj_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
NEW_COOKIE_KEY = "kranj_csrf_new"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
REFUSED = (
    "Obrazec ni bil poslan s te strani ali je potekel: osvežite stran in poskusite znova "
    "(brskalnik mora dovoliti piškotke te strani). "
    "/ The form did not come from this site or has expired: reload the page and try again "
    "(your browser must accept this site's cookies)."
)
REFUSED_SCRIPT = (
    "Zahteva s sejo potrebuje glavo X-CSRF-Token ali mora priti s te strani. "
    "/ A request made with the session cookie needs the X-CSRF-Token header or must come from this site."
)

F = TypeVar("F", bound=Callable[..., Any])


def csrf_exempt(endpoint: F) -> F:
    """Mark a route that must accept posts from other sites (protected some other way)."""
    endpoint.csrf_exempt = True  # type: ignore[attr-defined]
    return endpoint


def secure_cookies(request: Request, settings: Settings) -> bool:
    """Cookies get `Secure` when the platform is served over https."""
    return request.url.scheme == "https" or (settings.public_url or "").lower().startswith("https://")


class Csrf:
    """The token maker and checker of one service (hung on `app.state.csrf`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key = hashlib.sha256(b"kranj.csrf.v1|" + settings.signing_key().encode()).digest()

    def _sign(self, secret: str, request: Request) -> str:
        binding = request.cookies.get(COOKIE_NAME, "")
        mac = hmac.new(self._key, f"{secret}|{binding}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def token(self, request: Request) -> str:
        """The token for forms on this page; starts the cookie if the browser has none."""
        secret = request.cookies.get(CSRF_COOKIE) or request.scope.setdefault("state", {}).get(NEW_COOKIE_KEY)
        if not secret or len(secret) > 100:
            secret = secrets.token_urlsafe(32)
            request.scope.setdefault("state", {})[NEW_COOKIE_KEY] = secret
        return self._sign(secret, request)

    def valid(self, request: Request, given: str | None) -> bool:
        secret = request.cookies.get(CSRF_COOKIE)
        if not given or not secret or len(secret) > 100:
            return False
        return hmac.compare_digest(given.encode(), self._sign(secret, request).encode())

    def cookie_header(self, secret: str, secure: bool) -> str:
        parts = [f"{CSRF_COOKIE}={secret}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if secure:
            parts.append("Secure")
        return "; ".join(parts)


class CsrfCookieMiddleware:
    """Pure ASGI: sets the `kranj_csrf` cookie on a response whose page made the first token."""

    def __init__(self, app: ASGIApp, *, csrf: Csrf) -> None:
        self.app = app
        self.csrf = csrf
        self.public_https = (csrf.settings.public_url or "").lower().startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and state.get(NEW_COOKIE_KEY):
                secure = scope.get("scheme") == "https" or self.public_https
                MutableHeaders(scope=message).append("set-cookie", self.csrf.cookie_header(state[NEW_COOKIE_KEY], secure))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


@pass_context
def csrf_field(context: Any) -> Markup:
    """Jinja global: `{{ csrf_field() }}` inside every `<form method="post">`."""
    request: Request | None = context.get("request")
    csrf: Csrf | None = getattr(request.app.state, "csrf", None) if request is not None else None
    if request is None or csrf is None:
        return Markup("")
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf.token(request))


@pass_context
def csrf_token(context: Any) -> str:
    """Jinja global: the bare token, e.g. for a `<meta>` that scripts send as X-CSRF-Token."""
    request: Request | None = context.get("request")
    csrf: Csrf | None = getattr(request.app.state, "csrf", None) if request is not None else None
    return csrf.token(request) if request is not None and csrf is not None else ""


def _same_origin(request: Request, settings: Settings) -> bool:
    if request.headers.get("sec-fetch-site") == "same-origin":
        return True
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    own = {f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}".lower()}
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        own.add(f"{parts.scheme}://{parts.netloc}".lower())
    return origin.rstrip("/").lower() in own


async def csrf_protect(request: Request) -> None:
    """App-wide dependency (see the module docstring)."""
    if request.method in SAFE_METHODS:
        return
    endpoint = request.scope.get("endpoint")
    if getattr(endpoint, "csrf_exempt", False):
        return
    if bearer_of({"authorization": request.headers.get("authorization", "")}) is not None:
        return
    csrf: Csrf = request.app.state.csrf
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    header_token = request.headers.get(CSRF_HEADER)
    if content_type in FORM_TYPES:
        given = header_token
        if not given and content_type != "text/plain":
            with contextlib.suppress(RuntimeError):  # FastAPI already read it for the route's Form fields
                await request.body()  # cached, so the route can still read the body or the form
            value = (await request.form()).get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        if not csrf.valid(request, given):
            raise HTTPException(status.HTTP_403_FORBIDDEN, REFUSED)
        return
    if auth_of(request).via == "session" or request.cookies.get(COOKIE_NAME):
        if csrf.valid(request, header_token) or _same_origin(request, csrf.settings):
            return
        raise HTTPException(status.HTTP_403_FORBIDDEN, REFUSED_SCRIPT)
