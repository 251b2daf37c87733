"""No double booking, ever: twenty people press the button in the same second.

The service functions run concurrently (asyncio.gather, each with its own connection)
against real databases: SQLite (BEGIN IMMEDIATE serialises check-then-insert) and
PostgreSQL (the room row lock, and the exclusion constraint behind it)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from booking_helpers import future_day, local
from sqlmodel import col, func, select
from support.settings import make_settings

from services.booking.bookings import request_booking
from services.booking.errors import RuleBroken
from services.booking.models import Booking
from services.booking.schemas import BookingIn
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import OutboxMessage

pytestmark = pytest.mark.integration

THURSDAY = 3


def request(day, start: str, end: str, n: int) -> BookingIn:
    return BookingIn(
        room_id="ks-primskovo",
        starts_at=local(day, start),
        ends_at=local(day, end),
        purpose=f"Srečanje {n}",
        name=f"Krajan {n}",
        email=f"krajan{n}@example.si",
        attendees=10,
    )


async def test_twenty_concurrent_overlapping_requests_one_wins(database_url, tmp_path):
    await upgrade_async("booking", database_url)
    settings = make_settings(tmp_path, "amqp://guest:guest@127.0.0.1:9/")
    db = Database(database_url)
    try:
        day = future_day(THURSDAY)
        # twenty different slots that all overlap each other
        starts = ["17:00", "17:15", "17:30", "17:45", "18:00"]  # all share 18.00–19.00
        bodies = [
            request(day, starts[n % 5], f"{int(starts[n % 5][:2]) + 2}:{starts[n % 5][3:]}", n) for n in range(20)
        ]

        async def attempt(body: BookingIn) -> str:
            try:
                made = await request_booking(db, settings, body)
            except RuleBroken as exc:
                assert [v.rule for v in exc.violations] == ["taken"], exc.detail
                return "refused"
            return made.bookings[0].id

        results = await asyncio.gather(*(attempt(b) for b in bodies))
        winners = [r for r in results if r != "refused"]
        assert len(winners) == 1, results
        async with db.session() as session:
            holding = (
                await session.exec(select(Booking).where(col(Booking.status).in_(["requested", "confirmed"])))
            ).all()
            outbox = (await session.exec(select(func.count()).select_from(OutboxMessage))).one()
        assert [b.id for b in holding] == winners
        assert outbox == 1  # one message, for the one booking that exists

        # touching requests on both sides still fit, concurrently too
        winner = holding[0]
        before = request(day, "08:00", "09:00", 98)
        before = before.model_copy(
            update={"starts_at": winner.starts_at - timedelta(hours=2), "ends_at": winner.starts_at}
        )
        after = before.model_copy(update={"starts_at": winner.ends_at, "ends_at": winner.ends_at + timedelta(hours=1)})
        both = await asyncio.gather(attempt(before), attempt(after))
        assert "refused" not in both
    finally:
        await db.dispose()
