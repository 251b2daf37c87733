"""`kranj subscriber erase` across every service: notify's subscription, booking's
requests and the outbox copies of messages that named the resident (booking, surveys)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from conftest import TEST_SECRET_KEY, make_settings
from sqlmodel import select
from typer.testing import CliRunner

from services.booking import service as booking
from shared.bus import add_to_outbox
from shared.cli import app as cli
from shared.contracts.surveys import RESPONDENT_VOLUNTEERED
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import OutboxMessage, utcnow

pytestmark = pytest.mark.integration
SERVICES = ("notify", "booking", "surveys", "events")


async def _given_a_booking_and_a_volunteer(settings) -> None:
    for name in SERVICES:
        await upgrade_async(name, settings.database_url(name))
    booking_db = Database(settings.database_url("booking"))
    surveys_db = Database(settings.database_url("surveys"))
    try:
        start = (utcnow() + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
        request = booking.BookingIn(
            room_id="ks-bitnje",
            starts_at=start,
            ends_at=start + timedelta(hours=2),
            purpose="Sestanek društva",
            name="Tina Zupan",
            email="tina.zupan@example.si",
            phone="041 777 888",
            attendees=5,
        )
        await booking.request_booking(booking_db, settings, request, staff=None)
        async with surveys_db.session() as session:
            add_to_outbox(
                session,
                RESPONDENT_VOLUNTEERED,
                {
                    "survey_id": "s-1",
                    "survey_title": "Potrebe",
                    "ks": "bitnje",
                    "name": "Tina Zupan",
                    "email": "tina.zupan@example.si",
                    "channels": ["email"],
                    "consent_text": "Soglašam.",
                    "consent_at": utcnow().isoformat(),
                    "consent_source": "web",
                },
                source="/kranj/surveys",
            )
            await session.commit()
    finally:
        await booking_db.dispose()
        await surveys_db.dispose()


async def _nothing_left(settings) -> None:
    for name in ("booking", "surveys"):
        db = Database(settings.database_url(name))
        try:
            async with db.session() as session:
                bodies = [row.body for row in (await session.exec(select(OutboxMessage))).all()]
                if name == "booking":
                    [row] = (await session.exec(select(booking.Booking))).all()
                    assert (row.name, row.email, row.phone) == ("[izbrisano]", None, None)
        finally:
            await db.dispose()
        assert bodies, "the outbox rows stay (the record), without the person"
        for body in bodies:
            assert "tina.zupan@example.si" not in body and "+38641777888" not in body
            json.loads(body)  # still valid JSON


def test_subscriber_erase_reaches_booking_and_surveys(tmp_path, amqp_url, monkeypatch):
    settings = make_settings(tmp_path, amqp_url)
    asyncio.run(_given_a_booking_and_a_volunteer(settings))
    monkeypatch.setenv("KRANJ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KRANJ_SECRET_KEY", TEST_SECRET_KEY)
    for name in SERVICES:
        monkeypatch.setenv(f"KRANJ_{name.upper()}_DATABASE_URL", settings.database_url(name))

    result = CliRunner().invoke(cli, ["subscriber", "erase", "--email", "tina.zupan@example.si", "--phone", "041 777 888"])
    assert result.exit_code == 0, result.output
    assert "booking: 1 bookings" in result.output
    assert "surveys: 1 outbox_messages" in result.output

    asyncio.run(_nothing_left(settings))
    for path in tmp_path.glob("*.db*"):
        assert b"tina.zupan@example.si" not in path.read_bytes(), path.name
