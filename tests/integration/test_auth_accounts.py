"""Staff accounts, sessions, API tokens and CSRF (issue #8), against the real identity
store on SQLite and PostgreSQL, the services over HTTP, and a real Chromium.

- passwords are Argon2id hashes; a wrong password is 401, five in a row lock the account
  (429 with Retry-After), even for the right password afterwards;
- the session cookie is HttpOnly, SameSite=Lax, Secure when the platform is on https, and
  only its SHA-256 is stored; logout closes it on the server (the old cookie is refused);
- an API token is stored as its SHA-256 only; `kranj token revoke` ends it at once in
  every service sharing the store; KS staff and organisers stay inside their rights;
- every form needs its CSRF token (staff and resident forms alike): 403 without it;
  JSON calls riding on the session cookie need the header, bearer calls need nothing;
- in Chromium: log in on the login page, open a staff page, submit a staff form, log out.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from staff_login import PASSWORD, add_staff, browser_login, csrf_of, form_token, login, post_form
from support.browser import axe_serious_violations, serve_app
from support.settings import make_settings
from typer.testing import CliRunner

from kranj.cli import app as cli
from shared.accounts import AccountStore
from shared.migrations import upgrade_async
from shared.settings import Settings

pytestmark = pytest.mark.integration

NOWHERE = "amqp://guest:guest@127.0.0.1:9/"  # the bus is not started in the ASGI tests
HTML = {"Accept": "text/html"}


@asynccontextmanager
async def asgi(service: str, settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """One service over ASGI (no broker), its own database migrated."""
    from importlib import import_module

    await upgrade_async(service, settings.database_url(service))
    app = import_module(f"services.{service}.app").create_app(settings, migrate=False, start_bus=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}.test") as c:
            yield app, c
    finally:
        await app.state.ctx.db.dispose()
        await app.state.ctx.accounts.dispose()


def event_body(ks: str = "primskovo") -> dict[str, Any]:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    return {
        "ks": ks,
        "title": "Zbor krajanov",
        "description": "Vabljeni vsi krajani.",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "venue": "Dom KS",
    }


def set_cookie_headers(response: httpx.Response, name: str) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    return header


async def scalar(store: AccountStore, sql: str, **params: Any) -> Any:
    async with store.engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).scalar()


# --------------------------------------------------------------------------------------
# Passwords, sessions, cookies, logout
# --------------------------------------------------------------------------------------
async def test_login_with_argon2_password_session_cookie_and_logout(tmp_path, database_url):
    settings = make_settings(tmp_path, NOWHERE, accounts_database_url=database_url)
    async with asgi("events", settings) as (app, client):
        store = app.state.ctx.accounts
        await add_staff(store, "Mojca@KS-Primskovo.si", "ks-staff", ["primskovo"])
        stored = await store.password_hash("mojca@ks-primskovo.si")
        assert stored.startswith("$argon2id$") and PASSWORD not in stored

        page = await client.get("/login")
        assert page.status_code == 200 and 'autocomplete="current-password"' in page.text
        wrong = await client.post(
            "/login", data={"email": "mojca@ks-primskovo.si", "password": "napačno geslo", "csrf_token": csrf_of(page.text)}
        )
        assert wrong.status_code == 401
        assert "Napačen e-naslov ali geslo" in wrong.text and 'aria-describedby="email-napaka"' in wrong.text
        assert "<title>Napaka: " in wrong.text and 'href="#email"' in wrong.text  # the GOV.UK error summary
        assert "kranj_staff" not in wrong.headers.get("set-cookie", "")

        answer = await login(client, "mojca@ks-primskovo.si")
        cookie_header = set_cookie_headers(answer, "kranj_staff").lower()
        assert "httponly" in cookie_header and "samesite=lax" in cookie_header and "path=/" in cookie_header
        assert "secure" not in cookie_header  # plain http on 127.0.0.1: the browser must send it back
        session_cookie = client.cookies["kranj_staff"]
        assert await scalar(store, "SELECT count(*) FROM staff_sessions WHERE id = :h",
                            h=hashlib.sha256(session_cookie.encode()).hexdigest()) == 1  # fmt: skip
        assert await scalar(store, "SELECT count(*) FROM staff_sessions WHERE id = :c", c=session_cookie) == 0

        staff_page = await client.get("/events/osebje/", headers=HTML)
        assert staff_page.status_code == 200 and "mojca@ks-primskovo.si" in staff_page.text  # signed in, with logout
        logout_token = csrf_of(staff_page.text)
        out = await client.post("/logout", data={"csrf_token": logout_token})
        assert out.status_code == 303 and out.headers["location"] == "/login?odjava=1"
        assert await scalar(store, "SELECT count(*) FROM staff_sessions WHERE revoked_at IS NOT NULL") == 1

        client.cookies.set("kranj_staff", session_cookie)  # a copy of the cookie kept from before
        again = await client.get("/events/osebje/", headers=HTML)
        assert again.status_code == 303 and again.headers["location"] == "/login?next=%2Fevents%2Fosebje%2F"  # and back here after logging in
        api = await client.post("/api/v1/events", json=event_body(), headers={"X-CSRF-Token": logout_token})
        assert api.status_code == 401 and "Seja je potekla" in api.json()["detail"]


async def test_session_cookie_is_secure_when_the_platform_is_on_https(tmp_path):
    settings = make_settings(tmp_path, NOWHERE, public_url="https://kranj-za-vse.example")
    async with asgi("events", settings) as (app, client):
        await add_staff(app.state.ctx.accounts, "ana@kranj.si", "admin")
        page = await client.get("/login")
        assert "secure" in set_cookie_headers(page, "kranj_csrf").lower()
        token = csrf_of(page.text)
        # The https-only CSRF cookie would not come back over http: send it as a browser on https would.
        answer = await client.post(
            "/login",
            data={"email": "ana@kranj.si", "password": PASSWORD, "csrf_token": token},
            headers={"Cookie": f"kranj_csrf={page.cookies['kranj_csrf']}"},
        )
        assert answer.status_code == 303
        header = set_cookie_headers(answer, "kranj_staff").lower()
        assert "secure" in header and "httponly" in header and "samesite=lax" in header


async def test_repeated_wrong_passwords_throttle_the_address_never_the_account(tmp_path, database_url):
    """Issue 15: no account lockout (an outsider could keep staff out); failed attempts are
    throttled per (account, address) and per address (tests/security/test_login_throttle.py)."""
    settings = make_settings(tmp_path, NOWHERE, accounts_database_url=database_url)
    async with asgi("events", settings) as (app, client):
        await add_staff(app.state.ctx.accounts, "tajnik@kranj.si", "admin")
        token = await form_token(client, "/login")

        async def attempt(password: str, email: str = "tajnik@kranj.si") -> httpx.Response:
            return await client.post("/login", data={"email": email, "password": password, "csrf_token": token})

        for _ in range(5):
            assert (await attempt("ugibam-geslo")).status_code == 401
        throttled = await attempt("ugibam-geslo")
        assert throttled.status_code == 429
        assert 0 < int(throttled.headers["Retry-After"]) <= 15 * 60
        assert "Preveč neuspešnih prijav" in throttled.text and "Too many failed logins" in throttled.text
        right_but_throttled = await attempt(PASSWORD)
        assert right_but_throttled.status_code == 429 and "kranj_staff" not in right_but_throttled.headers.get("set-cookie", "")
        unknown = await client.post("/login", data={"email": "nihce@kranj.si", "password": "x" * 12, "csrf_token": token})
        assert unknown.status_code == 401  # the same answer as a wrong password: no account list by guessing
        # The account is not locked: from another address its owner logs in.
        other = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("192.0.2.77", 4000)), base_url="http://events.test")
        async with other:
            assert (await login(other, "tajnik@kranj.si")).status_code == 303


# --------------------------------------------------------------------------------------
# Roles: KS staff and organisers
# --------------------------------------------------------------------------------------
async def test_ks_staff_and_organiser_stay_within_their_rights(tmp_path):
    settings = make_settings(tmp_path, NOWHERE)
    async with asgi("events", settings) as (events, client):
        await add_staff(events.state.ctx.accounts, "mojca@kranj.si", "ks-staff", ["primskovo"])
        await login(client, "mojca@kranj.si")
        csrf = await form_token(client, "/events/osebje/nov")
        own = await client.post("/api/v1/events", json=event_body("primskovo"), headers={"X-CSRF-Token": csrf})
        assert own.status_code == 201, own.text
        other = await client.post("/api/v1/events", json=event_body("britof"), headers={"X-CSRF-Token": csrf})
        assert other.status_code == 403 and "britof" in other.json()["detail"]
        # the staff form: the KS list offers only her KS, and a forged choice is refused
        editor = await client.get("/events/osebje/nov", headers=HTML)
        assert 'value="primskovo"' in editor.text and 'value="britof"' not in editor.text
        forged = await client.post(
            "/events/osebje/nov",
            data={**{k: v for k, v in event_body("britof").items() if k not in ("starts_at", "ends_at")},
                  "starts_at": "2031-05-06T18:00", "ends_at": "2031-05-06T20:00", "csrf_token": csrf},  # fmt: skip
            headers=HTML,
        )
        assert forged.status_code == 403

    async with asgi("notify", settings) as (notify, client):
        _, organiser = await notify.state.ctx.accounts.create_token(role="organiser", ks=["huje"], label="Društvo")
        bearer = {"Authorization": f"Bearer {organiser}"}
        contacts = {"contacts": [{"name": "Tajnica", "email": "tajnica@ks-huje.si"}]}
        assert (await client.put("/api/v1/ks/huje/contacts", json=contacts, headers=bearer)).status_code == 403
        export = await client.post("/api/v1/subscribers/export", json={"email": "ana@example.si"}, headers=bearer)
        assert export.status_code == 403  # residents' data is for the city's admins only
        preview = {"title": "Čistilna akcija", "body": "V soboto ob 9.00.", "ks": ["huje"]}
        assert (await client.post("/api/v1/preview", json=preview, headers=bearer)).status_code == 200


# --------------------------------------------------------------------------------------
# API tokens: hashed, revocable at once in every service
# --------------------------------------------------------------------------------------
async def test_revoked_token_is_refused_at_once_by_every_service(tmp_path, database_url):
    settings = make_settings(tmp_path, NOWHERE, accounts_database_url=database_url)
    env = {"KRANJ_DATA_DIR": str(tmp_path), "KRANJ_ACCOUNTS_DATABASE_URL": database_url}
    args = ["token", "create", "--role", "ks-staff", "--ks", "primskovo", "--label", "Mojca"]
    created = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)  # the CLI runs its own loop
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    store = AccountStore(database_url)
    try:
        assert await scalar(store, "SELECT token_hash FROM api_tokens") == hashlib.sha256(token.encode()).hexdigest()
        assert await scalar(store, "SELECT count(*) FROM api_tokens WHERE token_hash = :t OR label = :t", t=token) == 0
        token_id = await scalar(store, "SELECT id FROM api_tokens")
    finally:
        await store.dispose()
    bearer = {"Authorization": f"Bearer {token}"}
    async with asgi("events", settings) as (_, events), asgi("booking", settings) as (_, booking):
        assert (await events.post("/api/v1/events", json=event_body(), headers=bearer)).status_code == 201
        assert (await booking.get("/api/v1/bookings", headers=bearer)).status_code == 200

        revoked = await asyncio.to_thread(CliRunner().invoke, cli, ["token", "revoke", token_id], env=env)
        assert revoked.exit_code == 0, revoked.output

        for answer in (
            await events.post("/api/v1/events", json=event_body(), headers=bearer),
            await booking.get("/api/v1/bookings", headers=bearer),
        ):
            assert answer.status_code == 401 and "revoked" in answer.json()["detail"]


# --------------------------------------------------------------------------------------
# CSRF
# --------------------------------------------------------------------------------------
async def test_forms_need_their_csrf_token_staff_and_public_alike(tmp_path):
    settings = make_settings(tmp_path, NOWHERE)
    async with asgi("events", settings) as (app, client):
        await add_staff(app.state.ctx.accounts, "urednik@kranj.si", "admin")
        await login(client, "urednik@kranj.si")
        form = {"ks": "primskovo", "title": "Pohod na Šmarjetno goro", "starts_at": "2031-05-06T09:00",
                "ends_at": "2031-05-06T13:00", "venue": "Pred domom KS"}  # fmt: skip
        refused = await client.post("/events/osebje/nov", data=form, headers=HTML)
        assert refused.status_code == 403
        assert "Obrazec ni bil poslan s te strani" in refused.text and "reload the page" in refused.text
        assert (await client.post("/events/osebje/nov", data={**form, "csrf_token": "ponarejen"})).status_code == 403
        made = await post_form(client, "/events/osebje/nov", None, form)
        assert made.status_code == 303 and made.headers["location"].startswith("/events/osebje/")

        # JSON on the session cookie: only with the header (or from this origin); bearer needs nothing
        json_refused = await client.post("/api/v1/events", json=event_body())
        assert json_refused.status_code == 403 and "X-CSRF-Token" in json_refused.json()["detail"]
        same_origin = await client.post("/api/v1/events", json=event_body(), headers={"Sec-Fetch-Site": "same-origin"})
        assert same_origin.status_code == 201
        cross_site = await client.post("/api/v1/events", json=event_body(), headers={"Origin": "https://napadalec.example"})
        assert cross_site.status_code == 403

    async with asgi("notify", settings) as (notify, client):
        sign_up = {"email": "nova@example.si", "ks": ["planina"], "topics": ["general"], "channels": ["email"], "consent": "yes"}
        refused = await client.post("/subscribe", data=sign_up, headers=HTML)
        assert refused.status_code == 403 and "Obrazec ni bil poslan s te strani" in refused.text
        accepted = await post_form(client, "/subscribe", None, sign_up)
        assert accepted.status_code == 200 and "Skoraj končano" in accepted.text
        # a token bound to this browser's cookie does not work from another browser
        token = await form_token(client, "/subscribe")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=notify), base_url="http://notify.test") as stranger:
            await stranger.get("/subscribe")
            theirs = await stranger.post("/subscribe", data={**sign_up, "csrf_token": token})
            assert theirs.status_code == 403


# --------------------------------------------------------------------------------------
# Chromium: the whole staff journey on a phone-sized screen
# --------------------------------------------------------------------------------------
async def test_chromium_login_staff_page_staff_form_and_logout(tmp_path, amqp_url, browser):
    from services.events.app import create_app

    app = create_app(make_settings(tmp_path, amqp_url))
    async with serve_app(app) as base:
        await add_staff(app.state.ctx.accounts, "mojca@ks-primskovo.si", "ks-staff", ["primskovo"])
        context = await browser.new_context(locale="sl-SI", viewport={"width": 375, "height": 740}, is_mobile=True)
        page = await context.new_page()

        await page.goto(f"{base}/events/osebje/")  # not signed in: to the login page
        assert page.url.startswith(f"{base}/login")
        assert await axe_serious_violations(page) == []
        await page.get_by_label("E-naslov").fill("mojca@ks-primskovo.si")
        await page.get_by_label("Geslo").fill("napačno-geslo-123")
        await page.get_by_role("button", name="Prijava").click()
        await page.wait_for_load_state()
        error = page.locator("#email-napaka")
        assert "Napačen e-naslov ali geslo" in await error.inner_text()
        assert await page.get_by_label("Geslo").get_attribute("aria-describedby") == "email-napaka"
        # The summary comes first, focused, its link leads to the field; the title says Napaka.
        assert await page.evaluate("document.activeElement.id") == "napake"
        assert (await page.title()).startswith("Napaka: ")
        await page.locator("#napake a").click()
        assert await page.evaluate("document.activeElement.id") == "email"
        assert await axe_serious_violations(page) == []
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # fits a phone

        await browser_login(page, base, "mojca@ks-primskovo.si")
        cookies = {c["name"]: c for c in await context.cookies()}
        assert cookies["kranj_staff"]["httpOnly"] and cookies["kranj_staff"]["sameSite"] == "Lax"
        assert await page.evaluate("document.cookie") == ""  # neither cookie is readable by scripts

        await page.goto(f"{base}/events/osebje/nov")
        assert "Prijavljeni: mojca@ks-primskovo.si" in await page.content()
        await page.select_option("#ks", "primskovo")
        await page.fill("#title", "Zbor krajanov Primskovega")
        await page.fill("#starts_at", "2031-05-06T18:00")
        await page.fill("#ends_at", "2031-05-06T20:00")
        await page.fill("#venue", "Dom KS Primskovo, Jezerska cesta 41")
        await page.get_by_role("button", name="Shrani osnutek").click()
        await page.wait_for_url(f"{base}/events/osebje/*")
        assert await page.locator("h1").inner_text() == "Zbor krajanov Primskovega"

        await page.get_by_role("button", name="Odjava").click()
        await page.wait_for_url(f"{base}/login?odjava=1")
        assert "Odjavljeni ste" in await page.content()
        await page.goto(f"{base}/events/osebje/")
        assert page.url.startswith(f"{base}/login")  # the session is closed on the server


# --------------------------------------------------------------------------------------
# The CLI for accounts; sessions end when idle, disabled or the password changes
# --------------------------------------------------------------------------------------
async def test_cli_accounts_and_the_ends_of_a_session(tmp_path):
    settings = make_settings(tmp_path, NOWHERE)
    env = {"KRANJ_DATA_DIR": str(tmp_path)}

    async def kranj(*args: str, stdin: str | None = None) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), input=stdin, env=env)

    added = await kranj("staff", "add", "--email", "Peter@Kranj.si", "--role", "ks-staff", "--ks", "huje",
                        "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert added.exit_code == 0 and "peter@kranj.si" in added.stdout, added.output
    again = await kranj("staff", "add", "--email", "peter@kranj.si", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.exit_code == 2 and "exists already" in again.stderr
    short = await kranj("staff", "add", "--email", "kratko@kranj.si", "--role", "admin", "--password-stdin", stdin="kratko\n")
    assert short.exit_code == 2 and "vsaj 10 znakov" in short.stderr
    listed = await kranj("staff", "list")
    assert "peter@kranj.si" in listed.stdout and "$argon2" not in listed.stdout

    async with asgi("events", settings) as (app, client):
        store = app.state.ctx.accounts

        async def signed_in() -> bool:
            return (await client.get("/events/osebje/", headers=HTML)).status_code == 200

        await login(client, "peter@kranj.si")
        assert await signed_in()
        async with store.engine.begin() as conn:  # twelve hours without use
            await conn.execute(sa.text("UPDATE staff_sessions SET expires_at = :t"), {"t": datetime.now(UTC) - timedelta(seconds=1)})
        assert not await signed_in()

        await login(client, "peter@kranj.si")
        assert await signed_in()
        changed = await kranj("staff", "passwd", "--email", "peter@kranj.si", "--password-stdin", stdin="novo-geslo-2027\n")
        assert changed.exit_code == 0, changed.output
        assert not await signed_in()  # a new password ends the open sessions

        await login(client, "peter@kranj.si", "novo-geslo-2027")
        assert await signed_in()
        assert (await kranj("staff", "disable", "--email", "peter@kranj.si")).exit_code == 0
        assert not await signed_in()
        token = await form_token(client, "/login")
        refused = await client.post("/login", data={"email": "peter@kranj.si", "password": "novo-geslo-2027", "csrf_token": token})
        assert refused.status_code == 401
        assert (await kranj("staff", "enable", "--email", "peter@kranj.si")).exit_code == 0
        await login(client, "peter@kranj.si", "novo-geslo-2027")
        assert await signed_in()
        assert (await kranj("staff", "disable", "--email", "nihce@kranj.si")).exit_code == 1
