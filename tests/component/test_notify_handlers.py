"""notify's handlers with FastStream's in-memory TestRabbitBroker and a real SQLite file:
message in -> notice, deliveries and noticeboard rows out. (Acks, redelivery and dead
letters need the real broker: tests/integration.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from faststream.rabbit import TestRabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from sqlmodel import func, select

from services.notify import notices, privacy, subscribers
from services.notify.app import build
from services.notify.models import Delivery, Notice
from shared import clock
from shared.bus import DEAD_QUEUE, DLX, EXCHANGE, REJECTED_QUEUE
from shared.contracts import EVENT_PUBLISHED, NOTICE_REQUESTED
from shared.migrations import upgrade_async
from shared.privacy import Person
from shared.settings import Settings

# These tests check wording that names days and dates ("četrtek, 3. decembra 2026"), so
# they fix the platform clock at one moment before the dates they publish: Monday
# 30 November 2026, 10.00 in Kranj. Nothing here reads the real date; `make test-future`
# runs them a year ahead to prove it.
FROZEN_AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock():
    with clock.frozen(FROZEN_AT) as advance:
        yield advance


# Who sent a message (its AMQP user_id) decides what it may do (shared/senders.py): the
# platform's facts come from the broker user the services share locally (`guest`); urgent
# and city-wide notices from a registered outside system. TestRabbitBroker passes user_id
# through as given (the real broker's check of it: tests/security/test_bus_senders.py).
PLATFORM_USER = "guest"
UTILITY = "komunala-kranj"


@pytest.fixture
async def notify(tmp_path):
    settings = Settings(
        senders=json.dumps({UTILITY: {"urgent": True, "city_wide": True}}),
        data_dir=tmp_path,
        quiet_hours="off",
        secret_key="component-test-key",
        notify_database_url=f"sqlite+aiosqlite:///{tmp_path}/notify.db",
    )
    await upgrade_async("notify", settings.database_url("notify"))
    ctx = build(settings)
    yield ctx
    await ctx.db.dispose()


async def _subscribe(ctx, **kw):
    data = {"ks": ["primskovo"], "topics": ["general", "events"], **kw}
    return await subscribers.add_subscriber(ctx.db, subscribers.SubscriberIn(**data))


async def _count(ctx, model, *where):
    async with ctx.db.session() as s:
        return (await s.exec(select(func.count()).select_from(model).where(*where))).one()


def _notice(**data):
    body = {"title": "Izklop vode", "body": "Jutri ne bo vode.", "ks": ["primskovo"], **data}
    return NOTICE_REQUESTED.envelope(body, source="/komunala-kranj/outages")


async def test_notice_fans_out_to_each_followers_channels(notify):
    await _subscribe(notify, email="ana@example.si", phone="+38640123456")
    await _subscribe(notify, email="bojan@example.si")  # email only
    await _subscribe(notify, email="cilka@example.si", ks=["planina"])  # another KS
    await _subscribe(notify, phone="+38641000111", topics=["events"])  # another topic

    async with TestRabbitBroker(notify.bus.broker) as br:
        await br.publish(json.dumps(_notice()).encode(), exchange=EXCHANGE, routing_key="notify.notice.requested")

    async with notify.db.session() as s:
        rows = (await s.exec(select(Delivery.channel, Delivery.address).order_by(Delivery.address))).all()
    assert sorted(rows) == [("email", "ana@example.si"), ("email", "bojan@example.si"), ("sms", "+38640123456")]
    board = await notices.noticeboard(notify.db, "primskovo")
    assert [n.title for n in board] == ["Izklop vode"]
    assert await notices.noticeboard(notify.db, "planina") == []


async def test_city_wide_notice_reaches_every_ks_and_shows_everywhere(notify):
    await _subscribe(notify, email="ana@example.si")
    await _subscribe(notify, email="cilka@example.si", ks=["planina"])
    async with TestRabbitBroker(notify.bus.broker) as br:
        await br.publish(
            json.dumps(_notice(ks=["*"])).encode(),
            exchange=EXCHANGE,
            routing_key="notify.notice.requested",
            user_id=UTILITY,  # city-wide needs a registered sender with that right
        )
    assert await _count(notify, Delivery) == 2
    assert [n.title for n in await notices.noticeboard(notify.db, "zabnica")] == ["Izklop vode"]


async def test_same_message_twice_has_the_effect_of_one(notify):
    await _subscribe(notify, email="ana@example.si", phone="+38640123456")
    body = json.dumps(_notice()).encode()
    async with TestRabbitBroker(notify.bus.broker) as br:
        await br.publish(body, exchange=EXCHANGE, routing_key="notify.notice.requested")
        await br.publish(body, exchange=EXCHANGE, routing_key="notify.notice.requested")
    assert await _count(notify, Notice) == 1
    assert await _count(notify, Delivery) == 2


async def test_noticeboard_only_notice_creates_no_personal_deliveries(notify):
    await _subscribe(notify, email="ana@example.si")
    async with TestRabbitBroker(notify.bus.broker) as br:
        await br.publish(
            json.dumps(_notice(channels=["noticeboard"])).encode(),
            exchange=EXCHANGE,
            routing_key="notify.notice.requested",
        )
    assert await _count(notify, Delivery) == 0
    assert len(await notices.noticeboard(notify.db, "primskovo")) == 1


async def test_unknown_ks_is_dead_lettered_with_a_reason_and_not_recorded(notify):
    await _subscribe(notify, email="ana@example.si")
    dead, rejected = [], []

    # The brokers run without FastDepends (shared.bus.make_broker): a handler gets the
    # decoded body, and the message is in FastStream's context.
    context = notify.bus.broker.context

    @notify.bus.broker.subscriber(DEAD_QUEUE, DLX)
    async def on_dead(_body: object) -> None:
        message: RabbitMessage = context.get_local("message")
        dead.append(message.raw_message)

    @notify.bus.broker.subscriber(REJECTED_QUEUE, EXCHANGE)
    async def on_rejected(_body: object) -> None:
        message: RabbitMessage = context.get_local("message")
        rejected.append(json.loads(message.body))

    bad = _notice()
    bad["data"]["ks"] = ["atlantis"]
    good = _notice(title="Naslednje obvestilo")
    async with TestRabbitBroker(notify.bus.broker) as br:
        await br.publish(json.dumps(bad).encode(), exchange=EXCHANGE, routing_key="notify.notice.requested")
        await br.publish(json.dumps(good).encode(), exchange=EXCHANGE, routing_key="notify.notice.requested")

    assert [n.title for n in await notices.noticeboard(notify.db, "primskovo")] == ["Naslednje obvestilo"]
    [parked] = dead
    assert "unknown KS 'atlantis'" in parked.headers["x-kranj-reason"]
    assert parked.headers["x-kranj-queue"] == "notify.on-notice-requested"
    [event] = rejected
    assert event["type"] == "si.kranj.bus.message.rejected.v1"
    assert event["data"]["id"] == bad["id"] and event["data"]["source"] == bad["source"]
    assert "atlantis" in event["data"]["reason"]


async def test_quiet_hours_hold_normal_notices_but_not_urgent_ones(notify, frozen_clock):
    frozen_clock(FROZEN_AT.replace(day=1, month=12, hour=22, minute=30) - FROZEN_AT)  # 23.30 in Kranj
    notify.settings.quiet_hours = "21:00-07:00"
    await _subscribe(notify, email="ana@example.si")
    async with TestRabbitBroker(notify.bus.broker) as br:
        await br.publish(json.dumps(_notice()).encode(), exchange=EXCHANGE, routing_key="notify.notice.requested")
        await br.publish(
            json.dumps(_notice(urgency="urgent", title="Nujno")).encode(),
            exchange=EXCHANGE,
            routing_key="notify.notice.requested",
            user_id=UTILITY,  # urgent needs a registered sender with that right
        )
    async with notify.db.session() as s:
        rows = {st: at for st, at in (await s.exec(select(Delivery.status, Delivery.next_attempt_at))).all()}
    assert set(rows) == {"held", "queued"}
    assert rows["held"] == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 07.00 in Kranj


async def test_event_published_is_announced_with_date_and_venue(notify):
    await _subscribe(notify, email="ana@example.si")
    event = EVENT_PUBLISHED.envelope(
        {
            "event_id": "ev-1",
            "ks": "primskovo",
            "title": "Delavnica",
            "description": "Kaj potrebujemo?",
            "starts_at": "2026-12-03T18:00:00+01:00",
            "ends_at": "2026-12-03T20:00:00+01:00",
            "venue": "Dom KS Primskovo",
            "url": "http://127.0.0.1:8001/events/ev-1",
        },
        source="/kranj/events",
    )
    async with TestRabbitBroker(notify.bus.broker) as br:
        await br.publish(json.dumps(event).encode(), exchange=EXCHANGE, routing_key="events.event.published", user_id=PLATFORM_USER)
    [notice] = await notices.noticeboard(notify.db, "primskovo")
    assert notice.kind == "event" and notice.topic == "events"
    email = notify.extra["renderer"].email(notice, "sl", "http://x/unsubscribe/t")
    assert "četrtek, 3. decembra 2026, 18.00–20.00" in email.text
    assert "Dom KS Primskovo" in email.html
    assert email.subject == "Vabilo: Delavnica – KS Primskovo"


def _booking(status: str, **extra) -> dict:
    data = {
        "booking_id": "b-1",
        "room_id": "ks-primskovo",
        "room_name": "Dom KS Primskovo",
        "room_address": "Jezerska cesta 41",
        "ks": "primskovo",
        "starts_at": "2026-12-10T17:00:00Z",
        "ends_at": "2026-12-10T19:00:00Z",
        "purpose": "Vaje pevskega zbora",
        "attendees": 12,
        "status": status,
        "requester": {"name": "Marija Kranjc", "email": "marija@example.si", "phone": "+38641555666", "language": "sl"},
        "cancel_url": "http://127.0.0.1:8002/bookings/b-1/cancel?t=x",
        **extra,
    }
    from shared.contracts.booking import BOOKING_MESSAGE_TYPES

    return BOOKING_MESSAGE_TYPES[status].envelope(data, source="/kranj/booking")


async def test_booking_confirmation_is_a_personal_message_to_the_requester(notify):
    await _subscribe(notify, email="ana@example.si", topics=["rooms"])  # followers get nothing
    async with TestRabbitBroker(notify.bus.broker) as br:
        # Made by KS staff (`staff_vouched`): told in full (services.notify.relay).
        for status, extra in (("requested", {}), ("confirmed", {"access_instructions": "Ključ pri hišniku."})):
            extra = {**extra, "staff_vouched": True}
            await br.publish(
                json.dumps(_booking(status, **extra)).encode(),
                exchange=EXCHANGE,
                routing_key=f"booking.booking.{status}", user_id=PLATFORM_USER,
            )
    async with notify.db.session() as s:
        rows = (await s.exec(select(Delivery.channel, Delivery.address, Delivery.subscriber_id))).all()
        notices = (await s.exec(select(Notice).order_by(Notice.created_at))).all()
    assert sorted(rows) == [
        ("email", "marija@example.si", None),
        ("email", "marija@example.si", None),
        ("sms", "+38641555666", None),
        ("sms", "+38641555666", None),
    ]
    requested, confirmed = notices
    assert requested.title == "Prejeli smo vašo prošnjo za prostor Dom KS Primskovo"
    assert "12 udeležencev" in requested.body
    assert confirmed.title == "Potrjeno: Dom KS Primskovo, četrtek, 10. decembra 2026"
    assert "četrtek, 10. decembra 2026, 18.00–20.00" in confirmed.body
    assert "Ključ pri hišniku." in confirmed.body
    assert not confirmed.on_noticeboard and confirmed.kind == "personal"
    email = notify.extra["renderer"].email(confirmed, "sl", None)
    assert "Odjava" not in email.text and "osebno sporočilo" in email.text


async def test_survey_invitation_volunteer_and_closing(notify):
    from shared.contracts.surveys import RESPONDENT_VOLUNTEERED, SURVEY_CLOSED, SURVEY_OPENED

    await _subscribe(notify, email="ana@example.si", topics=["surveys"])
    opened = SURVEY_OPENED.envelope(
        {
            "survey_id": "s-1",
            "ks": "primskovo",
            "title": "Potrebe po skupnostnem prostoru",
            "url": "http://127.0.0.1:8003/surveys/s-1",
            "print_url": "http://127.0.0.1:8003/surveys/s-1/print",
            "opens_at": "2026-11-24T08:00:00Z",
            "question_count": 5,
        },
        source="/kranj/surveys",
    )
    volunteer = RESPONDENT_VOLUNTEERED.envelope(
        {
            "survey_id": "s-1",
            "survey_title": "Potrebe po skupnostnem prostoru",
            "ks": "primskovo",
            "email": "mladi@example.si",
            "channels": ["email"],
            "consent_text": "Želim sodelovati in soglašam, da me KS obvešča.",
            "consent_at": "2026-11-24T09:00:00Z",
            "consent_source": "web",
        },
        source="/kranj/surveys",
    )
    closed = SURVEY_CLOSED.envelope(
        {
            "survey_id": "s-1",
            "ks": "primskovo",
            "title": "Potrebe po skupnostnem prostoru",
            "url": "http://127.0.0.1:8003/surveys/s-1",
            "closed_at": "2026-11-24T10:00:00Z",
            "response_count": 3,
        },
        source="/kranj/surveys",
    )
    async with TestRabbitBroker(notify.bus.broker) as br:
        await br.publish(json.dumps(opened).encode(), exchange=EXCHANGE, routing_key="surveys.survey.opened", user_id=PLATFORM_USER)
        [notice] = await notices.noticeboard(notify.db, "primskovo")
        assert notice.title == "Anketa: Potrebe po skupnostnem prostoru"
        assert "(5 vprašanj)" in notice.body
        assert await _count(notify, Delivery) == 1  # ana follows topic surveys
        await br.publish(
            json.dumps(volunteer).encode(), exchange=EXCHANGE, routing_key="surveys.respondent.volunteered", user_id=PLATFORM_USER
        )
        await br.publish(json.dumps(closed).encode(), exchange=EXCHANGE, routing_key="surveys.survey.closed", user_id=PLATFORM_USER)
    assert await notices.noticeboard(notify.db, "primskovo") == []  # closed: off the board
    exported = await privacy.export(notify.db, Person.of(email="mladi@example.si"))
    [sub] = exported["subscriptions"]
    assert sub["ks"] == ["primskovo"] and sub["topics"] == ["surveys"]
    # A survey answer starts a confirmation (issue 17): pending until the link is followed.
    assert sub["consent_source"] == "survey-web" and sub["status"] == "pending"
    assert sub["consent_text"] == "Želim sodelovati in soglašam, da me KS obvešča."
    [email_consent] = sub["consents"]
    assert email_consent["channel"] == "email" and email_consent["status"] == "pending"
    assert email_consent["how"] == "survey-web"
    [confirm] = [d for d in exported["deliveries"] if d["channel"] == "email"]
    assert confirm["notice_title"] == "Potrdite prijavo na obvestila KS"


def _registration(kind: str, **extra) -> dict:
    from shared.contracts.events import REGISTRATION_MESSAGE_TYPES

    data = {
        "registration_id": "r-1",
        "event_id": "ev-9",
        "ks": "huje",
        "title": "Medgeneracijsko druženje",
        "starts_at": "2026-12-15T16:00:00Z",
        "ends_at": "2026-12-15T18:00:00Z",
        "venue": "Medgeneracijski center Kranj, Cesta talcev 7",
        "url": "http://127.0.0.1:8001/events/ev-9",
        "cancel_url": "http://127.0.0.1:8001/registrations/r-1/cancel?token=x",
        "status": "confirmed",
        "channel": "web",
        "registrant": {"name": "Franc Novak", "phone": "+38640111222", "language": "sl"},
        **extra,
    }
    return REGISTRATION_MESSAGE_TYPES[kind].envelope(data, source="/kranj/events")


async def test_registrants_are_told_one_by_one(notify):
    # The registrant's phone is a subscriber's, confirmed: told in full (services.notify.relay).
    await _subscribe(notify, phone="+38640111222", topics=["general"])
    published = EVENT_PUBLISHED.envelope(
        {
            "event_id": "ev-9",
            "ks": "huje",
            "title": "Medgeneracijsko druženje",
            "starts_at": "2026-12-15T16:00:00Z",
            "ends_at": "2026-12-15T18:00:00Z",
            "venue": "MCK",
            "url": "http://127.0.0.1:8001/events/ev-9",
        },
        source="/kranj/events",
    )
    async with TestRabbitBroker(notify.bus.broker) as br:
        await br.publish(json.dumps(published).encode(), exchange=EXCHANGE, routing_key="events.event.published", user_id=PLATFORM_USER)
        assert len(await notices.noticeboard(notify.db, "huje")) == 1
        await br.publish(
            json.dumps(_registration("waitlisted", status="waitlisted", waitlist_position=3)).encode(),
            exchange=EXCHANGE,
            routing_key="events.registration.waitlisted", user_id=PLATFORM_USER,
        )
        await br.publish(
            json.dumps(_registration("promoted")).encode(),
            exchange=EXCHANGE,
            routing_key="events.registration.promoted", user_id=PLATFORM_USER,
        )
        await br.publish(
            json.dumps(_registration("event-changed", change="cancelled", reason="Bolezen voditeljice.")).encode(),
            exchange=EXCHANGE,
            routing_key="events.registration.event-changed", user_id=PLATFORM_USER,
        )

    async with notify.db.session() as s:
        personal = (await s.exec(select(Notice).where(Notice.kind == "personal").order_by(Notice.created_at))).all()
        sms = (await s.exec(select(Delivery.address).where(Delivery.channel == "sms"))).all()
    assert [n.title for n in personal] == [
        "Na čakalni listi: Medgeneracijsko druženje",
        "Sprostilo se je mesto: Medgeneracijsko druženje",
        "Dogodek odpovedan: Medgeneracijsko druženje",
    ]
    assert "ste 3. na vrsti" in personal[0].body
    assert "torek, 15. decembra 2026, 17.00–19.00" in personal[1].body
    assert "Razlog: Bolezen voditeljice." in personal[2].body and "odjavite" not in personal[2].body
    assert sms == ["+38640111222"] * 3
