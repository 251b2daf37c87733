"""Use cases of notify's notices: recording a notice and fanning it out to one delivery row per
follower and channel (inside the consumer's transaction), personal messages, the noticeboard and
the delivery log."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import ALL_KS, CloudEvent, EventPublished, NoticeRequested
from shared.contracts.events import EventChanged
from shared.db import Database, defer_insert
from shared.models import new_id, table_of, utcnow
from shared.settings import Settings

from . import agenda, consent
from .domain import quiet_until
from .models import Delivery, Notice, NoticeDraft, NoticeKs, Subscriber, SubscriberKs, SubscriberTopic

PERSONAL_CHANNELS = ("email", "sms")
NOTICES: sa.Table = table_of(Notice)
NOTICE_KS: sa.Table = table_of(NoticeKs)
# A Core insert: the ORM's bulk insert of the same rows was 3 % of notify's CPU in a fan-out.
_INSERT_DELIVERIES = sa.insert(table_of(Delivery))


def _defer_notice(session: AsyncSession, notice: NoticeDraft) -> None:
    """The notice and its KS rows, written with the session's next statement or commit (a
    group commit writes all its noticeboard notices in one insert per table)."""
    defer_insert(session, NOTICES, notice.row())
    for ks in dict.fromkeys(notice.ks):
        defer_insert(session, NOTICE_KS, {"notice_id": notice.id, "ks": ks})


async def record_notice(
    session: AsyncSession, settings: Settings, notice: NoticeDraft, *, skip: Callable[[str], bool] | None = None
) -> int:
    """Store the notice and one delivery row per (subscriber, channel); returns how many.
    `skip(subscriber_id)` leaves out followers who need not hear it (e.g. already answered)."""
    _defer_notice(session, notice)
    now = utcnow()
    if notice.valid_until is not None and notice.valid_until <= now:
        return 0
    personal = [c for c in notice.channels if c in PERSONAL_CHANNELS]
    if not personal:
        return 0  # noticeboard only: written with the rest of the transaction (many at once)
    # The followers' query below writes the deferred notice first, before its deliveries.
    held_until = None if notice.urgency == "urgent" else quiet_until(now, settings.quiet_window)
    rows: list[dict[str, object]] = []
    total = 0
    async for subscriber_id, email, phone, language, channels, digest in _followers(session, notice.ks, notice.topic):
        if skip is not None and skip(subscriber_id):
            continue
        for channel in personal:
            address = _address(channel, channels, digest, notice.urgency, email, phone)
            if not address:
                continue
            rows.append(
                {
                    "id": new_id(),
                    "notice_id": notice.id,
                    "subscriber_id": subscriber_id,
                    "channel": channel,
                    "address": address,
                    "language": language,
                    "status": "held" if held_until else "queued",
                    "attempts": 0,
                    "next_attempt_at": held_until or now,
                    "created_at": now,
                }
            )
        if len(rows) >= 1000:  # bounded memory for big fan-outs: insert in batches
            await session.exec(_INSERT_DELIVERIES, params=rows)
            total += len(rows)
            rows = []
    if rows:
        await session.exec(_INSERT_DELIVERIES, params=rows)
        total += len(rows)
    if total:
        session.info["deliveries_written"] = True  # wakes the senders after commit (app.py)
    return total


def _address(
    channel: str, channels: list[str], digest: bool, urgency: str, email: str | None, phone: str | None
) -> str | None:
    """Where one follower gets a notice on `channel` (None: not on that channel)."""
    if channel not in channels:
        return None  # not chosen, or its consent is not active (services.notify.consent)
    if digest and channel == "email" and urgency != "urgent":
        return None  # they chose the weekly digest (services.notify.digest) over single emails
    return email if channel == "email" else phone


async def reach(db: Database, ks: list[str], topic: str, urgency: str = "normal") -> dict[str, int]:
    """How many residents a notice to `ks` on `topic` reaches on each personal channel: the
    fan-out's own followers and rules (record_notice), counted instead of written."""
    counts = dict.fromkeys(PERSONAL_CHANNELS, 0)
    async with db.session() as session:
        async for _id, email, phone, _language, channels, digest in _followers(session, ks, topic):
            for channel in PERSONAL_CHANNELS:
                if _address(channel, channels, digest, urgency, email, phone):
                    counts[channel] += 1
    return counts


