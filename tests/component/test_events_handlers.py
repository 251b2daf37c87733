"""The events service as one component: its HTTP API and pages over ASGI, its SQLite
database, and its outbox relay in front of FastStream's TestRabbitBroker (in memory).

No real broker here: `start_bus=False`, and the relay publishes into TestRabbitBroker.
The real-broker behaviour of the same relay is in tests/integration/test_bus.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select
from support.settings import TEST_ADMIN_TOKEN, make_settings

from services.events.app import create_app
from shared.contracts import EVENT_PUBLISHED, parse_data, parse_envelope
from shared.migrations import upgrade_async
from shared.models import OutboxMessage
from shared.settings import Settings
from shared.web import ServiceApp

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
NOWHERE = "amqp://guest:guest@127.0.0.1:9/"  # never connected in these tests


@dataclass
class EventsApp:
    settings: Settings
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def ctx(self) -> ServiceApp:
        return self.app.state.ctx  # type: ignore[no-any-return]

    async def outbox(self) -> list[OutboxMessage]:
        async with self.ctx.db.session() as session:
            return list((await session.exec(select(OutboxMessage))).all())


@pytest.fixture
async def events(tmp_path: Path) -> AsyncIterator[EventsApp]:
    settings = make_settings(tmp_path, NOWHERE)
    await upgrade_async("events", settings.database_url("events"))
    app = create_app(settings, migrate=False, start_bus=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://events.test") as client:
        yield EventsApp(settings, app, client)
    await app.state.ctx.db.dispose()
    await app.state.ctx.accounts.dispose()


def event_body(**overrides: Any) -> dict[str, Any]:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    body: dict[str, Any] = {
        "ks": "primskovo",
        "title": "Delavnica peke kruha",
        "description": "Prinesite predpasnik.",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "venue": "Dom KS Primskovo, Jezerska cesta 41",
        "capacity": 20,
    }
    body.update(overrides)
    return body


async def create(events: EventsApp, **overrides: Any) -> dict[str, Any]:
    response = await events.client.post("/api/v1/events", json=event_body(**overrides), headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------
# Staff identity
# --------------------------------------------------------------------------------------
async def test_create_without_token_is_401(events: EventsApp) -> None:
    response = await events.client.post("/api/v1/events", json=event_body())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]
    assert await events.outbox() == []


@pytest.mark.parametrize("kind", ["unknown", "garbage", "tampered", "revoked"])
async def test_forged_or_revoked_token_is_401(events: EventsApp, kind: str) -> None:
    store = events.ctx.accounts
    if kind == "unknown":
        token = "kzv2." + "A" * 43
    elif kind == "garbage":
        token = "kzv1.not-a-token"
    elif kind == "tampered":
        _, genuine = await store.create_token(role="organiser")
        token = genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB")
    else:
        token_id, token = await store.create_token(role="admin")
        assert await store.revoke_token(token_id)
    response = await events.client.post(
        "/api/v1/events", json=event_body(), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert "invalid or expired" in response.json()["detail"]


async def test_staff_token_works_for_its_own_ks_only(events: EventsApp) -> None:
    _, token = await events.ctx.accounts.create_token(role="ks-staff", ks=["primskovo"], label="mojca")
    headers = {"Authorization": f"Bearer {token}"}
    ok = await events.client.post("/api/v1/events", json=event_body(), headers=headers)
    assert ok.status_code == 201, ok.text
    other = await events.client.post("/api/v1/events", json=event_body(ks="britof"), headers=headers)
    assert other.status_code == 403
    assert "britof" in other.json()["detail"]


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------
async def test_ends_before_start_is_422_with_readable_detail(events: EventsApp) -> None:
    body = event_body()
    body["ends_at"], body["starts_at"] = body["starts_at"], body["ends_at"]
    response = await events.client.post("/api/v1/events", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert "ends_at must be after starts_at" in response.json()["detail"]


async def test_unknown_ks_is_422_naming_the_slug(events: EventsApp) -> None:
    response = await events.client.post("/api/v1/events", json=event_body(ks="atlantis"), headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"] == "ks: unknown KS 'atlantis'; use one of the 26 KS slugs of Kranj"


async def test_time_without_offset_is_422(events: EventsApp) -> None:
    response = await events.client.post(
        "/api/v1/events", json=event_body(starts_at="2037-12-03T18:00:00"), headers=ADMIN
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("starts_at: ")


# --------------------------------------------------------------------------------------
# Create, publish, outbox
# --------------------------------------------------------------------------------------
async def test_create_returns_201_with_the_draft(events: EventsApp) -> None:
    body = event_body()
    created = await create(events)
    assert created["id"]
    assert created["status"] == "draft" and created["published_at"] is None
    assert created["title"] == body["title"] and created["ks"] == "primskovo" and created["capacity"] == 20
    assert datetime.fromisoformat(created["starts_at"]) == datetime.fromisoformat(body["starts_at"])
    assert created["url"] == f"http://127.0.0.1:8001/events/{created['id']}"
    assert await events.outbox() == []  # a draft announces nothing


async def test_publish_writes_exactly_one_valid_cloudevent(events: EventsApp) -> None:
    created = await create(events)
    first = await events.client.post(f"/api/v1/events/{created['id']}/publish", headers=ADMIN)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "published" and first.json()["published_at"]
    again = await events.client.post(f"/api/v1/events/{created['id']}/publish", headers=ADMIN)
    assert again.status_code == 200 and again.json()["published_at"] == first.json()["published_at"]

    [row] = await events.outbox()
    assert row.sent_at is None and row.attempts == 0
    assert row.routing_key == "events.event.published"
    assert row.type == EVENT_PUBLISHED.type == "si.kranj.events.event.published.v1"
    envelope = parse_envelope(row.body.encode())
    assert envelope.id == row.id
    assert envelope.source == "/kranj/events"
    assert envelope.type == EVENT_PUBLISHED.type
    assert envelope.subject == created["id"]
    assert envelope.datacontenttype == "application/json"
    data = parse_data(envelope, EVENT_PUBLISHED)
    assert data.event_id == created["id"]
    assert data.ks == "primskovo" and data.title == "Delavnica peke kruha" and data.capacity == 20
    assert str(data.url) == created["url"]
    assert data.starts_at == datetime.fromisoformat(created["starts_at"])


async def test_publish_without_token_is_401_and_writes_nothing(events: EventsApp) -> None:
    created = await create(events)
    response = await events.client.post(f"/api/v1/events/{created['id']}/publish")
    assert response.status_code == 401
    assert await events.outbox() == []


async def test_unknown_event_is_404(events: EventsApp) -> None:
    publish = await events.client.post("/api/v1/events/no-such-id/publish", headers=ADMIN)
    assert publish.status_code == 404
    assert "No such event" in publish.json()["detail"]
    get = await events.client.get("/api/v1/events/no-such-id")
    assert get.status_code == 404
    page = await events.client.get("/events/no-such-id", headers={"Accept": "text/html"})
    assert page.status_code == 404


async def test_past_event_cannot_be_published(events: EventsApp) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    created = await create(events, starts_at=past.isoformat(), ends_at=(past + timedelta(hours=1)).isoformat())
    response = await events.client.post(f"/api/v1/events/{created['id']}/publish", headers=ADMIN)
    assert response.status_code == 409
    assert "already ended" in response.json()["detail"]
    assert await events.outbox() == []


# --------------------------------------------------------------------------------------
# Public pages and reads
# --------------------------------------------------------------------------------------
async def test_public_page_hides_drafts_and_shows_published_in_slovenian(events: EventsApp) -> None:
    created = await create(
        events,
        title="Miklavževanje v Britofu",
        ks="britof",
        starts_at="2037-12-03T17:00:00Z",
        ends_at="2037-12-03T19:00:00Z",
        venue="Gasilski dom Britof",
    )
    draft_page = await events.client.get(f"/events/{created['id']}", headers={"Accept": "text/html"})
    assert draft_page.status_code == 404
    draft_api = await events.client.get(f"/api/v1/events/{created['id']}")
    assert draft_api.status_code == 401  # drafts are for staff

    await events.client.post(f"/api/v1/events/{created['id']}/publish", headers=ADMIN)
    page = await events.client.get(f"/events/{created['id']}", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Miklavževanje v Britofu" in page.text
    assert "četrtek, 3. decembra 2037, 18.00–20.00" in page.text
    assert "Gasilski dom Britof" in page.text
    assert "Britof" in page.text

    listed = await events.client.get("/api/v1/events", params={"ks": "britof"})
    assert [e["id"] for e in listed.json()] == [created["id"]]
    assert (await events.client.get("/api/v1/events", params={"ks": "primskovo"})).json() == []


async def test_listing_shows_only_published_events(events: EventsApp) -> None:
    draft = await create(events, title="Osnutek")
    published = await create(events, title="Objavljeno")
    await events.client.post(f"/api/v1/events/{published['id']}/publish", headers=ADMIN)
    listed = (await events.client.get("/api/v1/events")).json()
    assert [e["title"] for e in listed] == ["Objavljeno"]
    page = await events.client.get("/events")
    assert "Objavljeno" in page.text and "Osnutek" not in page.text
    assert draft["id"] not in page.text


async def test_the_room_catalogue_keeps_the_latest_of_each_room(events: EventsApp) -> None:
    """booking.room.updated keeps events' copy of the rooms: a later message wins, an older one
    arriving late changes nothing; rooms no longer in use and other KS' rooms are not offered."""
    from services.events import rooms
    from shared.contracts import CloudEvent
    from shared.contracts.booking import ROOM_UPDATED, RoomUpdated

    now = datetime.now(UTC)

    async def announce(when: datetime, **data: Any) -> str:
        body = ROOM_UPDATED.envelope(data, source="/kranj/booking", time=when)
        async with events.ctx.db.session() as session:
            outcome = await rooms.on_room_updated(
                session, CloudEvent.model_validate(body), RoomUpdated.model_validate(data)
            )
            await session.commit()
        return outcome

    room = {"room_id": "ks-primskovo-mala", "ks": "primskovo", "capacity": 20}
    assert await announce(now, **room, name="Mala dvorana") == "kept"
    assert await announce(now - timedelta(minutes=5), **room, name="Stara mala dvorana") == "older"
    assert await announce(now, room_id="ks-huje", ks="huje", name="Dom KS Huje", capacity=30) == "kept"
    assert await announce(now, room_id="ks-star", ks="primskovo", name="Stari dom", capacity=9, active=False) == "kept"
    offered = await rooms.rooms_of(events.ctx.db, events.settings, ["primskovo"])
    assert [(r.id, r.name, r.capacity) for r in offered] == [("ks-primskovo-mala", "Mala dvorana", 20)]
    assert offered[0].page_url.endswith("/rooms/ks-primskovo-mala")
    assert [r.ks for r in await rooms.rooms_of(events.ctx.db, events.settings, ["*"])] == ["huje", "primskovo"]
