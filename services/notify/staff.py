"""Staff pages served by notify: the staff home `/osebje` (where a login lands) and notices
`/osebje/obvestila` — write a notice to one's KS, preview it on every channel with its reach,
send it now or schedule it, the KS's sent notices with their delivery counts, the delivery log
and "resend the failed" (issue 19).

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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import col, func, select, update

from shared import clock, permissions
from shared.auth import Grant, Record, RecordLoader, auth_of, authorize, current_staff, may
from shared.contracts import ALL_KS, KS_NAMES, NoticeRequested, ks_name
from shared.contracts.notify import CHANNELS, NOTICE_REQUESTED, TOPICS
from shared.db import Database
from shared.i18n import TZ, format_datetime
from shared.models import new_id, utcnow
from shared.outbox import add_to_outbox
from shared.periodic import every
from shared.web import ServiceApp

from . import notices
from .api import PreviewIn, delivery_log_of, notice_record, preview_of
from .models import Delivery, Notice, NoticeKs, ScheduledNotice
from .subscribe import TOPIC_LABELS

log = logging.getLogger("kranj.notify.staff")

staff_pages = APIRouter(tags=["staff pages"])

STAFF_SOURCE = "/kranj/notify/staff/"
SCHEDULE_POLL_SECONDS = 15.0  # how often due scheduled notices are sent (tests lower it)
CHANNEL_LABELS = {"email": "E-pošta", "sms": "SMS", "noticeboard": "Oglasna deska"}
FAILED = ("failed-permanent", "failed-temporary")
WAITING = ("queued", "held", "sending")
LOG_READ = "notify.deliveries.read"
STATE_GROUP = {"sent": "sent", **dict.fromkeys(FAILED, "failed"), **dict.fromkeys(WAITING, "waiting")}
RECIPIENTS = {"one": "prejemnik", "two": "prejemnika", "few": "prejemniki", "other": "prejemnikov"}


def _ctx(request: Request) -> ServiceApp:
    return request.app.state.ctx  # type: ignore[no-any-return]


# ======================================================================================
# The declared action of a staff page (the permission table, shared/auth.py)
# ======================================================================================
def StaffPage(action: str, record: RecordLoader | None = None) -> Any:  # noqa: N802 - reads as a declaration
    """`Permit` for HTML pages: the same check (401, 403, the record's KS) and the same
    `x-permission` in the OpenAPI document; a browser without a valid session is sent to
    `/login?next=<this page>` instead of a 401."""
    permissions.scope_of("admin", action)  # an action the table does not know fails at import

    async def staff_page(request: Request) -> Grant:
        if auth_of(request).staff is None and "text/html" in request.headers.get("accept", ""):
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(
                status.HTTP_303_SEE_OTHER,
                "Prijavite se. / Please log in.",
                headers={"Location": f"/login?{urlencode({'next': here})}"},
            )
        staff = current_staff(request)
        return authorize(staff, action, await record(request) if record is not None else None)

    staff_page.permission = action  # type: ignore[attr-defined]
    return Depends(staff_page)


async def scheduled_record(request: Request) -> Record:
    async with _ctx(request).db.session() as session:
        row = await session.get(ScheduledNotice, request.path_params["scheduled_id"])
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Načrtovanega obvestila ni. / No such scheduled notice.")
    return Record(ks=row.ks)


SEE_OTHER = {303: {"description": "Done: on to the page that shows it (HTML forms post and get redirected)."}}
FORM_ERRORS = {
    422: {"description": "The form again, with what to correct (HTML).", "content": {"text/html": {}}},
    **SEE_OTHER,
}

Home = Annotated[Grant, StaffPage("notify.staff-home")]
Write = Annotated[Grant, StaffPage("notify.notices.write")]
CancelScheduled = Annotated[Grant, StaffPage("notify.notices.write", record=scheduled_record)]
LogRead = Annotated[Grant, StaffPage("notify.deliveries.read", record=notice_record)]
Resend = Annotated[Grant, StaffPage("notify.deliveries.resend", record=notice_record)]


# ======================================================================================
# Scope: the KS a staff member acts for
# ======================================================================================
def everywhere(grant: Grant) -> bool:
    return grant.scope == "all" or ALL_KS in grant.ks


def own_ks(grant: Grant) -> list[str]:
    """The KS a staff member may write a notice to (every KS for a city admin)."""
    return list(KS_NAMES) if everywhere(grant) else [k for k in grant.ks if k in KS_NAMES]


def _ks_filter(grant: Grant) -> Any:
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
# The compose form: what a staff member wrote, checked
# ======================================================================================
FIELDS = ("ks", "title", "body", "topic", "urgency", "valid_until", "url", "send_at")


@dataclass
class Draft:
    values: dict[str, str]
    channels: list[str]
    errors: list[tuple[str, str]] = field(default_factory=list)  # (field id, Slovenian message)
    notice: NoticeRequested | None = None
    send_at: datetime | None = None

    @classmethod
    def blank(cls, grant: Grant) -> Draft:
        kss = own_ks(grant)
        values = dict.fromkeys(FIELDS, "")
        values.update(ks=kss[0] if len(kss) == 1 else "", topic="general", urgency="normal")
        return cls(values, list(CHANNELS))

    @classmethod
    def from_form(cls, form: Mapping[str, Any], channels: list[str]) -> Draft:
        values = {name: str(form.get(name) or "").strip() for name in FIELDS}
        values["urgency"] = values["urgency"] or "normal"
        return cls(values, [c for c in CHANNELS if c in channels])

    def check(self, now: datetime) -> None:
        v, errors = self.values, self.errors
        if v["ks"] != ALL_KS and v["ks"] not in KS_NAMES:
            errors.append(("ks", "Izberite krajevno skupnost, ki ji pišete."))
        if not v["title"] or len(v["title"]) > 120:
            errors.append(("title", "Vpišite naslov obvestila (največ 120 znakov)."))
        if not v["body"] or len(v["body"]) > 2000:
            errors.append(("body", "Vpišite besedilo obvestila (največ 2000 znakov)."))
        if v["topic"] not in TOPICS:
            errors.append(("topic", "Izberite temo obvestila."))
        if not self.channels:
            errors.append(("channels", "Izberite vsaj en kanal: e-pošto, SMS ali oglasno desko."))
        if v["urgency"] not in ("normal", "urgent"):
            errors.append(("urgency", "Izberite, ali je obvestilo nujno."))
        valid_until = self._time("valid_until", "Vpišite datum in uro, do kdaj obvestilo velja.")
        self.send_at = self._time("send_at", "Vpišite datum in uro pošiljanja.")
        if self.send_at is not None and self.send_at <= now:
            errors.append(("send_at", "Čas pošiljanja mora biti v prihodnosti."))
        if valid_until is not None and valid_until <= max(now, self.send_at or now):
            errors.append(("valid_until", "Obvestilo mora veljati še po tem, ko je poslano."))
        if errors:
            return
        try:
            self.notice = NoticeRequested(
                title=v["title"],
                body=v["body"],
                ks=[v["ks"]],
                topic=v["topic"],  # type: ignore[arg-type]
                channels=self.channels,  # type: ignore[arg-type]
                urgency=v["urgency"],  # type: ignore[arg-type]
                url=v["url"] or None,  # type: ignore[arg-type]
                valid_until=valid_until,
                language="sl",
            )
        except ValidationError as exc:
            for err in exc.errors():
                where = str(err.get("loc", ("",))[0])
                if where == "url":
                    errors.append(("url", "Povezava mora biti cel naslov, ki se začne s https:// ali http://."))
                elif where in ("title", "body"):
                    errors.append((where, "Vpišite naslov in besedilo obvestila."))
                else:
                    errors.append((where or "title", "Preverite vnesene podatke."))

    def _time(self, name: str, message: str) -> datetime | None:
        try:
            return local_input(self.values[name])
        except ValueError:
            self.errors.append((name, message))
            return None


def check_rights(grant: Grant, draft: Draft) -> None:
    """What the staff member may send (403 otherwise), decided BEFORE anything is written:
    their KS (every KS for admins), urgent and city-wide only where the table allows them."""
    ks = draft.values["ks"]
    if ks == ALL_KS:
        authorize(grant, "notify.notices.city-wide")
    elif ks in KS_NAMES:
        grant.require(None, ks)
    if draft.values["urgency"] == "urgent":
        authorize(grant, "notify.notices.urgent")


# ======================================================================================
# Use cases: send now, schedule, release what is due
# ======================================================================================
async def send_now(db: Database, grant: Grant, notice: NoticeRequested) -> str:
    """The notice as `notify.notice.requested` in notify's own outbox (the one fan-out path)."""
    async with db.session() as session:
        envelope = add_to_outbox(session, NOTICE_REQUESTED, notice, source=staff_source(grant.subject))
        await session.commit()
    log.info("staff notice sent", extra={"ce_id": envelope["id"], "ks": notice.ks})
    return str(envelope["id"])


async def schedule(db: Database, grant: Grant, notice: NoticeRequested, send_at: datetime) -> str:
    row = ScheduledNotice(
        id=new_id(),
        source=staff_source(grant.subject),
        ks=notice.ks[0],
        title=notice.title,
        data=notice.model_dump(mode="json", exclude_none=True),
        send_at=send_at,
        created_by=grant.subject,
    )
    async with db.session() as session:
        session.add(row)
        await session.commit()
    return row.id


async def release_due(db: Database, limit: int = 100) -> int:
    """Write the outbox row of every scheduled notice whose time has come, in the transaction
    that marks it sent (a row another replica marked first is left alone; the CloudEvent id is
    the row's id, so a second copy would be the same message)."""
    now = utcnow()
    async with db.session() as session:
        due = (
            await session.exec(
                select(ScheduledNotice)
                .where(
                    col(ScheduledNotice.sent_at).is_(None),
                    col(ScheduledNotice.cancelled_at).is_(None),
                    col(ScheduledNotice.send_at) <= now,
                )
                .order_by(col(ScheduledNotice.send_at))
                .limit(limit)
            )
        ).all()
        released = 0
        for row in due:
            claimed = await session.exec(  # type: ignore[call-overload]
                update(ScheduledNotice)
                .where(
                    col(ScheduledNotice.id) == row.id,
                    col(ScheduledNotice.sent_at).is_(None),
                    col(ScheduledNotice.cancelled_at).is_(None),
                )
                .values(sent_at=now)
            )
            if claimed.rowcount != 1:
                continue
            add_to_outbox(
                session, NOTICE_REQUESTED, NoticeRequested.model_validate(row.data), source=row.source, id=row.id
            )
            released += 1
        await session.commit()
    return released


def scheduled_notices_job(db: Database) -> Callable[[], Awaitable[None]]:
    """The periodic job of app.py: scheduled staff notices go out at their time."""

    async def job() -> str | None:
        released = await release_due(db)
        return f"{released} scheduled notice(s) sent" if released else None

    return every(lambda: SCHEDULE_POLL_SECONDS, job, name="scheduled staff notices")


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
    query = select(Notice).where(Notice.kind == "notice", _ks_filter(grant))
    if since is not None:
        query = query.where(col(Notice.created_at) >= since)
    async with db.session() as session:
        return list((await session.exec(query.order_by(col(Notice.created_at).desc()).limit(limit))).all())


def _record_of(notice: Notice) -> Record:
    kss = set(notice.ks)  # as api.notice_record: one KS, or the city's
    return Record(ks=kss.pop() if len(kss) == 1 else ALL_KS)


async def notice_rows(request: Request, grant: Grant, sent: list[Notice]) -> list[dict[str, Any]]:
    db = _ctx(request).db
    rows = []
    for notice in sent:
        rows.append(
            {
                "notice": notice,
                "counts": counts_by_state(await notices.delivery_summary(db, notice.id)),
                "log": may(grant, "notify.deliveries.read", _record_of(notice)),
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
                    col(Delivery.notice_id).in_(select(Notice.id).where(_ks_filter(grant))),
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
    query = select(Notice).where(Notice.kind == kind, _ks_filter(grant))
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
def _page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    who = auth_of(request).staff
    context = {"nav_may": lambda action: may(who, action), **context}  # the staff header's sections
    return _ctx(request).templates.TemplateResponse(request, template, context, status_code=status_code)


@staff_pages.get(
    "/osebje", response_class=HTMLResponse, summary="Staff home: one's KS, what needs one now, every staff task"
)
async def staff_home(request: Request, grant: Home) -> HTMLResponse:
    db = _ctx(request).db
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
    return _page(request, "staff_home.html", context)


async def _notices_page(
    request: Request, grant: Grant, draft: Draft, *, done: str | None = None, status_code: int = 200
) -> HTMLResponse:
    db = _ctx(request).db
    context = {
        "section": "obvestila",
        "grant": grant,
        "draft": draft,
        "errors": dict(draft.errors),
        "done": done,
        "kss": own_ks(grant),
        "topics": TOPIC_LABELS["sl"],
        "channel_labels": CHANNEL_LABELS,
        "may_urgent": may(grant, "notify.notices.urgent"),
        "may_city_wide": may(grant, "notify.notices.city-wide"),
        "scheduled": await scheduled_of(db, grant),
        "rows": await notice_rows(request, grant, await sent_notices(db, grant)),
    }
    return _page(request, "staff_notices.html", context, status_code)


DONE = {
    "poslano": "Obvestilo je poslano. Prejemniki ga dobijo v nekaj trenutkih; spodaj se pokaže, ko je obdelano.",
    "nacrtovano": "Obvestilo je načrtovano: poslano bo ob izbranem času.",
    "preklicano": "Načrtovano obvestilo je preklicano in ne bo poslano.",
}


@staff_pages.get(
    "/osebje/obvestila",
    response_class=HTMLResponse,
    summary="Notices of one's KS: write one, the scheduled and the sent ones with their counts (staff page)",
)
async def notices_page(request: Request, grant: Write, done: str | None = None) -> HTMLResponse:
    return await _notices_page(request, grant, Draft.blank(grant), done=DONE.get(done or ""))


@staff_pages.post(
    "/osebje/obvestila",
    response_class=HTMLResponse,
    summary="Preview a notice (korak=predogled), correct it (popravi), send it now (zdaj) or at its time (nacrtuj)",
    responses=FORM_ERRORS,
)
async def notices_post(request: Request, grant: Write) -> Response:
    ctx = _ctx(request)
    form, channels = await _fields(request)
    step = str(form.get("korak") or "predogled")
    draft = Draft.from_form(form, channels)
    check_rights(grant, draft)  # 403 before anything is written
    if step == "zdaj":
        draft.values["send_at"] = ""
    draft.check(clock.now())
    if step == "nacrtuj" and draft.send_at is None and not draft.errors:
        draft.errors.append(("send_at", "Vpišite datum in uro pošiljanja."))
    if draft.errors or draft.notice is None or step == "popravi":
        return await _notices_page(request, grant, draft, status_code=422 if draft.errors else 200)
    if step == "zdaj":
        await send_now(ctx.db, grant, draft.notice)
        return RedirectResponse("/osebje/obvestila?done=poslano", status_code=status.HTTP_303_SEE_OTHER)
    if step == "nacrtuj" and draft.send_at is not None:
        await schedule(ctx.db, grant, draft.notice, draft.send_at)
        return RedirectResponse("/osebje/obvestila?done=nacrtovano", status_code=status.HTTP_303_SEE_OTHER)
    preview = preview_of(ctx, PreviewIn.model_validate(draft.notice.model_dump()))
    reach = await notices.reach(ctx.db, list(draft.notice.ks), draft.notice.topic, draft.notice.urgency)
    context = {
        "section": "obvestila",
        "draft": draft,
        "notice": draft.notice,
        "preview": preview,
        "cost": euro(preview.sms.estimated_cost_eur),
        "reach": reach,
        "recipients": RECIPIENTS,
        "topics": TOPIC_LABELS["sl"],
        "channel_labels": CHANNEL_LABELS,
        "send_at_text": format_datetime(draft.send_at) if draft.send_at else None,
    }
    return _page(request, "staff_preview.html", context)


async def _fields(request: Request) -> tuple[Mapping[str, Any], list[str]]:
    """The page's form; the same fields as a JSON object from a script (a bearer token)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        channels = body.get("channels")
        return body, [str(c) for c in channels] if isinstance(channels, list) else []
    form = await request.form()
    return form, [str(c) for c in form.getlist("channels")]


@staff_pages.post(
    "/osebje/obvestila/nacrtovana/{scheduled_id}/preklic",
    summary="Cancel a scheduled notice before it is sent (staff of its KS)",
    responses=SEE_OTHER,
)
async def cancel_scheduled(scheduled_id: str, request: Request, grant: CancelScheduled) -> Response:
    async with _ctx(request).db.session() as session:
        await session.exec(  # type: ignore[call-overload]
            update(ScheduledNotice)
            .where(col(ScheduledNotice.id) == scheduled_id, col(ScheduledNotice.sent_at).is_(None))
            .values(cancelled_at=utcnow())
        )
        await session.commit()
    return RedirectResponse("/osebje/obvestila?done=preklicano", status_code=status.HTTP_303_SEE_OTHER)


@staff_pages.get(
    "/osebje/obvestila/{notice_id}",
    response_class=HTMLResponse,
    summary="A notice's delivery log (staff of its KS; contacts masked)",
)
async def delivery_log_page(
    notice_id: str, request: Request, grant: LogRead, ponovno: int | None = None
) -> HTMLResponse:
    db = _ctx(request).db
    async with db.session() as session:
        notice = await session.get(Notice, notice_id)
    view = await delivery_log_of(db, notice_id)
    failed = sum(n for states in view.counts.values() for s, n in states.items() if s in FAILED)
    context = {
        "section": "obvestila",
        "notice": notice,
        "log": view,
        "counts": counts_by_state(view.counts),
        "failed": failed,
        "may_resend": may(grant, "notify.deliveries.resend", _record_of(notice)) if notice else False,
        "requeued": ponovno,
        "channel_labels": CHANNEL_LABELS,
        "recipients": RECIPIENTS,
    }
    return _page(request, "staff_deliveries.html", context)


@staff_pages.post(
    "/osebje/obvestila/{notice_id}/ponovno",
    summary="Send a notice's failed deliveries again (staff of its KS)",
    responses=SEE_OTHER,
)
async def resend_failed(notice_id: str, request: Request, grant: Resend) -> Response:
    ctx = _ctx(request)
    count = await notices.resend_failed(ctx.db, notice_id)
    ctx.extra["worker"].wake()
    return RedirectResponse(f"/osebje/obvestila/{notice_id}?ponovno={count}", status_code=status.HTTP_303_SEE_OTHER)
