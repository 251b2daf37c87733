"""The staff console served by notify: the staff home `/osebje` (where a login lands) and what
every staff page of notify shares — the declared action of a page (`StaffPage`), the KS a
staff member acts for, the reading queries the home and the notices pages show. The notices
pages themselves (`/osebje/obvestila`: write, preview, send or schedule, the delivery log,
resend) are in staff_notices.py (issue 19).

A staff notice travels the same way as an outside system's: a `notify.notice.requested`
CloudEvent in notify's own outbox, `source` = `/kranj/notify/staff/<subject>`, consumed by the
one fan-out path (handlers.py). The page checks the permission table before it writes the
outbox row (shared/permissions.py: `notify.notices.write` for the KS, `notify.notices.urgent`,
`notify.notices.city-wide`); notify's broker user carries those rights on the bus
(shared/senders.py), so the page is where they are decided.

Every route declares its action (`StaffPage`, published as `x-permission`, so the permission
matrix covers it); a browser without a session is sent to `/login?next=<this page>`, anything
else gets 401 as on the API.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import col, func, select

from shared import clock
from shared.auth import Grant, Record, StaffPage, may
from shared.contracts import ALL_KS, KS_NAMES, ks_name
from shared.db import Database
from shared.i18n import TZ
from shared.web import ServiceApp

from . import notices
from .models import Delivery, Notice, NoticeKs, ScheduledNotice

log = logging.getLogger("kranj.notify.staff")

staff_pages = APIRouter(tags=["staff pages"])

STAFF_SOURCE = "/kranj/notify/staff/"
CHANNEL_LABELS = {"email": "E-pošta", "sms": "SMS", "noticeboard": "Oglasna deska"}
FAILED = ("failed-permanent", "failed-temporary")
WAITING = ("queued", "held", "sending")
LOG_READ = "notify.deliveries.read"
STATE_GROUP = {"sent": "sent", **dict.fromkeys(FAILED, "failed"), **dict.fromkeys(WAITING, "waiting")}
RECIPIENTS = {"one": "prejemnik", "two": "prejemnika", "few": "prejemniki", "other": "prejemnikov"}


def ctx_of(request: Request) -> ServiceApp:
    return request.app.state.ctx


Home = Annotated[Grant, StaffPage("notify.staff-home")]


# ======================================================================================
# Scope: the KS a staff member acts for
# ======================================================================================
def everywhere(grant: Grant) -> bool:
    return grant.scope == "all" or ALL_KS in grant.ks


def own_ks(grant: Grant) -> list[str]:
    """The KS a staff member may write a notice to (every KS for a city admin)."""
    return list(KS_NAMES) if everywhere(grant) else [k for k in grant.ks if k in KS_NAMES]


def ks_filter(grant: Grant) -> Any:
    """Notices of the staff member's KS (and city-wide ones): a condition on notices.id."""
    if everywhere(grant):
        return sa.true()
    return col(Notice.id).in_(select(NoticeKs.notice_id).where(col(NoticeKs.ks).in_([*grant.ks, ALL_KS])))


def ks_label(grant: Grant) -> str:
    if everywhere(grant):
        return "vse krajevne skupnosti (Mestna občina Kranj)"
    return ", ".join(f"KS {ks_name(k)}" for k in grant.ks if k in KS_NAMES) or "—"


def staff_source(subject: str) -> str:
    return STAFF_SOURCE + quote(subject, safe="@.-_")


def local_input(value: str) -> datetime | None:
    """A `datetime-local` field (`2026-12-07T08:00`, Europe/Ljubljana) as an aware time; raises
    ValueError when it is not one."""
    value = value.strip()
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=TZ)
    return parsed


def input_value(at: datetime | None) -> str:
    return at.astimezone(TZ).strftime("%Y-%m-%dT%H:%M") if at else ""


def week_start(now: datetime) -> datetime:
    local = now.astimezone(TZ)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return monday


def euro(amount: float) -> str:
    text = f"{amount:.4f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"{whole},{cents.ljust(2, '0')} €"


