"""Rate limits on every public form and endpoint (shared/web/ratelimit.py, issue #8).

Limits are set tiny here to prove the mechanism (per address, per contact, per link); the
shipped numbers, which key on who is acting and let a crowd on one address through, are
proven in tests/security/test_limits_crowds.py (issue 15).

Each service is served by uvicorn on a real port (as `kranj run` serves it, proxy headers
on): the test client is 127.0.0.1, a trusted proxy, so `X-Forwarded-For` picks the
resident's address, as behind the nginx gateway. Limits are set tiny through settings.
The counters do not depend on the database, so SQLite is enough here.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from booking_helpers import booking_body, future_day
from prometheus_client import REGISTRY
from pydantic import ValidationError
from support.browser import serve_app
from support.settings import GENEROUS_RATE_LIMITS, TEST_ADMIN_TOKEN, free_port, make_settings, wait_until

from shared.settings import Settings

pytestmark = pytest.mark.integration

STAFF = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml"}
TWO_PER_MINUTE = {f"rate_limit_{kind}": "2/minute" for kind in GENEROUS_RATE_LIMITS}
SLOVENIAN = {
    "address": "Prejeli smo preveč zahtev z vašega naslova",
    "phone": "Prejeli smo preveč zahtev za to telefonsko številko",
    "email": "Prejeli smo preveč zahtev za ta e-poštni naslov",
    "token": "Prejeli smo preveč zahtev za to povezavo",
}
_numbers = itertools.count(1)


def unique_email() -> str:
    return f"krajan{next(_numbers)}@example.si"


@asynccontextmanager
async def served(service: str, tmp_path, amqp_url: str, **overrides: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    from importlib import import_module

    settings = make_settings(tmp_path, amqp_url, **{**TWO_PER_MINUTE, **overrides})
    app = import_module(f"services.{service}.app").create_app(settings)
    async with serve_app(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield app, client


def limited_count(service: str, endpoint: str, by: str) -> float:
    labels = {"service": service, "endpoint": endpoint, "by": by}
    return REGISTRY.get_sample_value("kranj_rate_limited_total", labels) or 0.0


async def assert_limited(
    client: httpx.AsyncClient,
    service: str,
    endpoint: str,
    url: str,
    *,
    ip: str,
    other_ip: str,
    html: bool = False,
    limit: int = 2,
    **request: Any,
) -> httpx.Response:
    """`limit` requests from `ip` pass, the next is 429 with a numeric Retry-After and the
    Slovenian message (JSON `detail`, or the error page for a form), counted in the metric;
    another address is unaffected. `request` builds each request (a callable for bodies
    that must differ)."""
    headers = HTML if html else {}

    def kwargs() -> dict[str, Any]:
        return {k: (v() if callable(v) else v) for k, v in request.items()}

    for _ in range(limit):
        answer = await client.post(url, headers={**headers, "X-Forwarded-For": ip}, **kwargs())
        assert answer.status_code != 429, (url, answer.text)
    before = limited_count(service, endpoint, "address")
    refused = await client.post(url, headers={**headers, "X-Forwarded-For": ip}, **kwargs())
    assert refused.status_code == 429, (url, refused.status_code, refused.text)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    if html:
        assert refused.headers["content-type"].startswith("text/html")
        assert SLOVENIAN["address"] in refused.text
    else:
        assert refused.json()["detail"].startswith(SLOVENIAN["address"])
        assert "Too many requests from your address" in refused.json()["detail"]
    assert limited_count(service, endpoint, "address") == before + 1
    other = await client.post(url, headers={**headers, "X-Forwarded-For": other_ip}, **kwargs())
    assert other.status_code != 429, (url, other.text)
    return other


async def assert_link_limited(
    client: httpx.AsyncClient, service: str, endpoint: str, url: str, *, ip: str, other_ip: str, html: bool = False
) -> None:
    """Actions behind a signed link are counted per link (issue 15), whatever the address
    and whichever route it is used on: `url` has `{link}`; two posts through one link pass,
    the third (from another address) is 429 "za to povezavo"; another link from that
    address is unaffected. Each call uses links of its own."""
    headers = HTML if html else {}
    n = next(_numbers)
    link_a, link_b = f"link-{n}-a", f"link-{n}-b"
    for _ in range(2):
        answer = await client.post(url.format(link=link_a), headers={**headers, "X-Forwarded-For": ip})
        assert answer.status_code != 429, (url, answer.text)
    before = limited_count(service, endpoint, "token")
    refused = await client.post(url.format(link=link_a), headers={**headers, "X-Forwarded-For": other_ip})
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60, refused.text
    assert SLOVENIAN["token"] in refused.text
    assert limited_count(service, endpoint, "token") == before + 1
    other = await client.post(url.format(link=link_b), headers={**headers, "X-Forwarded-For": other_ip})
    assert other.status_code != 429, (url, other.text)


async def _published_event(client: httpx.AsyncClient) -> str:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
    created = await client.post(
        "/api/v1/events",
        headers=STAFF,
        json={
            "ks": "primskovo",
            "title": "Delavnica: kaj potrebuje naša KS",
            "description": "Vabljeni vsi krajani.",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat(),
            "venue": "Dom KS Primskovo",
        },
    )
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    assert (await client.post(f"/api/v1/events/{event_id}/publish", headers=STAFF)).status_code == 200
    return str(event_id)


async def use_csrf_token(client: httpx.AsyncClient, page: str) -> None:
    """Forms carry a CSRF token (shared/web/csrf.py): read one from a page with a form and
    send it as X-CSRF-Token, as the page's own form would (the cookie stays in the client)."""
    answer = await client.get(page, headers=HTML)
    assert answer.status_code == 200, (page, answer.status_code)
    found = re.search(r'name="csrf_token" value="([^"]+)"', answer.text)
    if found:
        client.headers["X-CSRF-Token"] = found[1]


