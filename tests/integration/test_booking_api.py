"""The booking HTTP API over ASGI against real databases: requests, 409 reasons, approve,
reject, cancel (staff and signed link), availability, series, expiry, figures, iCalendar,
and the outbox rows as valid CloudEvents."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from booking_helpers import booking_body, future_day, local
from fastapi import FastAPI
from sqlmodel import select
from support.settings import TEST_ADMIN_TOKEN, make_settings

from services.booking import bookings, decisions, domain
from services.booking.app import create_app
from services.booking.models import Booking
from shared.contracts import parse_data, parse_envelope
from shared.contracts.booking import BOOKING_MESSAGE_TYPES, BookingChanged
from shared.migrations import upgrade_async
from shared.models import OutboxMessage, utcnow
from shared.settings import Settings
from shared.web import ServiceApp

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
NOWHERE = "amqp://guest:guest@127.0.0.1:9/"  # the bus is not started: outbox rows are read directly


@dataclass
class BookingApp:
    settings: Settings
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def ctx(self) -> ServiceApp:
        return self.app.state.ctx  # type: ignore[no-any-return]

    async def messages(self) -> list[tuple[str, BookingChanged]]:
        """Every booking.booking.* outbox row, validated as a CloudEvent of its type: (verb, data)."""
        async with self.ctx.db.session() as session:
            rows = list((await session.exec(select(OutboxMessage).order_by(OutboxMessage.created_at))).all())
        found = []
        for row in rows:
            if not row.routing_key.startswith("booking.booking."):
                continue  # booking.room.updated: the room catalogue, not a booking
            envelope = parse_envelope(row.body.encode())
            verb = row.routing_key.rsplit(".", 1)[1]
            message_type = BOOKING_MESSAGE_TYPES[verb]
            assert envelope.type == message_type.type == row.type
            assert envelope.source == "/kranj/booking" and envelope.specversion == "1.0"
            assert json.loads(row.body)["datacontenttype"] == "application/json"
            found.append((verb, parse_data(envelope, message_type)))
        return found

    async def set_room(self, room_id: str = "ks-primskovo", **values: Any) -> None:
        response = await self.client.patch(f"/api/v1/rooms/{room_id}", json=values, headers=ADMIN)
        assert response.status_code == 200, response.text


async def _booking_app(tmp_path: Path, database_url: str) -> AsyncIterator[BookingApp]:
    settings = make_settings(tmp_path, NOWHERE, booking_database_url=database_url)
    await upgrade_async("booking", settings.database_url("booking"))
    app = create_app(settings, migrate=False, start_bus=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://booking.test") as client:
        yield BookingApp(settings, app, client)
    await app.state.ctx.db.dispose()
    await app.state.ctx.accounts.dispose()


@pytest.fixture
async def booking(tmp_path: Path, database_url: str) -> AsyncIterator[BookingApp]:
    """On SQLite and PostgreSQL."""
    async for value in _booking_app(tmp_path, database_url):
        yield value


@pytest.fixture
async def booking_sqlite(tmp_path: Path) -> AsyncIterator[BookingApp]:
    async for value in _booking_app(tmp_path, f"sqlite+aiosqlite:///{(tmp_path / 'booking.db').resolve()}"):
        yield value


THURSDAY = 3
WEDNESDAY = 2


async def test_request_approve_and_the_messages(booking: BookingApp):
    day = future_day(THURSDAY)
    response = await booking.client.post("/api/v1/bookings", json=booking_body(day))
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "requested"
    assert created["phone"] == "+38640123456"
    booking_id = created["id"]

    # the slot is held: the same time again is refused, touching times are fine
    again = await booking.client.post("/api/v1/bookings", json=booking_body(day, "19:00", "21:00"))
    assert again.status_code == 409
    assert again.json()["detail"] == "Termin je že zaseden. / That time is already booked."
    assert again.json()["rules"] == ["taken"]
    touching = await booking.client.post("/api/v1/bookings", json=booking_body(day, "20:00", "22:00"))
    assert touching.status_code == 201, touching.text

    # residents see no personal data; staff do
    public = (await booking.client.get(f"/api/v1/bookings/{booking_id}")).json()
    assert public["status"] == "requested" and public["email"] is None
    assert (await booking.client.get(f"/api/v1/bookings/{booking_id}", headers=ADMIN)).json()[
        "email"
    ] == "mojca@example.si"

    assert (await booking.client.post(f"/api/v1/bookings/{booking_id}/approve")).status_code == 401
    other_ks = (await booking.ctx.accounts.create_token(role="ks-staff", ks=["planina"]))[1]
    forbidden = await booking.client.post(
        f"/api/v1/bookings/{booking_id}/approve", headers={"Authorization": f"Bearer {other_ks}"}
    )
    assert forbidden.status_code == 403
    own_ks = (await booking.ctx.accounts.create_token(role="ks-staff", ks=["primskovo"]))[1]
    approved = await booking.client.post(
        f"/api/v1/bookings/{booking_id}/approve", headers={"Authorization": f"Bearer {own_ks}"}
    )
    assert approved.status_code == 200 and approved.json()["status"] == "confirmed"
    rejected = await booking.client.post(f"/api/v1/bookings/{booking_id}/reject", json={"reason": "x"}, headers=ADMIN)
    assert rejected.status_code == 409

    messages = await booking.messages()
    assert [verb for verb, _ in messages] == ["requested", "requested", "confirmed"]
    requested, confirmed = messages[0][1], messages[2][1]
    assert requested.booking_id == booking_id and requested.ks == "primskovo"
    assert requested.room_name == "Dom KS Primskovo" and requested.attendees == 12
    assert requested.requester.email == "mojca@example.si" and requested.requester.phone == "+38640123456"
    assert requested.requester.language == "sl" and requested.expires_at is not None
    assert requested.review_url is not None and requested.access_instructions is None
    assert requested.starts_at == local(day, "18:00")
    assert confirmed.status == "confirmed" and confirmed.access_instructions
    assert confirmed.cancel_url is not None and confirmed.expires_at is None
    # the cancel link in the message works for the requester, and only for this booking
    token = str(confirmed.cancel_url).split("/prosnja/")[1].split("/")[0]
    wrong = await booking.client.post(f"/api/v1/bookings/{messages[1][1].booking_id}/cancel", params={"token": token})
    assert wrong.status_code == 403
    cancelled = await booking.client.post(f"/api/v1/bookings/{booking_id}/cancel", params={"token": token})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    verb, data = (await booking.messages())[-1]
    assert verb == "cancelled" and data.cancelled_by == "requester" and data.cancel_url is None
    # the slot is free again
    assert (await booking.client.post("/api/v1/bookings", json=booking_body(day))).status_code == 201


async def test_rules_refuse_with_reasons(booking_sqlite: BookingApp):
    client = booking_sqlite.client
    wed, thu = future_day(WEDNESDAY), future_day(THURSDAY)

    async def refused(body: dict[str, Any]) -> str:
        response = await client.post("/api/v1/bookings", json=body)
        assert response.status_code == 409, response.text
        return str(response.json()["detail"])

    assert "uradne ure KS (17.00–19.00)" in await refused(booking_body(wed, "16:00", "18:00"))
    assert "odprt le od 8.00–22.00" in await refused(booking_body(thu, "21:00", "23:00"))
    assert await refused(booking_body(thu, attendees=51)) == (
        "Prostor sprejme največ 50 oseb. / The room holds at most 50 people."
    )
    assert "vsaj 1 h" in await refused(booking_body(thu, "18:00", "18:30"))
    assert "največ 4 h" in await refused(booking_body(thu, "08:00", "13:00"))
    assert "največ 180 dni" in await refused(booking_body(future_day(THURSDAY, 200)))
    holiday = next(
        d for d in (thu + timedelta(days=i) for i in range(-7, 170)) if domain.holiday_name(d) and d.weekday() < 6
    )
    assert "Na državni praznik" in await refused(booking_body(holiday, "10:00", "12:00"))
    await booking_sqlite.set_room(min_notice_hours=24 * 30)
    assert "vsaj 720 h vnaprej" in await refused(booking_body(thu))
    await booking_sqlite.set_room(min_notice_hours=24)
    # a one-off closure
    closure = await client.post(
        "/api/v1/rooms/ks-primskovo/closures",
        json={
            "starts_at": local(thu, "00:00").isoformat(),
            "ends_at": local(thu, "23:59").isoformat(),
            "reason": "volitve",
        },
        headers=ADMIN,
    )
    assert closure.status_code == 201
    assert "zaprt: volitve" in await refused(booking_body(thu))

    # malformed input is 422 with a readable detail
    bad = await client.post("/api/v1/bookings", json=booking_body(thu, email=None, phone=None))
    assert bad.status_code == 422 and "email address or a phone number" in bad.json()["detail"]
    bad = await client.post("/api/v1/bookings", json=booking_body(thu, "20:00", "18:00"))
    assert bad.status_code == 422
    bad = await client.post("/api/v1/bookings", json=booking_body(thu) | {"starts_at": "2026-12-03T18:00:00"})
    assert bad.status_code == 422
    missing = await client.post("/api/v1/bookings", json=booking_body(thu, room_id="nope"))
    assert missing.status_code == 404
    assert await booking_sqlite.messages() == []


async def test_buffer_and_self_confirming_rooms(booking_sqlite: BookingApp):
    client = booking_sqlite.client
    await booking_sqlite.set_room(requires_approval=False, buffer_minutes=15)
    thu = future_day(THURSDAY)
    first = await client.post("/api/v1/bookings", json=booking_body(thu))
    assert first.status_code == 201 and first.json()["status"] == "confirmed"
    buffer = await client.post("/api/v1/bookings", json=booking_body(thu, "20:00", "21:00"))
    assert buffer.status_code == 409 and buffer.json()["rules"] == ["buffer"]
    assert "15 minut" in buffer.json()["detail"]
    assert (await client.post("/api/v1/bookings", json=booking_body(thu, "20:15", "21:15"))).status_code == 201
    verbs = [verb for verb, _ in await booking_sqlite.messages()]
    assert verbs == ["confirmed", "confirmed"]
    # staff cancel with a reason
    cancelled = await client.post(
        f"/api/v1/bookings/{first.json()['id']}/cancel", json={"reason": "Poplava v kleti"}, headers=ADMIN
    )
    assert cancelled.status_code == 200
    verb, data = (await booking_sqlite.messages())[-1]
    assert (verb, data.cancelled_by, data.reason) == ("cancelled", "staff", "Poplava v kleti")


async def test_reject_with_reason(booking_sqlite: BookingApp):
    created = (await booking_sqlite.client.post("/api/v1/bookings", json=booking_body(future_day(THURSDAY)))).json()
    no_reason = await booking_sqlite.client.post(f"/api/v1/bookings/{created['id']}/reject", json={}, headers=ADMIN)
    assert no_reason.status_code == 422
    response = await booking_sqlite.client.post(
        f"/api/v1/bookings/{created['id']}/reject", json={"reason": "Ta večer je občni zbor."}, headers=ADMIN
    )
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    verb, data = (await booking_sqlite.messages())[-1]
    assert verb == "rejected" and data.reason == "Ta večer je občni zbor." and data.cancel_url is None


async def test_recurring_series_with_conflicts(booking_sqlite: BookingApp):
    client = booking_sqlite.client
    first = future_day(THURSDAY, min_days=14)
    until = first + timedelta(weeks=4)
    blocker = await client.post("/api/v1/bookings", json=booking_body(first + timedelta(weeks=2), name="Prvi"))
    assert blocker.status_code == 201
    series = booking_body(first, recurrence={"weekly_until": until.isoformat()})
    resident = await client.post("/api/v1/bookings", json=series)  # a series is booked by KS staff
    assert resident.status_code == 403 and resident.json()["rules"] == ["series-needs-staff"]
    failed = await client.post("/api/v1/bookings", json=series, headers=ADMIN)
    assert failed.status_code == 409
    conflicts = failed.json()["conflicts"]
    assert [c["starts_at"][:10] for c in conflicts] == [local(first + timedelta(weeks=2), "18:00").isoformat()[:10]]
    assert "Termin je že zaseden" in conflicts[0]["reasons"][0]
    assert failed.json()["rules"][0] == "series-conflict"

    skipped = await client.post("/api/v1/bookings", json=series | {"on_conflict": "skip"}, headers=ADMIN)
    assert skipped.status_code == 201, skipped.text
    body = skipped.json()
    dates = [first + timedelta(weeks=w) for w in range(5) if w != 2]
    # every Thursday until the date, except the taken one (and any public holiday)
    assert len(body["bookings"]) + len(body["skipped"]) == 5
    assert len(body["skipped"]) >= 1 and len(body["bookings"]) <= len(dates)
    assert len({b["series_id"] for b in body["bookings"]}) == 1
    rrule = booking_body(first, "10:00", "12:00", recurrence={"rrule": "FREQ=WEEKLY;COUNT=3"})
    made = await client.post("/api/v1/bookings", json=rrule, headers=ADMIN)
    assert made.status_code == 201 and len(made.json()["bookings"]) == 3


async def test_availability(booking: BookingApp):
    client = booking.client
    wed = future_day(WEDNESDAY)
    await client.post("/api/v1/bookings", json=booking_body(wed, "10:00", "12:00"))
    response = await client.get(
        "/api/v1/rooms/ks-primskovo/availability",
        params={"from": local(wed, "00:00").isoformat(), "to": local(wed, "23:59").isoformat()},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(f["starts_at"], f["ends_at"]) for f in body["free"]] == [
        (local(wed, a).isoformat().replace("+00:00", "Z"), local(wed, b).isoformat().replace("+00:00", "Z"))
        for a, b in (("08:00", "10:00"), ("12:00", "17:00"), ("19:00", "22:00"))
    ]
    assert [t["status"] for t in body["taken"]] == ["requested"]
    assert any(c["reason"] == "uradne ure KS" for c in body["closed"])
    too_long = await client.get(
        "/api/v1/rooms/ks-primskovo/availability",
        params={"from": local(wed, "00:00").isoformat(), "to": local(wed + timedelta(days=90), "00:00").isoformat()},
    )
    assert too_long.status_code == 422
    assert (await client.get("/api/v1/rooms/none/availability")).status_code == 404


async def test_expiry_frees_the_slot_and_announces_it(booking: BookingApp):
    ctx = booking.ctx
    await booking.set_room(request_ttl_hours=1)
    thu = future_day(THURSDAY)
    created = (await booking.client.post("/api/v1/bookings", json=booking_body(thu))).json()
    assert await decisions.expire_due(ctx.db, ctx.settings) == 0
    later = utcnow() + timedelta(hours=2)
    assert await decisions.expire_due(ctx.db, ctx.settings, now=later) == 1
    assert await decisions.expire_due(ctx.db, ctx.settings, now=later) == 0
    assert (await booking.client.get(f"/api/v1/bookings/{created['id']}")).json()["status"] == "expired"
    verb, data = (await booking.messages())[-1]
    assert verb == "expired" and data.booking_id == created["id"]
    approve = await booking.client.post(f"/api/v1/bookings/{created['id']}/approve", headers=ADMIN)
    assert approve.status_code == 409
    assert (await booking.client.post("/api/v1/bookings", json=booking_body(thu))).status_code == 201


async def test_figures_csv_and_calendar(booking_sqlite: BookingApp):
    client = booking_sqlite.client
    thu = future_day(THURSDAY)
    for body in (
        booking_body(thu, "15:00", "19:00", category="education"),
        booking_body(thu, "19:00", "21:00", group_kind="individual"),
    ):
        assert (await client.post("/api/v1/bookings", json=body, headers=ADMIN)).json()["status"] == "confirmed"
    # the KS moves its office hours onto Thursday 17–19 afterwards
    await booking_sqlite.set_room(office_hours={"thu": [["17:00", "19:00"]]})
    rows = (await client.get("/api/v1/figures", params={"period": "week"}, headers=ADMIN)).json()
    assert len(rows) == 1
    row = rows[0]
    # 15–19 now overlaps the office hours 17–19 by 2 hours
    assert (row["bookings"], row["hours"], row["hours_outside_office_hours"]) == (2, 6.0, 4.0)
    assert row["by_category"] == {"culture": 1, "education": 1}
    assert row["by_group_kind"] == {"association": 1, "individual": 1}
    assert (await client.get("/api/v1/figures")).status_code == 401
    csv_response = await client.get("/api/v1/figures.csv", params={"period": "month"}, headers=ADMIN)
    assert csv_response.status_code == 200
    raw = csv_response.content
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("KS;prostor;obdobje;začetek obdobja;število rezervacij;ur skupaj;ur izven uradnih ur")
    assert lines[1].split(";")[:7] == [
        "primskovo",
        "Dom KS Primskovo",
        "mesec",
        row["period_start"][:8] + "01",
        "2",
        "6,00",
        "4,00",
    ]

    from icalendar import Calendar

    ics = await client.get("/rooms/ks-primskovo/calendar.ics")
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    cal = Calendar.from_ical(ics.content)
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Ljubljana"]
    events = cal.walk("VEVENT")
    assert len(events) == 2 and all("Mojca" not in e.to_ical().decode() for e in events)
    assert events[0].decoded("DTSTART").tzinfo is not None


async def test_asyncapi_documents_the_booking_messages(booking_sqlite: BookingApp):
    doc = (await booking_sqlite.client.get("/asyncapi.json")).json()
    text = json.dumps(doc)
    for verb in ("requested", "confirmed", "rejected", "cancelled", "expired"):
        assert f"booking.booking.{verb}" in text
    assert "PERSONAL DATA" in text or "Personal data" in text


async def test_exclusion_constraint_is_the_last_line_on_postgresql(pg_database_url, tmp_path, monkeypatch):
    """Even if the check in the application were wrong, PostgreSQL refuses the overlap, and
    the refusal is the same 409 `taken`."""
    async for app in _booking_app(tmp_path, pg_database_url):
        thu = future_day(THURSDAY)
        assert (await app.client.post("/api/v1/bookings", json=booking_body(thu))).status_code == 201

        async def nothing_held(*_a: Any, **_k: Any) -> list[Booking]:
            return []

        monkeypatch.setattr(bookings, "_holding", nothing_held)
        response = await app.client.post("/api/v1/bookings", json=booking_body(thu, "19:00", "21:00"))
        assert response.status_code == 409
        assert response.json()["rules"] == ["taken"]
        touching = await app.client.post("/api/v1/bookings", json=booking_body(thu, "20:00", "21:00"))
        assert touching.status_code == 201


async def test_rooms_import_from_a_slovenian_spreadsheet(booking: BookingApp):
    """Semicolons, a BOM, Slovenian letters; a bad row is reported by line number and the
    good rows still load; an existing room is updated, a new one bookable at once."""

    csv_file = (
        "\ufeffid;ks;name;address;capacity;accessibility;equipment\n"
        "ks-zabnica;zabnica;Dom KS Žabnica (prenovljen);Žabnica 24;45;Dostop za invalidske vozičke;Projektor\n"
        "ks-zabnica-mala;zabnica;Mala sejna soba;Žabnica 24;12;;Miza za 12\n"
        "napacna;atlantida;Soba;Nekje 1;10;;\n"
        "ks-center-2;center;Sejna soba;Glavni trg 1;nič;;\n"
    ).encode()
    assert (await booking.client.post("/api/v1/rooms/import", content=csv_file)).status_code == 401
    answer = await booking.client.post(
        "/api/v1/rooms/import", content=csv_file, headers={**ADMIN, "Content-Type": "text/csv"}
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["created"], result["updated"]) == (1, 1)
    assert result["errors"][0].startswith("vrstica 4: ks: neznana KS 'atlantida'")
    assert result["errors"][1].startswith("vrstica 5: capacity")
    rooms = {r["id"]: r for r in (await booking.client.get("/api/v1/rooms?ks=zabnica")).json()}
    assert rooms["ks-zabnica"]["name"] == "Dom KS Žabnica (prenovljen)" and rooms["ks-zabnica"]["capacity"] == 45
    assert rooms["ks-zabnica-mala"]["capacity"] == 12

    day = future_day(THURSDAY)
    made = await booking.client.post("/api/v1/bookings", json=booking_body(day, room_id="ks-zabnica-mala", attendees=8))
    assert made.status_code == 201, made.text

    ks_staff = (await booking.ctx.accounts.create_token(role="ks-staff", ks=["center"]))[1]
    other = await booking.client.post(
        "/api/v1/rooms/import", content=csv_file, headers={"Authorization": f"Bearer {ks_staff}"}
    )
    refused = other.json()
    assert (refused["created"], refused["updated"]) == (0, 0)
    assert sum("nimate pravic za KS zabnica" in e for e in refused["errors"]) == 2