def counts_by_state(summary: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """channel -> {sent, waiting, failed, skipped} from the deliveries' states."""
    out: dict[str, dict[str, int]] = {}
    for channel, states in summary.items():
        row = out.setdefault(channel, {"sent": 0, "waiting": 0, "failed": 0, "skipped": 0})
        for state, count in states.items():
            row[STATE_GROUP.get(state, "skipped")] += count
    return out


# ======================================================================================
# Reading: the KS's notices, scheduled ones, failures
# ======================================================================================
async def scheduled_of(db: Database, grant: Grant) -> list[ScheduledNotice]:
    query = select(ScheduledNotice).where(
        col(ScheduledNotice.sent_at).is_(None), col(ScheduledNotice.cancelled_at).is_(None)
    )
    if not everywhere(grant):
        query = query.where(col(ScheduledNotice.ks).in_(list(grant.ks)))
    async with db.session() as session:
        return list((await session.exec(query.order_by(col(ScheduledNotice.send_at)))).all())


async def sent_notices(db: Database, grant: Grant, *, since: datetime | None = None, limit: int = 30) -> list[Notice]:
    query = select(Notice).where(Notice.kind == "notice", ks_filter(grant))
    if since is not None:
        query = query.where(col(Notice.created_at) >= since)
    async with db.session() as session:
        return list((await session.exec(query.order_by(col(Notice.created_at).desc()).limit(limit))).all())


def record_of(notice: Notice) -> Record:
    kss = set(notice.ks)  # as api.notice_record: one KS, or the city's
    return Record(ks=kss.pop() if len(kss) == 1 else ALL_KS)


async def notice_rows(request: Request, grant: Grant, sent: list[Notice]) -> list[dict[str, Any]]:
    db = ctx_of(request).db
    rows = []
    for notice in sent:
        rows.append(
            {
                "notice": notice,
                "counts": counts_by_state(await notices.delivery_summary(db, notice.id)),
                "log": may(grant, "notify.deliveries.read", record_of(notice)),
                "by_staff": notice.source.startswith(STAFF_SOURCE),
            }
        )
    return rows


async def failures_of(db: Database, grant: Grant, since: datetime) -> list[tuple[Notice, int]]:
    """Notices of the staff member's KS with deliveries that failed since `since`."""
    async with db.session() as session:
        counts = (
            await session.exec(
                select(Delivery.notice_id, func.count())
                .where(
                    col(Delivery.status).in_(FAILED),
                    col(Delivery.created_at) >= since,
                    col(Delivery.notice_id).in_(select(Notice.id).where(ks_filter(grant))),
                )
                .group_by(Delivery.notice_id)
            )
        ).all()
        if not counts:
            return []
        by_id = dict(counts)
        notices = (await session.exec(select(Notice).where(col(Notice.id).in_(list(by_id))))).all()
    return sorted(((n, by_id[n.id]) for n in notices), key=lambda pair: pair[0].created_at, reverse=True)


async def announced(db: Database, grant: Grant, kind: str, now: datetime) -> list[Notice]:
    """What notify knows of other services' work in the KS: this week's events (kind `event`)
    or open surveys (kind `survey`), from the notices it keeps of them."""
    query = select(Notice).where(Notice.kind == kind, ks_filter(grant))
    if kind == "event":
        query = query.where(
            col(Notice.starts_at) >= now, col(Notice.starts_at) < week_start(now) + timedelta(days=7)
        ).order_by(col(Notice.starts_at))
    else:
        query = query.where(
            sa.or_(col(Notice.valid_until).is_(None), col(Notice.valid_until) > now),
            ~col(Notice.source_id).contains(":"),  # the opening, not its reminders
        ).order_by(col(Notice.created_at).desc())
    async with db.session() as session:
        return list((await session.exec(query.limit(20))).all())


# ======================================================================================
# Pages
# ======================================================================================
def page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    return ctx_of(request).templates.TemplateResponse(request, template, context, status_code=status_code)


@staff_pages.get(
    "/osebje", response_class=HTMLResponse, summary="Staff home: one's KS, what needs one now, every staff task"
)
async def staff_home(request: Request, grant: Home) -> HTMLResponse:
    db = ctx_of(request).db
    now = clock.now()
    notices = may(grant, "notify.notices.write")
    context = {
        "section": "domov",
        "grant": grant,
        "ks_label": ks_label(grant),
        "may": lambda action: may(grant, action),
        "failures": await failures_of(db, grant, now - timedelta(days=7)) if may(grant, LOG_READ) else [],
        "scheduled": await scheduled_of(db, grant) if notices else [],
        "this_week": await sent_notices(db, grant, since=week_start(now)) if notices else [],
        "events": await announced(db, grant, "event", now),
        "surveys": await announced(db, grant, "survey", now) if may(grant, "surveys.manage") else [],
    }
    return page(request, "staff_home.html", context)
