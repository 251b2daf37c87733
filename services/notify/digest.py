"""The weekly digest ("Ta teden v KS …"): for residents who chose one email a week over one
email per notice (`Subscriber.digest`).

Every Monday at 07:00 Europe/Ljubljana, for each KS (and once for the followers of the
whole city), one digest notice (`kind="digest"`, not on the noticeboard) lists that KS's
notices of the past week and its events of the coming week (each date of a series in that
week, and how many come later), and gets one email delivery
per digest subscriber. The DeliveryWorker sends them like any other delivery; the Renderer
uses the `digest_*` templates for this kind. The items are a snapshot in the notice's body
(JSON), so what was sent stays what the delivery log points to.

Exactly once, with any number of replicas: the digest's `source_id` is deterministic
(`digest:<ks>:<ISO week>`), the job looks for it and inserts it in ONE transaction, and the
partial unique index `uq_notices_digest` (source, source_id) WHERE kind = 'digest'
(migration notify_0002) makes a second insert fail. On PostgreSQL two replicas can both
see "none yet"; the loser's insert waits for the winner's commit, then raises
IntegrityError, and it rolls back everything it wrote (its deliveries too). On SQLite
transactions begin IMMEDIATE (shared.db), so the second replica already sees the first's
row. The deliveries' own unique key (notice, subscriber, channel) does the rest.

The job wakes every few minutes and makes the digest of the latest Monday 07:00 if it does
not exist yet, so a service that was restarted (or down) at 07:00 still sends it that day;
after DIGEST_CATCH_UP it waits for the next week instead of surprising people mid-week.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from shared import i18n
from shared.contracts import ALL_KS, KS_SLUGS, ks_name
from shared.db import Database
from shared.models import utcnow
from shared.periodic import every
from shared.settings import Settings

from . import agenda
from .domain import quiet_until
from .models import ChannelConsent, Delivery, Notice, NoticeKs, Subscriber, SubscriberKs, SubscriberTopic
from .posters import notice_link, shorten

log = logging.getLogger("kranj.notify.digest")

# When: Monday 07:00 Ljubljana time (not configurable yet; Settings belong to another change).
DIGEST_WEEKDAY = 0  # Monday
DIGEST_HOUR = 7
DIGEST_CATCH_UP = timedelta(hours=24)
DIGEST_CHECK_EVERY = 300.0  # seconds between checks of the background job
DIGEST_SOURCE = "/notify/digest"
MAX_ITEMS = 20  # per section; the link to the noticeboard leads to the rest
MAX_CANDIDATES = 500  # events read to find the week's (a series that began long ago included)
WEEK = timedelta(days=7)


def digest_slot(now: datetime) -> datetime:
    """The latest Monday 07:00 Europe/Ljubljana at or before `now` (as an aware datetime)."""
    local = i18n.local(now)
    monday = local.date() - timedelta(days=(local.weekday() - DIGEST_WEEKDAY) % 7)
    slot = datetime(monday.year, monday.month, monday.day, DIGEST_HOUR, tzinfo=i18n.TZ)
    if slot > local:
        monday -= WEEK
        slot = datetime(monday.year, monday.month, monday.day, DIGEST_HOUR, tzinfo=i18n.TZ)
    return slot


def digest_key(scope: str, slot: datetime) -> str:
    year, week, _ = i18n.local(slot).isocalendar()
    return f"digest:{scope}:{year}-W{week:02d}"


def _board_url(base: str, scope: str) -> str:
    return f"{base}/noticeboard" if scope == ALL_KS else f"{base}/noticeboard/{scope}"


async def _items(session: Any, scope: str, slot: datetime, now: datetime) -> tuple[list[Listed], list[Notice]]:
    """Upcoming events (with their dates in the coming week, or newly announced ones with
    their next date) and last week's notices of `scope`."""
    query = select(Notice).where(
        col(Notice.on_noticeboard).is_(True),
        sa.or_(col(Notice.valid_until).is_(None), col(Notice.valid_until) > now),
    )
    if scope != ALL_KS:
        query = query.where(col(Notice.id).in_(select(NoticeKs.notice_id).where(col(NoticeKs.ks).in_([scope, ALL_KS]))))
    since = slot - WEEK
    # A series' notice keeps its first date in starts_at/ends_at and all of them in `dates`
    # (services/notify/agenda.py): which dates are this week's is decided below, not in SQL.
    candidates = (
        await session.exec(
            query.where(
                Notice.kind == "event",
                col(Notice.starts_at).is_not(None),
                sa.or_(col(Notice.starts_at) < slot + WEEK, col(Notice.created_at) >= since),
            )
            .order_by(col(Notice.starts_at))
            .limit(MAX_CANDIDATES)
        )
    ).all()
    events = [listed for n in candidates if (listed := _listed(n, now, slot + WEEK, since)) is not None]
    events.sort(key=lambda listed: (listed.dates[0].starts_at, listed.notice.title))
    notices = (
        await session.exec(
            query.where(Notice.kind == "notice", col(Notice.created_at) >= since, col(Notice.created_at) < slot)
            .order_by(col(Notice.created_at).desc())
            .limit(MAX_ITEMS)
        )
    ).all()
    return events[:MAX_ITEMS], list(notices)


@dataclass(frozen=True)
class Listed:
    """An event in the digest: the dates it lists and how many dates come after them."""

    notice: Notice
    dates: list[agenda.Date]
    later: int