async def update_event_notice(session: AsyncSession, source: str, data: EventChanged) -> int:
    """An announced event changed or was cancelled: its noticeboard entry follows. A
    cancelled event leaves the board and unsent announcements are skipped."""
    notices = (
        await session.exec(
            select(Notice).where(Notice.kind == "event", Notice.source == source, Notice.source_id == data.event_id)
        )
    ).all()
    if data.status == "cancelled":
        await expire_notices(session, source, data.event_id, utcnow())
        return len(notices)
    dates = agenda.stored(data.dates, data.starts_at, data.ends_at)
    for notice in notices:
        notice.title, notice.body, notice.venue = data.title, data.description, data.venue
        notice.starts_at, notice.ends_at, notice.dates = data.starts_at, data.ends_at, dates
        notice.valid_until = agenda.last_end(notice)  # a series stays until its last date
        session.add(notice)
    return len(notices)


async def expire_notices(session: AsyncSession, source: str, source_id: str, at: datetime) -> int:
    """A notice whose subject ended (a survey closed): off the noticeboard, unsent messages skipped."""
    ids = list(
        (await session.exec(select(Notice.id).where(Notice.source == source, Notice.source_id == source_id))).all()
    )
    if not ids:
        return 0
    await session.exec(update(Notice).where(col(Notice.id).in_(ids)).values(valid_until=at))
    await session.exec(
        update(Delivery)
        .where(col(Delivery.notice_id).in_(ids), col(Delivery.status).in_(["queued", "held", "failed-temporary"]))
        .values(status="skipped", last_error="its subject ended before it was sent", next_attempt_at=None)
    )
    return len(ids)


async def record_personal(
    session: AsyncSession,
    notice: NoticeDraft,
    *,
    email: str | None,
    phone: str | None,
    language: str = "sl",
    withheld: dict[str, str] | None = None,
) -> int:
    """A message to one person (their booking, their registration): one delivery per
    channel they gave a contact for. Sent at once, quiet hours or not: they asked for it.
    Idempotent with the message that caused it (the consumer's inbox row). A channel in
    `withheld` is recorded as skipped with that reason, never sent (services.notify.relay)."""
    withheld = withheld or {}
    notice.kind = "personal"
    notice.on_noticeboard = False
    _defer_notice(session, notice)  # written before the deliveries below are flushed
    now = utcnow()
    rows = [
        Delivery(
            notice_id=notice.id,
            subscriber_id=None,
            channel=channel,
            address=address,
            language=language if language in ("sl", "en") else "sl",
            status="skipped" if channel in withheld else "queued",
            next_attempt_at=None if channel in withheld else now,
            last_error=withheld.get(channel),
        )
        for channel, address in (("email", email), ("sms", phone))
        if address and channel in notice.channels
    ]
    session.add_all(rows)
    if any(row.status == "queued" for row in rows):
        session.info["deliveries_written"] = True  # wakes the senders after commit (app.py)
    return len(rows)


async def _followers(
    session: AsyncSession, ks: Iterable[str], topic: str, page_size: int = 1000
) -> AsyncIterable[tuple[str, str | None, str | None, str, list[str], bool]]:
    """Active subscribers who follow one of `ks` (or the whole city) and `topic`, streamed.

    Keyset pages of follower ids first, then those subscribers by primary key: a plan that
    stays cheap when PostgreSQL has no statistics yet (right after `kranj subscriber import`,
    one query that filtered subscribers by status inside a nested loop took 0.5 s a page)."""
    ks = list(ks)
    sqlite = session.bind is not None and session.bind.dialect.name == "sqlite"
    # On SQLite (no statistics) the KS index was taken and the topic's every follower listed,
    # for each page: a page of 1,000 cost 14 ms in a city of 50,000, more the larger the
    # city. There the pages walk the primary key in order instead (the KS compared, not
    # looked up), each follower's topic looked up by its key: 0.7 ms a page, the whole
    # fan-out once over the city's KS rows (tests/integration/test_notify_followers_plan.py).
    ks_column = table_of(SubscriberKs).c.ks
    on_ks = (ks_column + "") if sqlite else ks_column
    ks_filter = sa.true() if ALL_KS in ks else on_ks.in_([*ks, ALL_KS])
    on_topic: sa.ColumnElement[bool]
    if sqlite:
        topics = table_of(SubscriberTopic)
        on_topic = sa.exists().where(
            topics.c.subscriber_id == col(SubscriberKs.subscriber_id), topics.c.topic == topic
        )
    else:
        on_topic = col(SubscriberKs.subscriber_id).in_(
            select(SubscriberTopic.subscriber_id).where(SubscriberTopic.topic == topic)
        )
    last_id = ""
    while True:  # keyset pages: bounded memory, no cursor held open across the inserts
        ids = (
            await session.exec(
                select(SubscriberKs.subscriber_id)
                .where(ks_filter, on_topic, SubscriberKs.subscriber_id > last_id)
                .distinct()
                .order_by(col(SubscriberKs.subscriber_id))
                .limit(page_size)
            )
        ).all()
        if not ids:
            return
        page = (
            await session.exec(
                select(  # type: ignore[call-overload]  # sqlmodel types select() for at most 4 columns
                    Subscriber.id,
                    Subscriber.email,
                    Subscriber.phone,
                    Subscriber.language,
                    Subscriber.channels,
                    Subscriber.digest,
                    Subscriber.status,
                )
                # By primary key, the status checked here: asked in the query, SQLite walked
                # every active subscriber of the city for each page (the status index).
                .where(col(Subscriber.id).in_(ids))
                .order_by(col(Subscriber.id))
            )
        ).all()
        page = [row for row in page if row[6] == "active"]
        # Only the channels whose own consent is active (a channel nobody confirmed gets nothing).
        consented = await consent.active_channels(session, [row[0] for row in page])
        for row in page:
            allowed = consented.get(row[0], set())
            channels = [c for c in (row[4] or []) if c in allowed]
            yield row[0], row[1], row[2], row[3], channels, bool(row[5])
        if len(ids) < page_size:
            return
        last_id = ids[-1]


