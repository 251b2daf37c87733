"""Helpers for tests that act as staff or post HTML forms (CSRF tokens, /login).

    from staff_login import PASSWORD, add_staff, csrf_of, form_token, login, post_form

- `add_staff(store, email, role, ks)`: a staff account with password `PASSWORD`.
- `login(client, email)`: the real /login form (GET for its CSRF token, then POST); the
  httpx client keeps the session cookie.
- `form_token(client, url)`: GET a page and return the CSRF token of its forms (the client
  keeps the `kranj_csrf` cookie); `post_form(client, page_url, action, data)` does both.
- `browser_login(page, base, email)`: the same through Chromium's login page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import httpx

from shared.accounts import AccountStore

PASSWORD = "dolgo-geslo-za-teste-2026"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def add_staff(
    store: AccountStore, email: str, role: str, ks: Iterable[str] = (), password: str = PASSWORD
) -> None:
    await store.add_account(email=email, password=password, role=role, ks=list(ks))


async def form_token(client: httpx.AsyncClient, url: str) -> str:
    page = await client.get(url)
    assert page.status_code == 200, f"GET {url}: {page.status_code} {page.text[:300]}"
    return csrf_of(page.text)


async def post_form(
    client: httpx.AsyncClient, page_url: str, action: str | None, data: dict[str, Any], **kwargs: Any
) -> httpx.Response:
    """POST `data` to `action` (default: the page itself) with the token from `page_url`."""
    token = await form_token(client, page_url)
    return await client.post(action or page_url, data={**data, "csrf_token": token}, **kwargs)


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    response = await post_form(client, "/login", None, {"email": email, "password": password})
    assert response.status_code == 303, f"login failed: {response.status_code} {response.text[:300]}"
    return response


async def browser_login(page: Any, base: str, email: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base}/login")
    await page.get_by_label("E-naslov").fill(email)
    await page.get_by_label("Geslo").fill(password)
    await page.get_by_role("button", name="Prijava").click()
    await page.wait_for_load_state()
    assert "/login" not in page.url, f"still on the login page: {page.url}"