def registration() -> dict[str, str]:
    return {"name": "Ana Novak", "email": unique_email()}


async def test_events_public_writes_are_limited_per_address(tmp_path, amqp_url):
    async with served("events", tmp_path, amqp_url) as (_, client):
        event_id = await _published_event(client)
        ok = await assert_limited(
            client, "events", "/api/v1/events/{event_id}/registrations", f"/api/v1/events/{event_id}/registrations",
            ip="203.0.113.1", other_ip="203.0.113.2", json=registration,
        )
        assert ok.status_code == 201 and ok.json()["status"] == "confirmed"
        await use_csrf_token(client, f"/events/{event_id}")
        ok = await assert_limited(
            client, "events", "/events/{event_id}/prijava", f"/events/{event_id}/prijava",
            ip="203.0.113.3", other_ip="203.0.113.4", html=True, data=registration,
        )
        assert ok.status_code == 303
        await assert_link_limited(
            client, "events", "/api/v1/registrations/{registration_id}/cancel",
            "/api/v1/registrations/nope/cancel?token={link}", ip="203.0.113.5", other_ip="203.0.113.6",
        )
        await assert_link_limited(
            client, "events", "/events/prijava/{token}/preklic", "/events/prijava/{link}/preklic",
            ip="203.0.113.7", other_ip="203.0.113.8", html=True,
        )


async def test_booking_public_writes_are_limited_per_address(tmp_path, amqp_url):
    day = future_day(1)
    starts = itertools.count(8)

    def booking() -> dict[str, Any]:
        hour = next(starts) % 12 + 8
        return booking_body(day, f"{hour:02d}:00", f"{hour:02d}:30", email=unique_email(), phone=None)

    def form() -> dict[str, str]:
        return {"datum": day.isoformat(), "od": "18:00", "do": "19:00", "purpose": "Vaje", "name": "Mojca",
                "email": unique_email(), "attendees": "5"}

    async with served("booking", tmp_path, amqp_url) as (_, client):
        await use_csrf_token(client, "/rooms/ks-primskovo")
        ok = await assert_limited(
            client, "booking", "/api/v1/bookings", "/api/v1/bookings",
            ip="198.51.100.1", other_ip="198.51.100.2", json=booking,
        )
        assert ok.status_code in (201, 409), ok.text
        await assert_limited(
            client, "booking", "/rooms/{room_id}/rezervacija", "/rooms/ks-primskovo/rezervacija",
            ip="198.51.100.3", other_ip="198.51.100.4", html=True, data=form,
        )
        await assert_link_limited(
            client, "booking", "/api/v1/bookings/{booking_id}/cancel", "/api/v1/bookings/nope/cancel?token={link}",
            ip="198.51.100.5", other_ip="198.51.100.6",
        )
        await assert_link_limited(
            client, "booking", "/rooms/prosnja/{token}/preklic", "/rooms/prosnja/{link}/preklic",
            ip="198.51.100.7", other_ip="198.51.100.8", html=True,
        )


