"""What makes the four services one site for residents: the header navigation, the KS a
resident picked (remembered in a cookie across the sections), and the pages every service
serves alike — the accessibility statement (/dostopnost, ZDSMA) and the privacy notice
(/zasebnost). The route table (kranj/routes.py) sends those to one service, as /login.

The KS cookie: when a resident picks a KS on a list page (events, rooms, a KS noticeboard),
the page calls `remember_ks`; other pages preselect `remembered_ks` (Jinja global of the same
name). It holds a KS slug only — nothing personal — so it needs no consent (ZEKom-1 art. 157:
strictly necessary for the service the resident asked for, like a language choice).
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import pass_context

from ..auth import auth_of, may
from ..contracts import KS_NAMES
from ..settings import Settings
from .csrf import secure_cookies

KS_COOKIE = "kranj_ks"
KS_COOKIE_MAX_AGE = 365 * 24 * 3600  # a year
ResponseT = TypeVar("ResponseT", bound=Response)

# The residents' sections of the one header: (path, label). `aria-current` marks the one a
# page belongs to (the first path segment).
NAV = (
    ("/events", "Dogodki"),
    ("/rooms", "Prostori"),
    ("/surveys", "Ankete"),
    ("/noticeboard", "Oglasna deska"),
    ("/subscribe", "Prejemajte obvestila"),
)
STAFF_HOME = "/osebje"  # the staff home (notify)

# The accessibility statement: when it was prepared (and last reviewed), and by what.
STATEMENT_PREPARED = "6. decembra 2026"
CONTACT = {
    "name": "Mestna občina Kranj",
    "address": "Slovenski trg 1, 4000 Kranj",
    "email": "info@kranj.si",
}


def remembered_ks(request: Request) -> str | None:
    """The KS this browser last picked, or None."""
    value = request.cookies.get(KS_COOKIE)
    return value if value in KS_NAMES else None


def chosen_ks(request: Request, given: str | None) -> str | None:
    """The KS a list page shows: the one just picked (`given`: the page's `ks`, where "" means
    every KS), or, when the page was opened without a choice (None), the remembered one."""
    if given is None:
        return remembered_ks(request)
    return given if given in KS_NAMES else None


def remember_ks(
    request: Request, response: ResponseT, given: str | None, settings: Settings | None = None
) -> ResponseT:
    """After a list page: a KS picked (`given` a KS slug) is remembered for a year; "every
    KS" ("") forgets it; no choice (None) changes nothing. Returns `response`."""
    if given is None:
        return response
    secure = secure_cookies(request, settings) if settings is not None else request.url.scheme == "https"
    if given in KS_NAMES:
        if request.cookies.get(KS_COOKIE) != given:
            response.set_cookie(
                KS_COOKIE, given, max_age=KS_COOKIE_MAX_AGE, path="/", samesite="lax", secure=secure, httponly=False
            )
    elif KS_COOKIE in request.cookies:
        response.delete_cookie(KS_COOKIE, path="/", samesite="lax", secure=secure)
    return response


@pass_context
def remembered_ks_global(context: Any) -> str | None:
    """Jinja global `remembered_ks()`: the KS this browser last picked, or None."""
    request: Request | None = context.get("request")
    return remembered_ks(request) if request is not None else None


@pass_context
def nav_current(context: Any) -> str | None:
    """Jinja global `nav_current()`: the path of the header section this page belongs to."""
    request: Request | None = context.get("request")
    if request is None:
        return None
    path = request.url.path
    for href, _label in NAV:
        if path == href or path.startswith(href + "/"):
            return href
    if path.startswith("/manage/"):
        return "/subscribe"
    return None


@pass_context
def nav_may(context: Any, action: str) -> bool:
    """Jinja global `nav_may(action)`: may the staff member behind this page perform `action`
    (the permission table)? The staff header shows only the sections that answer yes."""
    request: Request | None = context.get("request")
    return request is not None and may(auth_of(request).staff, action)


def install_globals(env: Any) -> None:
    env.globals["nav_may"] = nav_may
    env.globals["NAV"] = NAV
    env.globals["nav_current"] = nav_current
    env.globals["remembered_ks"] = remembered_ks_global
    env.globals["STAFF_HOME"] = STAFF_HOME
    env.globals["CONTACT"] = CONTACT
    env.globals["STATEMENT_PREPARED"] = STATEMENT_PREPARED


def add_site_routes(app: FastAPI, templates: Any) -> None:
    """/dostopnost and /zasebnost, served by every service (shared code)."""

    @app.get("/dostopnost", response_class=HTMLResponse, include_in_schema=False)
    async def accessibility_statement(request: Request) -> Response:
        return templates.TemplateResponse(request, "dostopnost.html", {})

    @app.get("/zasebnost", response_class=HTMLResponse, include_in_schema=False)
    async def privacy_notice(request: Request) -> Response:
        return templates.TemplateResponse(request, "zasebnost.html", {})
