"""The HTTP side every service shares: app factory with lifespan, health, readiness,
metrics, AsyncAPI, staff login and logout (sessions in the identity store), CSRF
protection of every form, JSON errors and the Jinja2 environment; the pages every service
serves alike for residents (the accessibility statement, the privacy notice: site.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from faststream.specification import AsyncAPI
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, pass_context, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import i18n
from ..accounts import SESSION_MAX, AccountStore
from ..auth import COOKIE_NAME, IdentityMiddleware, Staff, auth_of
from ..bus import Bus
from ..contracts import KS_NAMES, ks_name
from ..db import Database
from ..metrics import render as render_metrics
from ..migrations import upgrade_async
from ..settings import Settings
from . import site, unavailable
from .csrf import Csrf, CsrfCookieMiddleware, csrf_field, csrf_protect, csrf_token, secure_cookies
from .headers import SecurityHeadersMiddleware
from .openapi import document_errors
from .ratelimit import login_throttle, login_throttled_detail

log = logging.getLogger("kranj.web")
SHARED_TEMPLATES = Path(__file__).parent / "templates"
SHARED_STATIC = Path(__file__).parent / "static"

BackgroundFactory = Callable[[], Awaitable[None]]


def make_templates(service_templates: Path | None, settings: Settings) -> Jinja2Templates:
    loaders = [FileSystemLoader(str(p)) for p in (service_templates, SHARED_TEMPLATES) if p is not None]
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(["html", "xml", "j2.html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["datetime"] = i18n.format_datetime
    env.filters["date"] = i18n.format_date
    env.filters["time"] = i18n.format_time
    env.filters["span"] = i18n.format_span
    env.filters["ks_name"] = ks_name
    env.globals["plural"] = i18n.plural
    env.globals["KS_NAMES"] = KS_NAMES
    env.globals["public_base"] = settings.public_base
    env.globals["csrf_field"] = csrf_field
    env.globals["csrf_token"] = csrf_token
    env.globals["signed_in"] = signed_in
    site.install_globals(env)  # the header navigation, the remembered KS, the footer's contact
    return Jinja2Templates(env=env)


@pass_context
def signed_in(context: Any) -> Staff | None:
    """Jinja global: the staff member signed in with a session on this page, else None."""
    request: Request | None = context.get("request")
    if request is None:
        return None
    auth = auth_of(request)
    return auth.staff if auth.via == "session" else None


@dataclass
class ServiceApp:
    """Everything a service's routes need, hung on `app.state.ctx`."""

    service: str
    settings: Settings
    db: Database
    bus: Bus
    templates: Jinja2Templates
    accounts: AccountStore
    background: list[BackgroundFactory] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_service(cls, service: str, settings: Settings, templates_dir: Path | None) -> ServiceApp:
        """The standard parts of a service: its own database, its bus, templates, the identity store."""
        db = Database(settings.database_url(service))
        return cls(
            service=service,
            settings=settings,
            db=db,
            bus=Bus(settings, service, db),
            templates=make_templates(templates_dir, settings),
            accounts=AccountStore.from_settings(settings),
        )