def _listed(notice: Notice, now: datetime, until: datetime, since: datetime) -> Listed | None:
    """Every date of the event from now until the end of the digest's week; an event newly
    announced in the past week with no date in it, its next date; else nothing."""
    upcoming = [d for d in agenda.dates_of(notice) if d.ends_at > now]
    week = [d for d in upcoming if d.starts_at < until]
    if not week and upcoming and notice.created_at >= since:
        week = upcoming[:1]
    if not week:
        return None
    return Listed(notice, week, len(upcoming) - len(week))


async def _recipients(session: Any, scope: str, topics: set[str]) -> list[tuple[str, str, str]]:
    """(id, email, language) of active digest subscribers of exactly `scope` (followers of the
    whole city get the city's digest, not 26 of them) who follow one of `topics`."""
    rows = (
        await session.exec(
            select(Subscriber.id, Subscriber.email, Subscriber.language, Subscriber.channels)
            .where(
                Subscriber.status == "active",
                col(Subscriber.digest).is_(True),
                col(Subscriber.email).is_not(None),
                col(Subscriber.id).in_(  # the email's own consent is active (services.notify.consent)
                    select(ChannelConsent.subscriber_id).where(
                        ChannelConsent.channel == "email", ChannelConsent.status == "active"
                    )
                ),
                col(Subscriber.id).in_(select(SubscriberKs.subscriber_id).where(SubscriberKs.ks == scope)),
                col(Subscriber.id).in_(
                    select(SubscriberTopic.subscriber_id).where(col(SubscriberTopic.topic).in_(sorted(topics)))
                ),
            )
            .order_by(col(Subscriber.id))
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in rows if "email" in (r[3] or [])]


def _snapshot(scope: str, slot: datetime, base: str, events: list[Listed], notices: list[Notice]) -> str:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return json.dumps(
        {
            "scope": scope,
            "since": (slot - WEEK).isoformat(),
            "until": slot.isoformat(),
            "board_url": _board_url(base, scope),
            "events": [
                {
                    "id": e.notice.id,
                    "title": e.notice.title,
                    # the first listed date (what a snapshot from before `dates` had)
                    "starts_at": when(e.dates[0].starts_at),
                    "ends_at": when(e.dates[0].ends_at),
                    "dates": [[when(d.starts_at), when(d.ends_at)] for d in e.dates],
                    "later": e.later,
                    "venue": e.notice.venue,
                    "link": notice_link(e.notice, base),
                    "ks": e.notice.ks,
                }
                for e in events
            ],
            "notices": [
                {
                    "id": n.id,
                    "title": n.title,
                    "body": shorten(n.body or "", 300),
                    "urgency": n.urgency,
                    "valid_until": when(n.valid_until),
                    "link": notice_link(n, base),
                    "ks": n.ks,
                }
                for n in notices
            ],
        },
        ensure_ascii=False,
    )


async def make_digest(db: Database, settings: Settings, scope: str, slot: datetime, now: datetime) -> int:
    """The digest of `scope` for the week ending at `slot`: its deliveries, or 0 when it
    already exists (made here or by another replica), has nothing to say or no readers."""
    key = digest_key(scope, slot)
    try:
        async with db.session() as session:
            exists = (
                await session.exec(
                    select(Notice.id).where(
                        Notice.kind == "digest", Notice.source == DIGEST_SOURCE, Notice.source_id == key
                    )
                )
            ).first()
            if exists is not None:
                return 0
            events, notices = await _items(session, scope, slot, now)
            if not events and not notices:
                return 0
            recipients = await _recipients(session, scope, {n.topic for n in (*(e.notice for e in events), *notices)})
            if not recipients:
                return 0
            place = "Mestni občini Kranj" if scope == ALL_KS else f"KS {ks_name(scope)}"  # locative
            digest = Notice(
                kind="digest",
                source=DIGEST_SOURCE,
                source_id=key,
                title=f"Ta teden v {place}",
                body=_snapshot(scope, slot, settings.public_base("notify"), events, notices),
                ks=[scope],
                topic="general",
                channels=["email"],
                urgency="normal",
                language="sl",
                valid_until=slot + WEEK,  # a digest nobody could send within its week is skipped
                on_noticeboard=False,
            )
            session.add(digest)
            await session.flush()  # another replica's digest: IntegrityError here or at commit
            session.add(NoticeKs(notice_id=digest.id, ks=scope))
            held_until = quiet_until(now, settings.quiet_window)
            session.add_all(
                Delivery(
                    notice_id=digest.id,
                    subscriber_id=subscriber_id,
                    channel="email",
                    address=email,
                    language=language if language in i18n.LANGUAGES else "sl",
                    status="held" if held_until else "queued",
                    next_attempt_at=held_until or now,
                )
                for subscriber_id, email, language in recipients
            )
            await session.commit()
    except IntegrityError:
        log.info("digest already made by another replica", extra={"digest": key})
        return 0
    log.info("digest made", extra={"digest": key, "deliveries": len(recipients)})
    return len(recipients)


async def run_digests(db: Database, settings: Settings, now: datetime | None = None) -> int:
    """Make this week's digests that are due and missing; returns the deliveries queued."""
    now = now or utcnow()
    slot = digest_slot(now)
    if now - slot > DIGEST_CATCH_UP:
        return 0
    total = 0
    for scope in (*KS_SLUGS, ALL_KS):
        total += await make_digest(db, settings, scope, slot, now)
    return total


def weekly_digest_job(
    db: Database, settings: Settings, on_new_deliveries: Callable[[], None]
) -> Callable[[], Awaitable[None]]:
    """The background task (`ServiceApp.background`): check now and then, make what is due."""

    async def weekly_digest() -> int:
        made = await run_digests(db, settings)
        if made:
            on_new_deliveries()
        return made

    return every(DIGEST_CHECK_EVERY, weekly_digest, name="weekly digest deliveries made")
