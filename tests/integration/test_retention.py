"""Retention (issue 17): what the platform no longer needs goes by itself, on SQLite and
PostgreSQL. Each service's `privacy.retain(db, settings, now)` — the job its app runs every
hour — is called with a clock moved past the retention periods:

- events: registrations of an event that ended `KRANJ_RECORD_RETENTION_DAYS` ago keep their
  place and status but no name or contact, and the organiser's contact goes; a coming
  event's registrations are untouched; sent outbox rows that old go, unsent ones stay;
- booking: a booking that ended that long ago keeps its room and times for the figures, but
  no name or contact; a coming booking is untouched;
- every service: the inbox's record of a message handled `KRANJ_RECORD_RETENTION_DAYS` ago
  goes (it names no one, and kept for ever it only grows); a recent one stays;
- notify: a sign-up nobody confirmed is deleted after `KRANJ_UNCONFIRMED_SIGNUP_DAYS`, and so
  is a phone added but never confirmed; a recent sign-up, and one carried over by
  notify_0008 (never sent a confirmation), stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from security.helpers import at, day_ahead
from sqlmodel import select
from support.settings import make_settings

from services.booking import bookings as booking
from services.booking import privacy as booking_privacy
from services.booking.schemas import BookingIn
from services.events import privacy as events_privacy
from services.events import registrations as events_registrations
from services.events import repository as events_repository
from services.events import service as events
from services.events.schemas import EventIn, RegistrationIn
from services.notify import privacy as notify_privacy
from services.notify.models import ChannelConsent, Subscriber
from services.surveys import privacy as surveys_privacy
from shared.auth import Staff
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import OutboxMessage, ProcessedMessage, utcnow
from shared.privacy import ERASED

pytestmark = pytest.mark.integration
STAFF = Staff(subject="test", role="admin", ks=("*",))
NOWHERE = "amqp://guest:guest@127.0.0.1:9/"


async def _database(service: str, url: str) -> Database:
    await upgrade_async(service, url)
    return Database(url)


async def test_registrations_lose_the_person_after_the_retention_period(database_url, tmp_path):
    settings = make_settings(tmp_path, NOWHERE, record_retention_days=90)
    db = await _database("events", database_url)
    try:
        ids = {}
        for label, days in (("past", 5), ("coming", 200)):
            starts = utcnow().replace(microsecond=0) + timedelta(days=days)
            event = await events.create_event(
                db,
                STAFF,
                EventIn(ks="primskovo", title="Delavnica", starts_at=starts, ends_at=starts + timedelta(hours=2),
                               venue="Dom KS Primskovo", capacity=10, organiser="Društvo",
                               organiser_email="vodja@example.si"),
            )  # fmt: skip
            await events.publish_event(db, settings, event.id)
            reg, _ = await events_registrations.register(
                db, settings, event.id, RegistrationIn(name=f"Ana {label}", email=f"ana.{label}@example.si")
            )
            ids[label] = (event.id, reg.id)
        async with db.session() as session:  # the relay has sent all but one
            await session.exec(sa.update(OutboxMessage).values(sent_at=utcnow()))  # type: ignore[call-overload]
            unsent = (await session.exec(select(OutboxMessage))).first()
            assert unsent is not None
            unsent.sent_at = None
            session.add(unsent)
            await session.commit()

        assert await events_privacy.retain(db, settings) == {
            "registrations": 0, "organisers": 0, "outbox_messages": 0, "handled_messages": 0
        }  # fmt: skip
        later = utcnow() + timedelta(days=5 + 90 + 1)
        counts = await events_privacy.retain(db, settings, now=later)
        assert counts["registrations"] == 1 and counts["organisers"] == 1 and counts["outbox_messages"] >= 2
        assert await events_privacy.retain(db, settings, now=later) == {
            "registrations": 0, "organisers": 0, "outbox_messages": 0, "handled_messages": 0
        }  # fmt: skip
        for label, kept in (("past", False), ("coming", True)):
            event_id, reg_id = ids[label]
            reg, event, _ = await events_repository.get_registration(db, reg_id)
            if kept:
                assert (reg.name, reg.email, event.organiser_email) == (f"Ana {label}", f"ana.{label}@example.si",
                                                                         "vodja@example.si")  # fmt: skip
            else:
                assert (reg.name, reg.email, reg.phone, reg.status) == (ERASED, None, None, "confirmed")
                assert event.organiser_email is None and event.organiser == "Društvo"
        async with db.session() as session:
            left = (await session.exec(select(OutboxMessage))).all()
        assert [r.id for r in left] == [unsent.id]
    finally:
        await db.dispose()


async def test_bookings_keep_the_figures_but_not_the_person(database_url, tmp_path):
    settings = make_settings(tmp_path, NOWHERE, record_retention_days=90)
    db = await _database("booking", database_url)
    try:
        made = {}
        for label, days in (("past", 10), ("coming", 150)):
            day = day_ahead(days, weekday=3)
            created = await booking.request_booking(
                db, settings, BookingIn(room_id="ks-bitnje", starts_at=at(day, "10:00"),
                                                ends_at=at(day, "12:00"), purpose="Sestanek društva",
                                                name=f"Ana {label}", email=f"ana.{label}@example.si",
                                                phone="041 777 888", attendees=5), staff=STAFF,
            )  # fmt: skip
            made[label] = created.bookings[0].id
        counts = await booking_privacy.retain(db, settings, now=utcnow() + timedelta(days=17 + 90 + 1))
        assert counts["bookings"] == 1
        past, _ = await booking.get_booking(db, made["past"])
        coming, _ = await booking.get_booking(db, made["coming"])
        assert (past.name, past.email, past.phone) == (ERASED, None, None)
        assert (past.room_id, past.purpose, past.attendees) == ("ks-bitnje", "Sestanek društva", 5)
        assert (coming.name, coming.email) == ("Ana coming", "ana.coming@example.si")
    finally:
        await db.dispose()


async def test_unconfirmed_sign_ups_and_contacts_go_after_a_few_days(database_url, tmp_path):
    settings = make_settings(tmp_path, NOWHERE, unconfirmed_signup_days=7)
    db = await _database("notify", database_url)
    now = utcnow()
    old = now - timedelta(days=8)
    try:
        async with db.session() as session:
            rows = {
                "stale": Subscriber(email="stale@example.si", channels=["email"], status="pending", created_at=old),
                "fresh": Subscriber(email="fresh@example.si", channels=["email"], status="pending", created_at=now),
                "carried": Subscriber(email="carried@example.si", channels=["email"], status="pending", created_at=old),
                "half": Subscriber(email="half@example.si", phone="+38641777888", channels=["email", "sms"],
                                   status="active", created_at=old),
            }  # fmt: skip
            for sub in rows.values():
                sub.consent_source, sub.consent_text = "web", "Soglašam."
                session.add(sub)
            await session.flush()

            def consent(sub: Subscriber, channel: str, status: str, proof: str | None = None, at=old) -> ChannelConsent:
                return ChannelConsent(subscriber_id=sub.id, channel=channel, status=status, how="web", proof=proof,
                                      wording_version="v", wording="Soglašam.", requested_at=at)  # fmt: skip

            session.add(consent(rows["stale"], "email", "pending"))
            session.add(consent(rows["fresh"], "email", "pending", at=now))
            session.add(consent(rows["carried"], "email", "pending", proof=notify_privacy.CARRIED_OVER))
            session.add(consent(rows["half"], "email", "active"))
            session.add(consent(rows["half"], "sms", "pending"))
            await session.commit()
            ids = {k: v.id for k, v in rows.items()}

        counts = await notify_privacy.retain(db, settings, now=now)
        assert counts == {
            "unconfirmed_signups": 1, "unconfirmed_contacts": 1, "outbox_messages": 0, "handled_messages": 0,
            "export_requests": 0,
        }  # fmt: skip
        async with db.session() as session:
            left = {s.id: s for s in (await session.exec(select(Subscriber))).all()}
            consents = {(c.subscriber_id, c.channel) for c in (await session.exec(select(ChannelConsent))).all()}
        assert set(left) == {ids["fresh"], ids["carried"], ids["half"]}
        half = left[ids["half"]]
        assert (half.email, half.phone, half.channels) == ("half@example.si", None, ["email"])
        assert (ids["half"], "sms") not in consents and (ids["half"], "email") in consents
        assert (ids["stale"], "email") not in consents
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    "service, privacy",
    [("events", events_privacy), ("booking", booking_privacy), ("surveys", surveys_privacy), ("notify", notify_privacy)],
)
async def test_the_inbox_forgets_messages_handled_long_ago(database_url, tmp_path, service, privacy):
    settings = make_settings(tmp_path, NOWHERE, record_retention_days=90)
    db = await _database(service, database_url)
    now = utcnow()
    try:
        async with db.session() as session:
            for message_id, days in (("old", 91), ("recent", 89)):
                session.add(
                    ProcessedMessage(consumer=f"{service}.on-x", source="/komunala", message_id=message_id,
                                     type="si.kranj.test.v1", processed_at=now - timedelta(days=days))
                )  # fmt: skip
            await session.commit()
        counts = await privacy.retain(db, settings, now=now)
        assert counts["handled_messages"] == 1
        async with db.session() as session:
            left = [m.message_id for m in (await session.exec(select(ProcessedMessage))).all()]
        assert left == ["recent"]
        assert (await privacy.retain(db, settings, now=now))["handled_messages"] == 0
    finally:
        await db.dispose()
