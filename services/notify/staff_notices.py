"""Notices written by staff, `/osebje/obvestila`: write a notice to one's KS, preview it on
every channel with its reach, send it now or schedule it, the KS's sent notices with their
delivery counts, the delivery log and "resend the failed" (issue 19).

A staff notice travels the same way as an outside system's: a `notify.notice.requested`
CloudEvent in notify's own outbox, `source` = `/kranj/notify/staff/<subject>`, consumed by the
one fan-out path (handlers.py). The page checks the permission table before it writes the
outbox row (shared/permissions.py: `notify.notices.write` for the KS, `notify.notices.urgent`,
`notify.notices.city-wide`); notify's broker user carries those rights on the bus
(shared/senders.py), so the page is where they are decided.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select, update

from shared import clock
from shared.auth import Grant, Record, StaffPage, authorize, may
from shared.contracts import ALL_KS, KS_NAMES, NoticeRequested
from shared.contracts.notify import CHANNELS, NOTICE_REQUESTED, TOPICS
from shared.db import Database
from shared.i18n import format_datetime
from shared.models import new_id, utcnow
from shared.outbox import add_to_outbox
from shared.periodic import every

from . import notices
from .api import PreviewIn, delivery_log_of, notice_record, preview_of
from .models import Notice, ScheduledNotice
from .staff import (
    CHANNEL_LABELS,
    FAILED,
    RECIPIENTS,
    counts_by_state,
    ctx_of,
    euro,
    local_input,
    notice_rows,
    own_ks,
    page,
    record_of,
    scheduled_of,
    sent_notices,
    staff_source,
)
from .subscribe import TOPIC_LABELS

log = logging.getLogger("kranj.notify.staff")

notice_pages = APIRouter(tags=["staff pages"])
SCHEDULE_POLL_SECONDS = 15.0  # how often due scheduled notices are sent (tests lower it)


async def scheduled_record(request: Request) -> Record:
    async with ctx_of(request).db.session() as session:
        row = await session.get(ScheduledNotice, request.path_params["scheduled_id"])
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Načrtovanega obvestila ni. / No such scheduled notice.")
    return Record(ks=row.ks)


SEE_OTHER: dict[int | str, dict[str, Any]] = {
    303: {"description": "Done: on to the page that shows it (HTML forms post and get redirected)."}
}
FORM_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "The form again, with what to correct (HTML).", "content": {"text/html": {}}},
    **SEE_OTHER,
}

Write = Annotated[Grant, StaffPage("notify.notices.write")]
CancelScheduled = Annotated[Grant, StaffPage("notify.notices.write", record=scheduled_record)]
LogRead = Annotated[Grant, StaffPage("notify.deliveries.read", record=notice_record)]
Resend = Annotated[Grant, StaffPage("notify.deliveries.resend", record=notice_record)]


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
                topic=v["topic"],
                channels=self.channels,
                urgency=v["urgency"],
                url=v["url"] or None,
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
            claimed = await session.exec(
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


async def _notices_page(
    request: Request, grant: Grant, draft: Draft, *, done: str | None = None, status_code: int = 200
) -> HTMLResponse:
    db = ctx_of(request).db
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
    return page(request, "staff_notices.html", context, status_code)


DONE = {
    "poslano": "Obvestilo je poslano. Prejemniki ga dobijo v nekaj trenutkih; spodaj se pokaže, ko je obdelano.",
    "nacrtovano": "Obvestilo je načrtovano: poslano bo ob izbranem času.",
    "preklicano": "Načrtovano obvestilo je preklicano in ne bo poslano.",
}


@notice_pages.get(
    "/osebje/obvestila",
    response_class=HTMLResponse,
    summary="Notices of one's KS: write one, the scheduled and the sent ones with their counts (staff page)",
)
async def notices_page(request: Request, grant: Write, done: str | None = None) -> HTMLResponse:
    return await _notices_page(request, grant, Draft.blank(grant), done=DONE.get(done or ""))


@notice_pages.post(
    "/osebje/obvestila",
    response_class=HTMLResponse,
    summary="Preview a notice (korak=predogled), correct it (popravi), send it now (zdaj) or at its time (nacrtuj)",
    responses=FORM_ERRORS,
)
async def notices_post(request: Request, grant: Write) -> Response:
    ctx = ctx_of(request)
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
    return page(request, "staff_preview.html", context)


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


@notice_pages.post(
    "/osebje/obvestila/nacrtovana/{scheduled_id}/preklic",
    summary="Cancel a scheduled notice before it is sent (staff of its KS)",
    responses=SEE_OTHER,
)
async def cancel_scheduled(scheduled_id: str, request: Request, grant: CancelScheduled) -> Response:
    async with ctx_of(request).db.session() as session:
        await session.exec(
            update(ScheduledNotice)
            .where(col(ScheduledNotice.id) == scheduled_id, col(ScheduledNotice.sent_at).is_(None))
            .values(cancelled_at=utcnow())
        )
        await session.commit()
    return RedirectResponse("/osebje/obvestila?done=preklicano", status_code=status.HTTP_303_SEE_OTHER)


@notice_pages.get(
    "/osebje/obvestila/{notice_id}",
    response_class=HTMLResponse,
    summary="A notice's delivery log (staff of its KS; contacts masked)",
)
async def delivery_log_page(
    notice_id: str, request: Request, grant: LogRead, ponovno: int | None = None
) -> HTMLResponse:
    db = ctx_of(request).db
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
        "may_resend": may(grant, "notify.deliveries.resend", record_of(notice)) if notice else False,
        "requeued": ponovno,
        "channel_labels": CHANNEL_LABELS,
        "recipients": RECIPIENTS,
    }
    return page(request, "staff_deliveries.html", context)


@notice_pages.post(
    "/osebje/obvestila/{notice_id}/ponovno",
    summary="Send a notice's failed deliveries again (staff of its KS)",
    responses=SEE_OTHER,
)
async def resend_failed(notice_id: str, request: Request, grant: Resend) -> Response:
    ctx = ctx_of(request)
    count = await notices.resend_failed(ctx.db, notice_id)
    ctx.extra["worker"].wake()
    return RedirectResponse(f"/osebje/obvestila/{notice_id}?ponovno={count}", status_code=status.HTTP_303_SEE_OTHER)