def notice_from_request(envelope: CloudEvent, data: NoticeRequested) -> NoticeDraft:
    return NoticeDraft(
        kind="notice",
        source=envelope.source,
        source_id=envelope.id,
        title=data.title,
        body=data.body,
        ks=list(data.ks),
        topic=data.topic,
        channels=list(data.channels),
        urgency=data.urgency,
        url=str(data.url) if data.url else None,
        language=data.language,
        valid_until=data.valid_until,
        on_noticeboard="noticeboard" in data.channels,
    )


def notice_from_event(envelope: CloudEvent, data: EventPublished) -> NoticeDraft:
    """An announced event's noticeboard entry: on the board until its last date ends (a
    weekly series until its last week, not only its first date)."""
    draft = NoticeDraft(
        kind="event",
        source=envelope.source,
        source_id=data.event_id,
        title=data.title,
        body=data.description,
        ks=[data.ks],
        topic="events",
        channels=["email", "sms", "noticeboard"],
        urgency="normal",
        url=str(data.url),
        language="sl",
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        venue=data.venue,
        dates=agenda.stored(data.dates, data.starts_at, data.ends_at),
        on_noticeboard=True,
    )
    draft.valid_until = agenda.last_end(draft)
    return draft


async def noticeboard(db: Database, ks: str | None, limit: int = 50, *, urgent_first: bool = True) -> list[Notice]:
    """Current notices of one KS (and city-wide ones), urgent ones first (the board; a feed
    asks for newest first only), then newest first; `ks=None` = whole city. An event stays
    until its last date has ended."""
    now = utcnow()
    async with db.session() as session:
        query = select(Notice).where(
            col(Notice.on_noticeboard).is_(True),
            sa.or_(col(Notice.valid_until).is_(None), col(Notice.valid_until) > now),
        )
        if ks is not None:
            query = query.where(
                col(Notice.id).in_(select(NoticeKs.notice_id).where(col(NoticeKs.ks).in_([ks, ALL_KS])))
            )
        order: list[Any] = [col(Notice.created_at).desc()]
        if urgent_first:
            order.insert(0, sa.case((col(Notice.urgency) == "urgent", 0), else_=1))
        rows = (await session.exec(query.order_by(*order).limit(limit))).all()
    return list(rows)


async def delivery_log(db: Database, notice_id: str, limit: int = 500) -> list[Delivery]:
    async with db.session() as session:
        rows = (
            await session.exec(
                select(Delivery)
                .where(Delivery.notice_id == notice_id)
                .order_by(col(Delivery.channel), col(Delivery.created_at))
                .limit(limit)
            )
        ).all()
    return list(rows)


async def resend_failed(db: Database, notice_id: str) -> int:
    """Put failed deliveries of a notice back in the queue (staff decided to try again)."""
    async with db.session() as session:
        result = await session.exec(
            update(Delivery)
            .where(
                col(Delivery.notice_id) == notice_id,
                col(Delivery.status).in_(["failed-temporary", "failed-permanent"]),
                col(Delivery.address).is_not(None),
            )
            .values(status="queued", attempts=0, next_attempt_at=utcnow(), last_error=None)
        )
        await session.commit()
    return int(result.rowcount or 0)


async def delivery_summary(db: Database, notice_id: str) -> dict[str, dict[str, int]]:
    async with db.session() as session:
        rows = (
            await session.exec(
                select(Delivery.channel, Delivery.status, func.count())
                .where(Delivery.notice_id == notice_id)
                .group_by(Delivery.channel, Delivery.status)
            )
        ).all()
    summary: dict[str, dict[str, int]] = {}
    for channel, state, count in rows:
        summary.setdefault(channel, {})[state] = count
    return summary
