"""Issue 15, minor: staff login.

On the old main five wrong passwords locked any account for 15 minutes (an outsider could
keep staff out), the lockout told which accounts exist, and 30 attempts in 3 s from one
address met no limit. Now failed attempts are throttled per address (10 a minute) and per
(account, address) (5 in 15 minutes); the account itself is never locked, and the answers
are the same for accounts that exist and accounts that do not.

The real events app (any service serves /login) on the real identity store (SQLite and
PostgreSQL), with the shipped login limits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from limits import parse_many
from staff_login import PASSWORD, add_staff, csrf_of
from support.settings import make_settings

from shared.settings import Settings

pytestmark = pytest.mark.integration

OWNER = "tajnica@kranj.si"
LOGIN_LIMITS = {
    name: Settings.model_fields[name].default
    for name in ("rate_limit_login", "rate_limit_login_account", "rate_limit_login_account_global")
}
THROTTLED = "Preveč neuspešnih prijav z vašega naslova"


@contextlib.asynccontextmanager
async def events_app(tmp_path, amqp_url: str, database_url: str) -> AsyncIterator[Any]:
    from services.events.app import create_app

    settings = make_settings(tmp_path, amqp_url, accounts_database_url=database_url, **LOGIN_LIMITS)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await add_staff(app.state.ctx.accounts, OWNER, "admin")
        yield app


@contextlib.asynccontextmanager
async def browser_at(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://kranj.test") as client:
        page = await client.get("/login")
        client.headers["X-CSRF-Token"] = csrf_of(page.text)
        yield client


async def attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/login", data={"email": email, "password": password})


def per_pair() -> int:
    return min(item.amount for item in parse_many(LOGIN_LIMITS["rate_limit_login_account"]))


def per_address() -> int:
    return min(item.amount for item in parse_many(LOGIN_LIMITS["rate_limit_login"]))


def shown(answer: httpx.Response) -> tuple[int, str]:
    """What a login answer tells: its status and its error text (without the email echoed back)."""
    start = answer.text.find('<a href="#email">')  # the error summary's link to the email field
    return answer.status_code, answer.text[start : start + 400].split("</")[0] if start >= 0 else ""


async def test_a_stranger_cannot_lock_the_owner_out(tmp_path, amqp_url, database_url):
    async with events_app(tmp_path, amqp_url, database_url) as app:
        async with browser_at(app, "203.0.113.66") as stranger:
            for _ in range(per_pair()):
                assert (await attempt(stranger, OWNER, "ugibam-geslo-123")).status_code == 401
            refused = await attempt(stranger, OWNER, PASSWORD)  # even the right password, from there
            assert refused.status_code == 429 and THROTTLED in refused.text
            assert 1 <= int(refused.headers["Retry-After"]) <= 15 * 60
            assert "kranj_staff" not in refused.headers.get("set-cookie", "")
        # The owner, from her own office, is not affected: never a lockout of the account.
        async with browser_at(app, "193.2.10.5") as owner:
            started = time.monotonic()
            answer = await attempt(owner, OWNER, PASSWORD)
            assert answer.status_code == 303 and "kranj_staff" in answer.headers.get("set-cookie", "")
            assert time.monotonic() - started < 1.0  # no slowdown for an address that has not failed
        account = await app.state.ctx.accounts.get_account(OWNER)
        assert account.locked_until is None


async def test_the_answers_do_not_tell_which_accounts_exist(tmp_path, amqp_url, database_url):
    async with events_app(tmp_path, amqp_url, database_url) as app:
        seen: dict[str, list[tuple[int, str]]] = {}
        timings: dict[str, float] = {}
        for n, email in enumerate((OWNER, "nihce-tak@kranj.si")):
            async with browser_at(app, f"198.51.100.{n + 1}") as guesser:
                started = time.monotonic()
                answers = [await attempt(guesser, email, "ugibam-geslo-123") for _ in range(per_pair() + 1)]
                timings[email] = time.monotonic() - started
                seen[email] = [shown(a) for a in answers]
        assert seen[OWNER] == seen["nihce-tak@kranj.si"], seen
        assert [s for s, _ in seen[OWNER]] == [401] * per_pair() + [429]
        slower, faster = max(timings.values()), min(timings.values())
        assert slower < 3 * faster + 0.5, timings  # the same Argon2 work either way


async def test_many_attempts_from_one_address_are_throttled(tmp_path, amqp_url, database_url):
    async with events_app(tmp_path, amqp_url, database_url) as app, browser_at(app, "192.0.2.30") as spray:
        answers = [await attempt(spray, f"ime{n}@kranj.si", "ugibam-geslo-123") for n in range(30)]
        codes = [a.status_code for a in answers]
        assert codes[: per_address()] == [401] * per_address()
        assert set(codes[per_address() :]) == {429}, codes
        assert THROTTLED in answers[-1].text and "Too many failed logins" in answers[-1].text
        # The owner elsewhere logs in as always.
        async with browser_at(app, "192.0.2.31") as owner:
            assert (await attempt(owner, OWNER, PASSWORD)).status_code == 303


async def test_an_account_under_attack_from_many_addresses_still_lets_its_owner_in(tmp_path, amqp_url, database_url):
    async with events_app(tmp_path, amqp_url, database_url) as app:
        for n in range(25):  # a botnet: a few wrong guesses from each of many addresses
            async with browser_at(app, f"10.66.{n}.1") as bot:
                assert (await attempt(bot, OWNER, f"geslo-{n}-xyz")).status_code == 401
        async with browser_at(app, "193.2.10.6") as owner:
            started = time.monotonic()
            assert (await attempt(owner, OWNER, PASSWORD)).status_code == 303
            assert time.monotonic() - started < 1.0