def freeze_heap() -> None:
    """Move everything a started service holds (modules, the app, its routes, models and
    templates, the engine, the broker) into the garbage collector's permanent generation.

    Python's cyclic collector walks every object of the oldest generation in each full
    collection; a service's start-up heap is most of its objects, lives as long as the
    process and never becomes garbage. The short-lived objects of each message trigger the
    collector over and over: for 10,000 notices waiting in its queue, notify spent 1.6 s of
    its 7.5 s of CPU collecting, 0.5–0.7 s once frozen (issue 20 §4; `make bench`'s
    "consumer alone" row).
    The same advice as CPython's for `gc.freeze` before a fork: collect first, then freeze, so
    no garbage is kept. Objects made after start are collected as before.

    The youngest generation is collected after YOUNG_OBJECTS new objects, not CPython 3.11's
    700: at the SMS gateway's pace notify made 700 objects in a few SMS, a young collection
    each time, 5 % of its CPU; with 10,000 its share of a plain client's SMS rose from 0.59
    to 0.62 (median of eight pairs, issue 20 §3). At most a few megabytes of young garbage
    wait a little longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


YOUNG_OBJECTS = 10_000


def readable_validation_detail(errors: Sequence[Any]) -> str:
    parts = []
    for err in errors[:8]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'body'}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
    return "; ".join(parts)


def create_service_app(
    ctx: ServiceApp,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    static_dir: Path | None = None,
    migrate: bool = True,
    start_bus: bool = True,
) -> FastAPI:
    tasks: list[asyncio.Task[None]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await upgrade_async(ctx.service, ctx.db.url)
            await ctx.accounts.ready()
        if start_bus:
            await ctx.bus.start()
        for factory in ctx.background:
            tasks.append(asyncio.create_task(cast("Coroutine[Any, Any, None]", factory()), name=f"{ctx.service}-{factory.__name__}"))
        if getattr(app.state, "freeze_heap", False):
            freeze_heap()
        log.info("service started", extra={"service_name": ctx.service})
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks.clear()
            if start_bus:
                await ctx.bus.stop()
            await ctx.db.dispose()
            await ctx.accounts.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        dependencies=[Depends(csrf_protect)],
    )
    app.state.ctx = ctx
    app.state.csrf = csrf = Csrf(ctx.settings)
    app.add_middleware(CsrfCookieMiddleware, csrf=csrf)
    app.add_middleware(IdentityMiddleware, accounts=ctx.accounts, settings=ctx.settings)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: every answer, errors included
    app.mount("/static/shared", StaticFiles(directory=SHARED_STATIC), name="shared-static")
    if static_dir is not None and static_dir.exists():
        app.mount(f"/static/{ctx.service}", StaticFiles(directory=static_dir), name="static")

    unavailable.install(app, ctx.templates)  # 503 + Retry-After while the database is down

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        return JSONResponse(
            status_code=422,
            content={
                "detail": readable_validation_detail(errors),
                "errors": [
                    {"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": e.get("type")} for e in errors
                ],
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/")
        if wants_html:
            return ctx.templates.TemplateResponse(
                request,
                "error.html",
                {"status": exc.status_code, "detail": exc.detail},
                status_code=exc.status_code,
                headers=getattr(exc, "headers", None),
            )
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.get("/healthz", tags=["operations"], summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": ctx.service}

    @app.get("/readyz", tags=["operations"], summary="Database and broker reachable")
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ctx.db.ping(), timeout=3)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - report, don't crash
            checks["database"] = f"error: {type(exc).__name__}"
        checks["broker"] = "ok" if await ctx.bus.is_connected() else "error: not connected"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "service": ctx.service, "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    @app.get("/asyncapi.json", tags=["operations"], summary="AsyncAPI 3.0 document of this service's messages")
    async def asyncapi() -> JSONResponse:
        return JSONResponse(asyncapi_document(ctx))

    _add_login_routes(app, ctx)
    site.add_site_routes(app, ctx.templates)  # /dostopnost, /zasebnost

    for router in routers:
        app.include_router(router)
    document_errors(app)  # /openapi.json says what the JSON error handlers answer
    return app


LOGIN_WRONG = "Napačen e-naslov ali geslo. / Wrong email or password."
LOGGED_OUT = "Odjavljeni ste. / You have logged out."


STAFF_HOME = "/osebje"  # where a login lands without a `next` (notify serves the staff home)


def _safe_next(value: str | None) -> str:
    """Only a path on this site (no `//host`, no scheme) may follow a login; anything else
    (or nothing) lands on the staff home. Browsers drop tabs and newlines inside URLs
    (`/<TAB>/evil.example` is `//evil.example`): refuse them."""
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and all(" " < ch != "\x7f" for ch in value)
    ):
        return value
    return STAFF_HOME


def _add_login_routes(app: FastAPI, ctx: ServiceApp) -> None:
    def page(request: Request, *, status_code: int = 200, headers: dict[str, str] | None = None, **values: Any) -> Response:
        context = {"error": None, "notice": None, "email": "", "next": STAFF_HOME, **values}
        # The GOV.UK error pattern (_forms.html): the summary links to the email field.
        context["errors"] = {"email": context["error"]} if context["error"] else None
        return ctx.templates.TemplateResponse(request, "login.html", context, status_code=status_code, headers=headers)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request, next: str | None = None, odjava: str | None = None) -> Response:
        return page(request, next=_safe_next(next), notice=LOGGED_OUT if odjava else None)

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(
        request: Request, email: str = Form(""), password: str = Form(""), next: str = Form(STAFF_HOME)
    ) -> Response:
        email = email.strip()
        if not email or not password:
            return page(request, status_code=401, error=LOGIN_WRONG, email=email, next=_safe_next(next))
        throttle = login_throttle(request)
        wait = await throttle.refused_for(request, email)
        if wait is not None:
            # The same answer whether or not the account exists, and never a lockout of the
            # account itself: only this address (or this account from this address) waits.
            return page(
                request,
                status_code=429,
                headers={"Retry-After": str(wait)},
                error=login_throttled_detail(wait),
                email=email,
                next=_safe_next(next),
            )
        result = await ctx.accounts.authenticate(email, password)
        if result.account is None:
            log.info("login failed", extra={"service_name": ctx.service})
            await throttle.failed(request, email)
            return page(request, status_code=401, error=LOGIN_WRONG, email=email, next=_safe_next(next))
        old = request.cookies.get(COOKIE_NAME)
        if old:
            await ctx.accounts.revoke_session(old)  # never keep a session id across a login
        cookie = await ctx.accounts.create_session(result.account, user_agent=request.headers.get("user-agent", ""))
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            httponly=True,
            samesite="lax",
            secure=secure_cookies(request, ctx.settings),
            max_age=int(SESSION_MAX.total_seconds()),
            path="/",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie:
            await ctx.accounts.revoke_session(cookie)
        response = RedirectResponse("/login?odjava=1", status_code=303)
        response.delete_cookie(
            COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=secure_cookies(request, ctx.settings)
        )
        return response


def asyncapi_document(ctx: ServiceApp) -> dict[str, Any]:
    spec = AsyncAPI(
        ctx.bus.broker,
        title=f"Kranj ZA vse — {ctx.service}",
        version="1.0.0",
        description=(
            "Messages on the durable topic exchange `kranj`, as CloudEvents 1.0 in structured JSON mode. "
            "Routing key `<domain>.<entity>.<verb>`; type `si.kranj.<routing key>.v<major>`. "
            "Undeliverable messages go to `kranj.dead`, announced by `bus.message.rejected`."
        ),
        schema_version="3.0.0",
    )
    doc: dict[str, Any] = spec.to_specification().to_jsonable()
    _document_consumed_payloads(ctx.bus, doc)
    return doc


def _document_consumed_payloads(bus: Bus, doc: dict[str, Any]) -> None:
    """Our subscribers take raw bytes (the Consumer validates them itself, so bad input is
    dead-lettered with a reason instead of failing inside FastStream); FastStream therefore
    sees no payload type. Put the CloudEvent schemas of the accepted types in its place."""
    from ..broker import envelope_schema

    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    messages = components.setdefault("messages", {})
    for consumer in bus.consumers:
        refs = []
        for handles in consumer.handles:
            model = envelope_schema(handles.message_type)
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            refs.append({"$ref": f"#/components/schemas/{model.__name__}"})
        for key, message in messages.items():
            if key.startswith(f"{consumer.spec.name}:consume"):
                message["payload"] = refs[0] if len(refs) == 1 else {"oneOf": refs}
                message["contentType"] = "application/cloudevents+json"
    if not any(m.get("payload", {}).get("$ref", "").endswith("/EmptyPayload") for m in messages.values()):
        schemas.pop("EmptyPayload", None)
