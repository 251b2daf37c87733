"""Issue 15, minor: a one-character `KRANJ_ADMIN_TOKEN` was accepted, API tokens never
expired, and pages sent no security headers.

- the admin token needs at least 16 characters: a shorter one stops `kranj` and every
  service at start with one clear line;
- API tokens expire (default 90 days, `kranj token create --days N`), in every service,
  and `kranj token list` shows when;
- every response of every service carries Content-Security-Policy, X-Content-Type-Options
  and Referrer-Policy, and the main public pages still work in Chromium under the policy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from support.browser import serve_app
from support.settings import TEST_ADMIN_TOKEN, make_settings

from security.helpers import ADMIN
from shared import clock
from shared.settings import ADMIN_TOKEN_MIN_LENGTH, Settings

pytestmark = pytest.mark.integration

SERVICES = ("events", "booking", "surveys", "notify")
KRANJ = str(Path(sys.executable).parent / "kranj")


# ======================================================================================
# KRANJ_ADMIN_TOKEN
# ======================================================================================
def test_a_short_admin_token_is_refused_at_start(tmp_path):
    assert ADMIN_TOKEN_MIN_LENGTH == 16 and len(TEST_ADMIN_TOKEN) >= ADMIN_TOKEN_MIN_LENGTH
    for short in ("x", "a" * (ADMIN_TOKEN_MIN_LENGTH - 1), " " * 20):
        with pytest.raises(ValidationError, match="at least 16 characters"):
            Settings(admin_token=short)
    assert Settings(admin_token="s" * 16).admin_token is not None
    env = {**os.environ, "KRANJ_ADMIN_TOKEN": "x", "KRANJ_DATA_DIR": str(tmp_path)}
    for command in ([KRANJ, "token", "list"], [sys.executable, "-m", "services.events"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode != 0 and len(lines) == 1, (command, done.stderr)
        assert "invalid configuration: KRANJ_ADMIN_TOKEN: must be at least 16 characters" in lines[0]


# ======================================================================================
# API tokens expire
# ======================================================================================
STAFF_ONLY = {  # one staff-only call per service: 401 without a live token, another answer with one
    "events": ("POST", "/api/v1/events", {}),
    "booking": ("POST", "/api/v1/bookings/no-such-booking/approve", None),
    "surveys": ("POST", "/api/v1/surveys", {}),
    "notify": ("POST", "/api/v1/subscribers", {}),
}


@contextlib.asynccontextmanager
async def all_services(tmp_path, amqp_url: str, database_url: str, **overrides: Any) -> AsyncIterator[dict[str, Any]]:
    """The four service apps, whole lifespans, sharing one identity store on `database_url`."""
    settings = make_settings(tmp_path, amqp_url, accounts_database_url=database_url, **overrides)
    apps = {name: import_module(f"services.{name}.app").create_app(settings) for name in SERVICES}
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield apps


async def test_api_tokens_expire_in_every_service(tmp_path, amqp_url, database_url):
    async with all_services(tmp_path, amqp_url, database_url) as apps:
        store = apps["events"].state.ctx.accounts
        with clock.frozen(clock.now()) as advance:
            _id, short_lived = await store.create_token(role="admin", label="en dan", days=1)
            _id, default = await store.create_token(role="admin", label="privzeti")
            tokens = {t.label: t for t in await store.list_tokens()}
            assert tokens["en dan"].expires_at - tokens["en dan"].created_at == timedelta(days=1)
            assert tokens["privzeti"].expires_at - tokens["privzeti"].created_at == timedelta(days=90)

            async def answer(name: str, token: str) -> int:
                method, path, body = STAFF_ONLY[name]
                transport = httpx.ASGITransport(app=apps[name])
                async with httpx.AsyncClient(transport=transport, base_url="http://kranj.test") as client:
                    response = await client.request(
                        method, path, json=body, headers={"Authorization": f"Bearer {token}"}
                    )
                return response.status_code

            for name in SERVICES:
                assert await answer(name, short_lived) != 401, name
            advance(timedelta(days=1, seconds=1))
            for name in SERVICES:
                assert await answer(name, short_lived) == 401, name
                assert await answer(name, default) != 401, name
            advance(timedelta(days=89))
            for name in SERVICES:
                assert await answer(name, default) == 401, name


def test_kranj_token_create_days_and_list_shows_the_expiry(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KRANJ_")},
        "KRANJ_DATA_DIR": str(tmp_path),
        "KRANJ_ACCOUNTS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'accounts.db'}",
    }
    made = subprocess.run(
        [KRANJ, "token", "create", "--role", "admin", "--label", "ops", "--days", "5"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0 and made.stdout.startswith("kzv2."), made.stderr
    assert "valid 5 days" in made.stderr
    listed = subprocess.run([KRANJ, "token", "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    (token,) = json.loads(listed.stdout)
    created, expires = (datetime.fromisoformat(token[k]) for k in ("created_at", "expires_at"))
    assert expires - created == timedelta(days=5)
    table = subprocess.run([KRANJ, "token", "list"], env=env, capture_output=True, text=True, timeout=60).stdout
    assert "expires" in table.splitlines()[0] and expires.strftime("%Y-%m-%d %H:%M") in table
    too_long = subprocess.run(
        [KRANJ, "token", "create", "--role", "admin", "--days", "1000"], env=env, capture_output=True, text=True, timeout=60
    )
    assert too_long.returncode != 0


# ======================================================================================
# Security headers
# ======================================================================================
def _sample_path(path: str) -> str:
    return re.sub(r"\{ks\}", "primskovo", re.sub(r"\{[^}]+\}", "x", path))


async def test_every_response_of_every_service_has_the_security_headers(tmp_path, amqp_url, database_url):
    async with all_services(tmp_path, amqp_url, database_url) as apps:
        checked = 0
        for name, app in apps.items():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kranj.test") as client:
                paths = sorted(
                    {_sample_path(r.path) for r in app.routes if "GET" in (getattr(r, "methods", None) or ())}
                )
                for path in paths:
                    for headers in ({"Accept": "text/html"}, ADMIN):
                        response = await client.get(path, headers=headers)
                        csp = response.headers.get("content-security-policy", "")
                        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (name, path)
                        assert "script-src 'none'" in csp and "'unsafe-eval'" not in csp
                        assert response.headers.get("x-content-type-options") == "nosniff", (name, path)
                        assert response.headers.get("referrer-policy") == "strict-origin-when-cross-origin"
                        checked += 1
                # Errors too: a page that does not exist, a refused form post.
                for response in (await client.get("/nikjer"), await client.post("/login", data={})):
                    assert "content-security-policy" in response.headers and "x-content-type-options" in response.headers
        assert checked > 60


async def test_the_public_pages_work_in_chromium_under_the_policy(tmp_path, amqp_url, database_url, browser):
    settings = make_settings(tmp_path, amqp_url, surveys_database_url=database_url)
    apps = {name: import_module(f"services.{name}.app").create_app(settings) for name in SERVICES}
    async with contextlib.AsyncExitStack() as stack:
        bases = {name: await stack.enter_async_context(serve_app(app)) for name, app in apps.items()}
        async with httpx.AsyncClient(base_url=bases["surveys"], headers=ADMIN) as staff:
            survey_id = (await staff.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"})).json()["id"]
            assert (await staff.post(f"/api/v1/surveys/{survey_id}/open")).status_code == 200
        context = await browser.new_context()
        page = await context.new_page()
        violations: list[str] = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: violations.append(str(e)))
        for name, path in (
            ("events", "/events"),
            ("booking", "/rooms"),
            ("surveys", f"/surveys/{survey_id}"),
            ("notify", "/subscribe"),
            ("notify", "/noticeboard/primskovo"),
            ("events", "/login"),
        ):
            response = await page.goto(bases[name] + path)
            assert response is not None and response.ok, (path, response and response.status)
            assert "content-security-policy" in await response.all_headers()
            assert await page.locator("h1").count() >= 1, path
        # A form still posts under form-action 'self': answer the survey in the browser.
        await page.goto(f"{bases['surveys']}/surveys/{survey_id}")
        await page.locator("input[name='q.need'][value='yes']").check()
        await page.locator("input[name='q.what'][value='youth']").check()
        await page.locator("form button[type=submit]").first.click()
        await page.wait_for_load_state()
        assert "/hvala" in page.url, page.url
        await context.close()
        assert violations == [], violations