async def test_survey_answers_are_limited_per_address(tmp_path, amqp_url):
    async with served("surveys", tmp_path, amqp_url) as (_, client):
        created = await client.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"}, headers=STAFF)
        survey_id = created.json()["id"]
        assert (await client.post(f"/api/v1/surveys/{survey_id}/open", headers=STAFF)).status_code == 200
        answer = {"answers": {"need": "yes", "what": ["youth"]}, "age_band": "30-49"}
        ok = await assert_limited(
            client, "surveys", "/api/v1/surveys/{survey_id}/responses", f"/api/v1/surveys/{survey_id}/responses",
            ip="192.0.2.1", other_ip="192.0.2.2", json=answer,
        )
        assert ok.status_code == 201
        await use_csrf_token(client, f"/surveys/{survey_id}")
        await assert_limited(
            client, "surveys", "/surveys/{survey_id}", f"/surveys/{survey_id}",
            ip="192.0.2.3", other_ip="192.0.2.4", html=True, data={"need": "yes", "what": "youth"},
        )


async def test_notify_public_writes_are_limited(tmp_path, amqp_url):
    async with served("notify", tmp_path, amqp_url, sms_gateway_token="gateway-secret") as (_, client):
        await use_csrf_token(client, "/subscribe")
        def sign_up() -> dict[str, Any]:
            return {"email": unique_email(), "ks": ["planina"], "topics": ["general"], "channels": ["email"], "consent": "yes"}

        ok = await assert_limited(
            client, "notify", "/subscribe", "/subscribe", ip="203.0.113.21", other_ip="203.0.113.22", html=True, data=sign_up,
        )
        assert ok.status_code == 200 and "Skoraj končano" in ok.text
        await assert_limited(
            client, "notify", "/subscribe/code/{token}", "/subscribe/code/forged",
            ip="203.0.113.23", other_ip="203.0.113.24", html=True, data={"code": "123456"},
        )
        await assert_link_limited(
            client, "notify", "/manage/{token}", "/manage/{link}", ip="203.0.113.25", other_ip="203.0.113.26", html=True,
        )

        # One-click unsubscribe comes from mail providers' shared addresses: counted per link.
        for n in range(2):
            answer = await client.post("/unsubscribe/link-a", headers={"X-Forwarded-For": f"203.0.113.{30 + n}"})
            assert answer.status_code == 400  # forged, but counted
        refused = await client.post("/unsubscribe/link-a", headers={**HTML, "X-Forwarded-For": "203.0.113.40"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert SLOVENIAN["token"] in refused.text
        assert (await client.post("/unsubscribe/link-b", headers={"X-Forwarded-For": "203.0.113.30"})).status_code == 400

        # Printable PDFs are made on request: counted per address (a script cannot keep
        # notify's CPU busy making them; notify also makes one at a time).
        for _ in range(2):
            pdf = await client.get("/noticeboard/planina/bilten.pdf", headers={"X-Forwarded-For": "203.0.113.50"})
            assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        refused = await client.get("/noticeboard/planina/bilten.pdf", headers={**HTML, "X-Forwarded-For": "203.0.113.50"})
        assert refused.status_code == 429 and SLOVENIAN["address"] in refused.text
        other = await client.get("/noticeboard/planina/bilten.pdf", headers={"X-Forwarded-For": "203.0.113.51"})
        assert other.status_code == 200

        # The SMS gateway forwards every reply from one address: counted per sender number.
        gateway = {"Authorization": "Bearer gateway-secret"}
        for _ in range(2):
            answer = await client.post("/api/v1/sms/inbound", headers=gateway, json={"from": "+38640111222", "text": "Hvala"})
            assert answer.status_code == 200 and answer.json()["action"] == "ignored"
        before = limited_count("notify", "/api/v1/sms/inbound", "phone")
        refused = await client.post("/api/v1/sms/inbound", headers=gateway, json={"from": "040 111 222", "text": "STOP"})
        assert refused.status_code == 429 and refused.json()["detail"].startswith(SLOVENIAN["phone"])
        assert limited_count("notify", "/api/v1/sms/inbound", "phone") == before + 1
        other = await client.post("/api/v1/sms/inbound", headers=gateway, json={"from": "+38640111333", "text": "Hvala"})
        assert other.status_code == 200


async def test_phone_and_email_limits_apply_across_addresses(tmp_path, amqp_url):
    """One number cannot be fed through many addresses (SMS pumping), however it is written."""
    async with served(
        "notify", tmp_path, amqp_url, rate_limit_subscribe="100/minute", rate_limit_subscribe_contact="2/hour"
    ) as (_, client):
        await use_csrf_token(client, "/subscribe")
        form = {"ks": ["planina"], "topics": ["general"], "channels": ["sms"], "consent": "yes"}
        for n, written in enumerate(("041 222 333", "+386 41 222 333")):
            answer = await client.post("/subscribe", data={**form, "phone": written}, headers={"X-Forwarded-For": f"10.1.0.{n}"})
            assert answer.status_code == 303, answer.text
        before = limited_count("notify", "/subscribe", "phone")
        refused = await client.post(
            "/subscribe", data={**form, "phone": "00386 41 222 333"}, headers={**HTML, "X-Forwarded-For": "10.1.0.9"}
        )
        assert refused.status_code == 429 and SLOVENIAN["phone"] in refused.text
        assert int(refused.headers["Retry-After"]) > 60  # the hour's window
        assert limited_count("notify", "/subscribe", "phone") == before + 1
        other = await client.post("/subscribe", data={**form, "phone": "041 222 444"}, headers={"X-Forwarded-For": "10.1.0.9"})
        assert other.status_code == 303

        # The same for an email address, whatever its case.
        email_form = {**form, "channels": ["email"]}
        for n, written in enumerate(("Mojca@Example.si", "mojca@example.si")):
            answer = await client.post("/subscribe", data={**email_form, "email": written}, headers={"X-Forwarded-For": f"10.2.0.{n}"})
            assert answer.status_code == 200, answer.text
        refused = await client.post("/subscribe", data={**email_form, "email": "MOJCA@example.si"}, headers={"X-Forwarded-For": "10.2.0.9"})
        assert refused.status_code == 429 and SLOVENIAN["email"] in refused.text


async def test_the_limit_resets_after_its_window(tmp_path, amqp_url):
    async with served("events", tmp_path, amqp_url, rate_limit_registration="1/2 seconds") as (_, client):
        event_id = await _published_event(client)
        url = f"/api/v1/events/{event_id}/registrations"
        first = await client.post(url, json=registration())
        assert first.status_code == 201
        refused = await client.post(url, json=registration())
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 2

        async def accepted() -> bool:
            return (await client.post(url, json=registration())).status_code == 201

        await wait_until(accepted, timeout=10, interval=0.25, message="the registration window to pass")


async def test_staff_are_not_limited_and_a_spoofed_address_from_an_untrusted_peer_is_ignored(tmp_path, amqp_url):
    async with served("events", tmp_path, amqp_url, rate_limit_registration="1/minute") as (_, client):
        event_id = await _published_event(client)
        url = f"/api/v1/events/{event_id}/registrations"
        for _ in range(4):  # staff registering residents by phone: never limited, never counted
            assert (await client.post(url, json=registration(), headers=STAFF)).status_code == 201
        assert (await client.post(url, json=registration())).status_code == 201
        assert (await client.post(url, json=registration())).status_code == 429

        # A client that is no trusted proxy (127.0.0.2) cannot pick its address with X-Forwarded-For.
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=str(client.base_url), transport=transport, timeout=30) as direct:
            first = await direct.post(url, json=registration(), headers={"X-Forwarded-For": "192.0.2.50"})
            assert first.status_code == 201
            spoofed = await direct.post(url, json=registration(), headers={"X-Forwarded-For": "192.0.2.51"})
            assert spoofed.status_code == 429


def test_rate_limits_are_checked_when_the_settings_are_read():
    assert Settings(rate_limit_sms_code="10/10 minutes; 50/day").rate_limit_sms_code == "10/10 minutes; 50/day"
    with pytest.raises(ValidationError, match="a rate limit must look like"):
        Settings(rate_limit_booking="plenty")


async def test_behind_the_real_gateway_a_resident_cannot_choose_their_address(tmp_path, amqp_url):
    """deploy/nginx/gateway.conf (Debian's nginx, as test_ops_gateway runs it) replaces the
    client's own X-Forwarded-For with its peer's address: writing a new one on each request
    does not escape the limit. (With `$proxy_add_x_forwarded_for` it did.)"""
    from test_ops_gateway import NGINX, SERVICES, local_config, nginx

    assert Path(NGINX).exists(), "nginx is not installed (apt-get install nginx; .ci/run does it)"
    async with served("events", tmp_path, amqp_url, rate_limit_registration="2/minute") as (_, client):
        event_id = await _published_event(client)
        port = int(str(client.base_url).rstrip("/").rsplit(":", 1)[1])
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        listen = free_port()
        config = local_config(dict.fromkeys(SERVICES, port), listen, prefix)
        async with nginx(config, prefix, listen) as gateway, httpx.AsyncClient(base_url=gateway, timeout=30) as outside:
            url = f"/api/v1/events/{event_id}/registrations"
            answers = [
                await outside.post(url, json=registration(), headers={"X-Forwarded-For": f"192.0.2.{n}"})
                for n in range(3)
            ]
        assert [a.status_code for a in answers] == [201, 201, 429], [a.text for a in answers]
        assert answers[2].json()["detail"].startswith(SLOVENIAN["address"])
