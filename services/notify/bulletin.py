"""The weekly bulletin of a KS (issue 18): one A4 PDF with the week's events, day by day,
and the current notices, urgent ones first, with a QR code to the sign-up form — for the
mailboxes and the physical noticeboard of residents who are not online.

Everything comes from notify's own noticeboard: the events service announces each event
on the bus with every one of its dates (`EventPublished.dates`), so a weekly series is in
every week's bulletin; a cancelled event or date is gone (its notice expired, or the
changed dates arrived). HTML from `templates/bulletin.html`, PDF by WeasyPrint like the
posters (posters.py), in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import segno
import sqlalchemy as sa
from jinja2 import Environment
from sqlmodel import col, select

from shared import clock
from shared.contracts import ALL_KS, ks_name
from shared.db import Database

from . import agenda
from .models import Notice, NoticeKs
from .posters import render_pdf_async, short_url, shorten

BULLETIN_NOTICES = 8
NOTICE_CHARS = 320
SHOWN_KINDS = ("notice", "event", "survey")


@dataclass(frozen=True)
class Week:
    """Monday to Sunday in Europe/Ljubljana."""

    monday: date

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @property
    def start(self) -> datetime:
        return datetime.combine(self.monday, time(0), tzinfo=clock.TZ).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.monday + timedelta(days=7), time(0), tzinfo=clock.TZ).astimezone(UTC)


def week_of(day: date) -> Week:
    return Week(day - timedelta(days=day.weekday()))


def chosen_week(value: str | None) -> Week:
    """`?teden=2026-12-10` (any day of the week) or this week."""
    today = clock.local_now().date()
    try:
        day = date.fromisoformat(value) if value else today
    except ValueError:
        day = today
    return week_of(day)


@dataclass
class Day:
    day: date
    events: list[tuple[Notice, agenda.Date]] = field(default_factory=list)

    @property
    def noon(self) -> datetime:
        """The day as a moment (the `date` filter of the templates takes one)."""
        return datetime.combine(self.day, time(12), tzinfo=clock.TZ)


@dataclass
class Bulletin:
    ks: str
    week: Week
    days: list[Day]
    notices: list[Notice]

    @property
    def event_count(self) -> int:
        return sum(len(d.events) for d in self.days)


def _counts(notice: Notice, moment: datetime) -> bool:
    """A date counts while its notice is valid: a cancelled event's notice expired when it
    was cancelled, so its later dates are not in any bulletin."""
    return notice.valid_until is None or moment < notice.valid_until


async def gather(db: Database, ks: str, week: Week) -> Bulletin:
    """The week's events (every date in the week, by day and time) and the notices valid
    in it (urgent first, then newest) of `ks` and of the whole city."""
    since = max(week.start, clock.now())  # a notice that has already expired is not printed
    async with db.session() as session:
        rows = (
            await session.exec(
                select(Notice)
                .where(
                    col(Notice.on_noticeboard).is_(True),
                    col(Notice.kind).in_(SHOWN_KINDS),
                    col(Notice.created_at) < week.end,
                    sa.or_(col(Notice.valid_until).is_(None), col(Notice.valid_until) > week.start),
                    col(Notice.id).in_(select(NoticeKs.notice_id).where(col(NoticeKs.ks).in_([ks, ALL_KS]))),
                )
                .order_by(col(Notice.created_at).desc())
            )
        ).all()
    days = [Day(week.monday + timedelta(days=i)) for i in range(7)]
    for notice in (n for n in rows if n.kind == "event"):
        for when in agenda.dates_between(notice, week.start, week.end):
            if _counts(notice, when.starts_at):
                index = (clock_day(when.starts_at) - week.monday).days
                days[min(max(index, 0), 6)].events.append((notice, when))
    for day in days:
        day.events.sort(key=lambda pair: (pair[1].starts_at, pair[0].title))
    current = [n for n in rows if n.kind != "event" and _counts(n, since)]
    current.sort(key=lambda n: n.urgency != "urgent")  # stable: newest first within each
    return Bulletin(ks=ks, week=week, days=days, notices=current[:BULLETIN_NOTICES])


def clock_day(moment: datetime) -> date:
    return moment.astimezone(clock.TZ).date()


def signup_url(base: str, ks: str) -> str:
    return f"{base}/subscribe?ks={ks}"


def qr_png_data_uri(url: str) -> str:
    """The QR code as a PNG (crisp in print at 10 px a module; a PDF reader sees an image)."""
    return segno.make(url, error="m").png_data_uri(scale=10, dark="#000", light="#fff")


def bulletin_html(env: Environment, bulletin: Bulletin, base: str) -> str:
    signup = signup_url(base, bulletin.ks)
    board = f"{base}/noticeboard/{bulletin.ks}"
    return env.get_template("bulletin.html").render(
        b=bulletin,
        ks_label=f"KS {ks_name(bulletin.ks)}",
        texts={n.id: shorten(n.body or "", NOTICE_CHARS) for n in bulletin.notices},
        signup_qr=qr_png_data_uri(signup),
        signup_short=short_url(signup),
        board_short=short_url(board),
        made=clock.now(),
    )


def render_bulletin(env: Environment, bulletin: Bulletin, base: str) -> bytes:
    from weasyprint import HTML  # heavy import: only where a PDF is made

    pdf: bytes = HTML(string=bulletin_html(env, bulletin, base)).write_pdf()
    return pdf


async def render_bulletin_async(env: Environment, bulletin: Bulletin, base: str) -> bytes:
    return await render_pdf_async(render_bulletin, env, bulletin, base)
