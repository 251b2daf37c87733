"""Registration against real databases (SQLite and PostgreSQL): the rush never confirms more
than the seats, a cancellation promotes the first on the waitlist in the same transaction
and writes its message, reminders are written once even when two replicas race."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select
from support.settings import make_settings

from services.events import privacy, registrations, reminders, repository, service
from services.events.messages import registration_id_from_token
from services.events.models import Registration
from services.events.schemas import EventIn, RegistrationIn
from shared.auth import Staff
from shared.contracts import parse_data, parse_envelope
from shared.contracts.events import EVENT_REMINDER_DUE, REGISTRATION_PROMOTED
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import OutboxMessage
from shared.privacy import Person

pytestmark = pytest.mark.integration
STAFF = Staff(subject="test", role="admin", ks=("*",))
NOWHERE = "amqp://guest:guest@127.0.0.1:9/"


@pytest.fixture
async def db(database_url: str):
    await upgrade_async("events", database_url)
    database = Database(database_url)
    yield database
    await database.dispose()


async def _event(db: Database, settings, *, capacity: int | None, starts_in: timedelta = timedelta(days=5)) -> str:
    starts = datetime.now(UTC).replace(microsecond=0) + starts_in
    event = await service.create_event(
        db,
        STAFF,
        EventIn(
            ks="primskovo",
            title="Delavnica: kaj potrebuje naša KS",
            starts_at=starts,
            ends_at=starts + timedelta(hours=2),
            venue="Dom KS Primskovo",
            capacity=capacity,
        ),
    )
    await service.publish_event(db, settings, event.id)
    return event.id


async def _outbox(db: Database, routing_key: str) -> list[OutboxMessage]:
    async with db.session() as session:
        rows = await session.exec(select(OutboxMessage).where(OutboxMessage.routing_key == routing_key))
        return list(rows.all())


async def test_rush_of_50_for_20_seats(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, NOWHERE)
    event_id = await _event(db, settings, capacity=20)

    async def one(i: int):
        data = RegistrationIn(name=f"Krajan {i}", email=f"krajan{i}@example.si")
        return await registrations.register(db, settings, event_id, data)

    results = await asyncio.gather(*(one(i) for i in range(50)))
    statuses = [reg.status for reg, _ in results]
    assert statuses.count("confirmed") == 20
    assert statuses.count("waitlisted") == 30
    positions = sorted(p for _, p in results if p is not None)
    assert positions == list(range(1, 31))  # every waitlist place given once

    async with db.session() as session:
        rows = list((await session.exec(select(Registration).where(Registration.event_id == event_id))).all())
    assert sum(r.status == "confirmed" for r in rows) == 20
    assert sorted(r.position for r in rows) == list(range(1, 51))
    assert len(await _outbox(db, "events.registration.confirmed")) == 20
    assert len(await _outbox(db, "events.registration.waitlisted")) == 30


async def test_cancel_promotes_the_first_waitlisted_and_tells_them(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, NOWHERE)
    event_id = await _event(db, settings, capacity=2)
    regs = []
    for i in range(4):
        reg, _ = await registrations.register(
            db, settings, event_id, RegistrationIn(name=f"Oseba {i}", phone=f"+3864012345{i}")
        )
        regs.append(reg)
    assert [r.status for r in regs] == ["confirmed", "confirmed", "waitlisted", "waitlisted"]

    # two cancellations of the same seat at once free one seat only
    outcomes = await asyncio.gather(
        registrations.cancel_registration(db, settings, regs[0].id, by="registrant"),
        registrations.cancel_registration(db, settings, regs[0].id, by="registrant"),
    )
    promoted = [p for _, ps in outcomes for p in ps]
    assert [p.id for p in promoted] == [regs[2].id]

    listed = await repository.list_registrations(db, event_id)
    assert [(r.status, pos) for r, pos in listed] == [
        ("cancelled", None),
        ("confirmed", None),
        ("confirmed", None),
        ("waitlisted", 1),
    ]
    [row] = await _outbox(db, "events.registration.promoted")
    notice = parse_data(parse_envelope(row.body.encode()), REGISTRATION_PROMOTED)
    assert notice.registration_id == regs[2].id
    assert notice.status == "confirmed"
    assert notice.registrant.name == "Oseba 2" and notice.registrant.phone == "+38640123452"
    assert notice.title == "Delavnica: kaj potrebuje naša KS" and notice.ks == "primskovo"
    assert notice.cancel_url is not None
    assert str(notice.cancel_url).endswith("/preklic")  # straight to the question, yes or back
    token = str(notice.cancel_url).rsplit("/", 2)[1]
    assert registration_id_from_token(settings, token) == regs[2].id
    assert len(await _outbox(db, "events.registration.cancelled")) == 1


async def test_reminder_written_once_across_two_racing_replicas(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, NOWHERE)
    soon = await _event(db, settings, capacity=10, starts_in=timedelta(hours=20))
    later = await _event(db, settings, capacity=10, starts_in=timedelta(days=3))
    for event_id in (soon, later):
        for i in range(5):
            await registrations.register(db, settings, event_id, RegistrationIn(name=f"R {i}", email=f"r{i}@example.si"))
    waiting, _ = await registrations.register(db, settings, soon, RegistrationIn(name="Čaka", email="caka@example.si"))
    await registrations.cancel_registration(db, settings, waiting.id, by="registrant")

    replica_a, replica_b = Database(db.url), Database(db.url)
    try:
        counts = await asyncio.gather(
            reminders.send_reminders(replica_a, settings), reminders.send_reminders(replica_b, settings)
        )
    finally:
        await replica_a.dispose()
        await replica_b.dispose()
    assert sum(counts) == 5
    assert await reminders.send_reminders(db, settings) == 0
    rows = await _outbox(db, "events.event.reminder-due")
    notices = [parse_data(parse_envelope(r.body.encode()), EVENT_REMINDER_DUE) for r in rows]
    assert len({n.registration_id for n in notices}) == 5
    assert {n.event_id for n in notices} == {soon}
    async with db.session() as session:
        unreminded = (
            await session.exec(
                select(Registration).where(
                    col(Registration.reminder_sent_at).is_(None), Registration.status == "confirmed"
                )
            )
        ).all()
    assert {r.event_id for r in unreminded} == {later}


async def test_erasure_keeps_the_seat_but_not_the_person(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, NOWHERE)
    event_id = await _event(db, settings, capacity=5)
    reg, _ = await registrations.register(
        db, settings, event_id, RegistrationIn(name="Tina Zupan", email="Tina.Zupan@example.si", phone="041 777 888")
    )
    # Found by the phone alone, the person is also the email and the name given with it.
    person = await privacy.find(db, Person.of(phone="+386 41 777 888"))
    assert person == Person.of(email="tina.zupan@example.si", phone="+38641777888", name="Tina Zupan")
    counts = await privacy.erase(db, person)
    assert counts == {"registrations": 1, "organisers": 0, "texts_masked": 0, "outbox_messages": 1}
    [(erased, _)] = await repository.list_registrations(db, event_id)
    assert (erased.id, erased.status, erased.email, erased.phone) == (reg.id, "confirmed", None, None)
    assert erased.name == "[izbrisano]"
    [row] = await _outbox(db, "events.registration.confirmed")
    # The phone in any spelling is gone (a bare "041" would also match a timestamp's microseconds).
    assert not any(spelling in row.body for spelling in ("041 777 888", "041777888", "+38641777888", "41777888"))
    assert "tina.zupan@example.si" not in row.body.lower() and "Tina Zupan" not in row.body
