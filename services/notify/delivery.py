"""Sending: a worker claims due deliveries, renders them, hands them to SMTP or the SMS
gateway (or to file outboxes when those are not configured) and records the outcome.

A delivery is claimed by one live worker: status `sending`, `claimed_by` = the worker's id
in `delivery_workers`, `next_attempt_at` = lease end. Each process's worker heartbeats in a
task of its own (every sixth of KRANJ_DELIVERY_STALE_SECONDS): a slow but living sender
keeps its claims however long it takes. The claims of a worker whose heartbeat is older
than KRANJ_DELIVERY_STALE_SECONDS (killed, frozen, its host gone) are claimed again at once,
before anything else; the lease (KRANJ_DELIVERY_LEASE_SECONDS) is the last resort, for
claims that name no worker. A worker that has not managed to heartbeat for
most of that time sends nothing more until it has. Taking a claim over may repeat the email
that was in flight at the dead worker (at most one per SMTP connection); for SMS the gateway
receives the same `Idempotency-Key` (the delivery id), so it cannot become a second text
message. A graceful stop hands its claims back and deletes its worker row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime as email_date
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select, update

from shared import clock
from shared.contact import is_mobile
from shared.contracts.notify import DELIVERY_FAILED, DELIVERY_SENT, DeliveryOutcome
from shared.db import Database
from shared.invitations import invitee_for, make_invitation
from shared.logs import mask_email, mask_phone
from shared.metrics import DELIVERIES, SEND_SECONDS
from shared.models import OutboxMessage, new_id, utcnow
from shared.outbox import OUTBOX_WRITTEN, outbox_row
from shared.settings import Settings

from . import mail
from .domain import quiet_until, retry_delay
from .models import Delivery, DeliveryWorkerRow, Notice
from .ratelimit import RateLimiter
from .render import Renderer
from .transports import EmailTransport, PermanentFailure, SmsTransport, TemporaryFailure
from .window import AdaptiveWindow, Signal

log = logging.getLogger("kranj.notify.delivery")
DUE_STATES = ("queued", "held", "failed-temporary", "sending")
CHANNELS = ("email", "sms")
LEASE = timedelta(minutes=5)  # default of KRANJ_DELIVERY_LEASE_SECONDS
SOURCE = "/kranj/notify"  # CloudEvent source of notify.delivery.* (the Bus's source for notify)


def _without_contact(error: str | None, address: str | None) -> str | None:
    """A server's words may quote the recipient (`550 <ana@…>: no such user`): not in events."""
    if not error or not address:
        return error
    return re.sub(re.escape(address), "[naslov]", error, flags=re.IGNORECASE)[:1000]


# Per batch, one channel: (notice id, language) -> that notice's renderer for one recipient
# (Renderer.email_renderer or Renderer.sms_renderer).
Renderers = dict[tuple[str, str], Callable[..., Any]]


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed delivery: the columns sending needs, read without the ORM (a fan-out
    claims tens of thousands)."""

    COLUMNS = ("id", "notice_id", "subscriber_id", "channel", "address", "language", "attempts")
    id: str
    notice_id: str
    subscriber_id: str | None
    channel: str
    address: str | None
    language: str
    attempts: int


@dataclass
class Outcome:
    status: str
    reference: str | None = None
    error: str | None = None
    retry_after: float | None = None


class DeliveryWorker:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        renderer: Renderer,
        email: EmailTransport,
        sms: SmsTransport,
        *,
        batch: int = 100,
        poll: float = 1.0,
        sms_window: AdaptiveWindow | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.renderer = renderer
        self.email = email
        self.sms = sms
        self.batch = batch
        self.poll = poll
        # Email and SMS are claimed and sent by a loop each: one slow channel never holds up the other.
        self._wakes = {channel: asyncio.Event() for channel in CHANNELS}
        # How many SMS are in flight follows the gateway (services/notify/window.py).
        self.sms_window = sms_window or AdaptiveWindow()
        self.lease = timedelta(seconds=settings.delivery_lease_seconds) if settings.delivery_lease_seconds else LEASE
        self._stopping = False  # shutdown: send nothing new, finish and record what is in flight
        # Claims belong to a live worker (delivery_workers): registered by the first heartbeat
        # of run(); a worker used without run() (tests) claims under the lease alone.
        self.id = new_id()
        # Never longer than the lease: what a dead worker held is free after the lease at the latest.
        self.stale = min(timedelta(seconds=settings.delivery_stale_seconds), self.lease)
        self.heartbeat_seconds = self.stale.total_seconds() / 6
        self._registered = False
        self._beat_ok: float | None = None  # time.monotonic() of the last heartbeat that was committed
        # Per-channel rate limits (KRANJ_SMS_PER_SECOND, KRANJ_EMAIL_PER_SECOND), per process.
        self._limits = {"email": RateLimiter(settings.email_per_second), "sms": RateLimiter(settings.sms_per_second)}

    def wake(self) -> None:
        for event in self._wakes.values():
            event.set()

    async def run(self) -> None:
        heart: asyncio.Task[None] | None = None
        try:
            while True:  # registered before the first claim (a database that is down: again shortly)
                try:
                    await self.heartbeat()
                    break
                except Exception:  # noqa: BLE001
                    log.exception("delivery worker could not register; trying again")
                    await asyncio.sleep(self.heartbeat_seconds)
            heart = asyncio.create_task(self._heartbeats(), name="notify-delivery-heartbeat")
            try:
                await self.follow_quiet_hours()
            except Exception:  # noqa: BLE001 - the claim follows the quiet hours in force anyway
                log.exception("could not re-time held deliveries to the quiet hours in force")
            loops = asyncio.gather(*(self._run_channel(channel) for channel in CHANNELS))
            try:
                await asyncio.shield(loops)
            except asyncio.CancelledError:
                # Shutdown (SIGTERM): never cut between a hand-over and its record (that would send
                # it again). Nothing new is sent; what is in flight finishes and is recorded (the
                # heartbeat goes on meanwhile); the rest of the claimed batch is released to the
                # next worker at once.
                self._stopping = True
                self.wake()
                try:
                    await asyncio.wait_for(loops, timeout=self.settings.graceful_timeout)
                except Exception:  # noqa: BLE001 - out of time or failed: released below all the same
                    log.warning("delivery worker did not finish its batch in time; its claims are released")
                raise
        finally:
            if heart is not None:
                heart.cancel()
                await asyncio.gather(heart, return_exceptions=True)
            if self._registered:
                try:
                    await self.retire()
                except Exception:  # noqa: BLE001 - its heartbeat stops: the others take over when it is stale
                    log.exception("delivery worker could not hand its claims back")
            await self.email.close()
            await self.sms.close()

    def _alive(self) -> bool:
        """May this worker claim and send? Not once its last committed heartbeat is so old that
        the others may take it as gone (a process frozen, the database out of reach): it would
        send what they are taking over. A worker that never registered (run_once in tests) may."""
        if not self._registered:
            return True
        assert self._beat_ok is not None
        margin = self.stale.total_seconds() - self.heartbeat_seconds
        return time.monotonic() - self._beat_ok < margin

    async def _heartbeats(self) -> None:
        """Its own task: sending, however slow, never holds the heartbeat up."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - tried again at the next beat; the claims go stale meanwhile
                log.warning("delivery worker heartbeat failed", exc_info=True)

    async def heartbeat(self) -> None:
        """Register (the first time, or again after its row was purged) or heartbeat: one row,
        whatever this worker holds. Rows of workers gone longer than the lease are purged at
        registration."""
        now = utcnow()
        workers = DeliveryWorkerRow.__table__  # type: ignore[attr-defined]
        beat = sa.update(workers).where(workers.c.id == self.id).values(heartbeat_at=now)
        register = sa.insert(workers).values(
            id=self.id, host=socket.gethostname()[:255], pid=os.getpid(), started_at=now, heartbeat_at=now
        )
        purge = sa.delete(workers).where(workers.c.heartbeat_at < now - max(self.lease, self.stale))
        first = not self._registered

        def work(conn: sa.Connection, _info: dict[str, object]) -> None:
            if not conn.execute(beat).rowcount:
                if first:
                    conn.execute(purge)
                conn.execute(register)

        await self.db.run(work)
        self._beat_ok = time.monotonic()
        if first:
            self._registered = True
            log.info("delivery worker registered", extra={"worker_id": self.id})

    async def retire(self) -> None:
        """Graceful stop: hand back what this worker still holds (due at once) and leave."""
        workers = DeliveryWorkerRow.__table__  # type: ignore[attr-defined]
        deliveries = Delivery.__table__  # type: ignore[attr-defined]
        release = (
            sa.update(deliveries)
            .where(deliveries.c.claimed_by == self.id, deliveries.c.status == "sending")
            .values(next_attempt_at=utcnow(), claimed_by=None)
        )
        leave = sa.delete(workers).where(workers.c.id == self.id)

        def work(conn: sa.Connection, _info: dict[str, object]) -> None:
            conn.execute(release)
            conn.execute(leave)

        await self.db.run(work)
        self._registered = False

    async def _run_channel(self, channel: str) -> None:
        wake = self._wakes[channel]
        while not self._stopping:
            wake.clear()
            try:
                done = await self.run_once(channel) if self._alive() else 0
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery cycle failed", extra={"channel": channel})
                done = 0
            if done >= self.batch:
                continue
            try:
                await asyncio.wait_for(wake.wait(), timeout=self.poll)
            except TimeoutError:
                pass

    async def run_once(self, channel: str | None = None) -> int:
        """Claim, send and record one batch of due deliveries (of one channel, or of each);
        returns how many were handled."""
        if channel is None:
            return sum(await asyncio.gather(*(self.run_once(c) for c in CHANNELS)))
        claimed = await self._claim(channel)
        if not claimed:
            return 0
        notice_ids = {d.notice_id for d in claimed}
        async with self.db.serial(), self.db.session() as session:
            notices = {
                n.id: n for n in (await session.exec(select(Notice).where(col(Notice.id).in_(notice_ids)))).all()
            }
        origins = {n.id: (n.source, n.source_id) for n in notices.values()}

        # Each delivery is recorded as soon as SMTP or the gateway took it: a worker killed
        # mid-batch can then repeat only what was in flight (an email: SMTP has no idempotency
        # key; an SMS: the gateway gets the same Idempotency-Key), never the whole batch.
        if channel == "email":
            renderers: Renderers = {}  # one rendering per notice and language
            queue = iter(claimed)
            # Each connection sends its next email only after the last one is recorded (at most
            # one repeat per connection after a crash); the connections share group commits.
            recorded = _GroupCommit(lambda results: self._record(results, origins))

            async def send_emails() -> None:  # one per SMTP connection: send, record, next
                for d in queue:
                    if self._stopping or not self._alive():
                        break
                    await self._limits["email"].acquire()
                    outcome = await self._send_one(d, notices.get(d.notice_id), renderers)
                    await recorded.add((d, outcome))

            connections = range(min(self.email.connections, len(claimed)))
            failures = [
                r
                for r in await asyncio.gather(*(send_emails() for _ in connections), return_exceptions=True)
                if isinstance(r, BaseException)
            ]
            if failures:  # every connection has stopped first: nothing is left sending behind the next claim
                raise failures[0]
            await self._release_unsent(claimed)
            return len(claimed)

        # SMS go out as many at a time as the gateway's window allows; their outcomes are
        # recorded in group commits (whatever finished while the previous commit ran goes
        # into the next one).
        group = _GroupCommit(lambda results: self._record(results, origins))
        texts: Renderers = {}  # one fitting per notice and language

        async def send_sms_one(d: Due) -> None:
            async with self.sms_window.slot():
                if self._stopping or not self._alive():
                    return
                await self._limits["sms"].acquire()
                started = time.perf_counter()
                outcome = await self._send_one(d, notices.get(d.notice_id), texts)
                self.sms_window.record(_signal(outcome), time.perf_counter() - started)
            await group.add((d, outcome))

        failures = [
            r
            for r in await asyncio.gather(*(send_sms_one(d) for d in claimed), return_exceptions=True)
            if isinstance(r, BaseException)
        ]
        if failures:
            raise failures[0]
        await self._release_unsent(claimed)
        return len(claimed)

    async def _release_unsent(self, claimed: list[Due]) -> None:
        """On shutdown, or when this worker may be taken as gone (`_alive`), hand the claimed
        deliveries it did not send back at once (not after the lease); those another worker
        has taken over meanwhile stay theirs."""
        if not self._stopping and self._alive():
            return
        mine = Delivery.claimed_by == self.id if self._registered else col(Delivery.claimed_by).is_(None)
        release = (
            update(Delivery)
            .where(col(Delivery.id).in_([d.id for d in claimed]), Delivery.status == "sending", mine)
            .values(next_attempt_at=utcnow(), claimed_by=None)
        )
        await self.db.run(lambda conn, _info: conn.execute(release))

    async def follow_quiet_hours(self) -> int:
        """At start: held deliveries wait for the end of the quiet hours in force NOW
        (`KRANJ_QUIET_HOURS`), not for a time computed under the setting they were held by;
        with no quiet hours now they are due at once. Returns how many were re-timed."""
        now = utcnow()
        until = quiet_until(now, self.settings.quiet_window) or now
        table = Delivery.__table__  # type: ignore[attr-defined]
        statement = (
            sa.update(table)
            .where(table.c.status == "held", table.c.next_attempt_at != until)
            .values(next_attempt_at=until)
        )

        def work(conn: sa.Connection, _info: dict[str, object]) -> int:
            return int(conn.execute(statement).rowcount or 0)

        count = await self.db.run(work)
        if count:
            log.info(
                "held deliveries follow the quiet hours in force", extra={"count": count, "until": until.isoformat()}
            )
        return count

    async def _claim(self, channel: str) -> list[Due]:
        now = utcnow()
        table = Delivery.__table__  # type: ignore[attr-defined]
        c = table.c
        # Held deliveries follow the quiet hours in force now, whatever time they were held
        # until: all due when it is not quiet now, none while it is.
        quiet_now = quiet_until(now, self.settings.quiet_window) is not None
        due = sa.or_(
            sa.and_(c.status.in_(["queued", "failed-temporary"]), c.next_attempt_at <= now),
            # The lease, last resort: claims that name no worker (made before notify_0009, or by
            # a worker used without run()). A worker's claims are free once it is stale (below).
            sa.and_(c.status == "sending", c.next_attempt_at <= now, c.claimed_by.is_(None)),
            sa.and_(c.status == "held", sa.false() if quiet_now else sa.true()),
        )
        columns = [c[name] for name in Due.COLUMNS]
        query = sa.select(*columns).where(c.channel == channel, due).order_by(c.next_attempt_at).limit(self.batch)
        # First what workers that stopped heartbeating had claimed (killed, frozen, their host
        # gone): they were first in line, and their lease may be minutes away.
        workers = DeliveryWorkerRow.__table__  # type: ignore[attr-defined]
        live = sa.select(workers.c.id).where(workers.c.heartbeat_at >= now - self.stale)
        orphaned = (
            sa.select(*columns)
            .where(c.channel == channel, c.status == "sending", c.claimed_by.is_not(None), c.claimed_by.not_in(live))
            .order_by(c.next_attempt_at)
            .limit(self.batch)
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
            orphaned = orphaned.with_for_update(skip_locked=True)
        claim = sa.update(table).where(c.id.in_(sa.bindparam("ids", expanding=True)))
        claim = claim.values(
            status="sending", next_attempt_at=now + self.lease, claimed_by=self.id if self._registered else None
        )

        def work(conn: sa.Connection, _info: dict[str, object]) -> list[Due]:
            rows = [Due(*row) for row in conn.execute(orphaned).all()]
            if rows:
                log.warning(
                    "claimed again from a delivery worker that stopped heartbeating",
                    extra={"channel": channel, "count": len(rows)},
                )
                rest = query.where(c.id.not_in([r.id for r in rows])).limit(self.batch - len(rows))
                rows += [Due(*row) for row in conn.execute(rest).all()] if len(rows) < self.batch else []
            else:
                rows = [Due(*row) for row in conn.execute(query).all()]
            if rows:
                conn.execute(claim, {"ids": [r.id for r in rows]})
            return rows

        return await self.db.run(work)

    async def _send_one(
        self,
        delivery: Due,
        notice: Notice | None,
        renderers: Renderers | None = None,
    ) -> Outcome:
        if notice is None or not delivery.address:
            return Outcome("skipped", error="notice or contact no longer exists")
        if notice.valid_until is not None and notice.valid_until <= utcnow():
            return Outcome("skipped", error="expired before it could be sent")
        if delivery.channel == "sms" and not self.settings.sms_allowed(delivery.address):
            return Outcome("skipped", error="SMS only to numbers of KRANJ_SMS_COUNTRY_CODES (stops SMS pumping)")
        if delivery.channel == "sms" and not is_mobile(delivery.address):  # the APIs refuse them too (422)
            return Outcome("skipped", error="SMS only to mobile numbers (not landline, premium-rate or toll-free)")
        # Personal (transactional) messages go to one person, not to followers: nothing to leave.
        unsubscribe = (
            self.renderer.unsubscribe_url(delivery.subscriber_id, delivery.channel) if delivery.subscriber_id else None
        )
        transport = self.email.transport if delivery.channel == "email" else self.sms.transport
        if notice.kind == "survey" and notice.url and delivery.subscriber_id:
            notice = self._with_invitation(notice, delivery.subscriber_id)
        started = time.perf_counter()
        outcome = await self._hand_over(delivery, notice, unsubscribe, renderers)
        SEND_SECONDS.labels(delivery.channel, transport, outcome.status).observe(time.perf_counter() - started)
        return outcome

    def _with_invitation(self, notice: Notice, subscriber_id: str) -> Notice:
        """A survey invitation carries a personal link: each invited resident answers once
        (shared.invitations; the survey never learns who the invitee is)."""
        survey_id = notice.source_id.split(":", 1)[0]
        token = make_invitation(self.settings, survey_id, invitee_for(self.settings, subscriber_id))
        separator = "&" if "?" in (notice.url or "") else "?"
        return notice.model_copy(update={"url": f"{notice.url}{separator}t={token}"})

    async def _hand_over(
        self,
        delivery: Due,
        notice: Notice,
        unsubscribe: str | None,
        renderers: Renderers | None = None,
    ) -> Outcome:
        assert delivery.address is not None
        try:
            if delivery.channel == "email":
                raw = self._email_bytes(delivery, notice, unsubscribe, renderers)
                if raw is not None:
                    reference = await self.email.send_raw(raw[0], raw[1], delivery.address, delivery.id)
                else:
                    reference = await self.email.send(self._email(delivery, notice, unsubscribe), delivery.id)
            elif delivery.channel == "sms":
                text = self._sms_text(delivery, notice, unsubscribe, renderers)
                reference = await self.sms.send(delivery.address, text, delivery.id)
            else:
                return Outcome("failed-permanent", error=f"unknown channel {delivery.channel}")
        except TemporaryFailure as exc:
            return Outcome("failed-temporary", error=str(exc), retry_after=exc.retry_after)
        except PermanentFailure as exc:
            return Outcome("failed-permanent", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the delivery
            log.exception("unexpected error while sending", extra={"delivery_id": delivery.id})
            return Outcome("failed-temporary", error=f"{type(exc).__name__}: {exc}")
        return Outcome("sent", reference=reference)

    def _email_bytes(
        self,
        delivery: Due,
        notice: Notice,
        unsubscribe_url: str | None,
        renderers: Renderers | None,
    ) -> tuple[bytes, str] | None:
        """The message `_email` builds, as bytes (services.notify.mail), with the notice's
        templates rendered once per batch; None where only the `email` package will do."""
        assert delivery.address is not None
        if renderers is None or notice.kind == "survey":  # survey links differ per resident
            rendered = self.renderer.email(notice, delivery.language, unsubscribe_url)
        else:
            key = (notice.id, delivery.language)
            if key not in renderers:
                renderers[key] = self.renderer.email_renderer(notice, delivery.language)
            manage_url = (
                self.renderer.manage_url(delivery.subscriber_id) if unsubscribe_url and delivery.subscriber_id else None
            )
            rendered = renderers[key](unsubscribe_url, manage_url)
        return mail.build(
            mail_from=self.settings.mail_from,
            to=delivery.address,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=f"<{delivery.id}@kranj-za-vse.si>",  # stable per delivery
            language=rendered.language,  # what it is written in, not what the recipient reads
            unsubscribe_url=unsubscribe_url,
        )

    def _sms_text(self, delivery: Due, notice: Notice, unsubscribe_url: str | None, renderers: Renderers | None) -> str:
        """The text `Renderer.sms` gives, fitted once per notice and language of a batch."""
        if renderers is None or notice.kind == "survey":  # survey links differ per resident
            return self.renderer.sms(notice, delivery.language, unsubscribe_url)
        key = (notice.id, delivery.language)
        if key not in renderers:
            renderers[key] = self.renderer.sms_renderer(notice, delivery.language)
        return renderers[key](unsubscribe_url)  # type: ignore[no-any-return]

    def _email(self, delivery: Due, notice: Notice, unsubscribe_url: str | None) -> EmailMessage:
        rendered = self.renderer.email(notice, delivery.language, unsubscribe_url)
        msg = EmailMessage(policy=mail.POLICY)  # encoded words of at most 75 characters
        msg["From"] = self.settings.mail_from
        msg["To"] = delivery.address
        msg["Subject"] = rendered.subject
        msg["Date"] = email_date(clock.now())
        msg["Message-ID"] = f"<{delivery.id}@kranj-za-vse.si>"  # stable per delivery
        if unsubscribe_url:
            msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        msg["Content-Language"] = rendered.language  # after set_content, which drops Content-* headers
        return msg

    async def _record(self, results: list[tuple[Due, Outcome]], origins: dict[str, tuple[str, str]]) -> None:
        now = utcnow()
        # One executemany per shape of change and one for the outbox rows: a batch of
        # outcomes costs a few statements, not a few per delivery.
        updates: dict[tuple[str, ...], list[dict[str, object]]] = {}
        outbox: list[dict[str, object]] = []
        for delivery, outcome in results:
            values: dict[str, object] = {"status": outcome.status, "last_error": outcome.error, "claimed_by": None}
            attempts = delivery.attempts + (1 if outcome.status != "skipped" else 0)
            values["attempts"] = attempts
            if outcome.status == "sent":
                values.update(sent_at=now, reference=outcome.reference, next_attempt_at=None)
            elif outcome.status == "failed-temporary" and attempts < self.settings.delivery_attempts:
                delay = retry_delay(attempts, self.settings.retry_base_seconds)
                if outcome.retry_after:
                    delay = max(delay, timedelta(seconds=outcome.retry_after))
                values["next_attempt_at"] = now + delay
            else:  # sent elsewhere, permanent, skipped, or out of attempts: final
                values["next_attempt_at"] = None
            updates.setdefault(tuple(values), []).append(
                {"b_id": delivery.id, **{f"v_{k}": v for k, v in values.items()}}
            )
            final_failure = outcome.status.startswith("failed") and values["next_attempt_at"] is None
            if (outcome.status == "sent" or final_failure) and delivery.channel in ("email", "sms"):
                # notify.delivery.* in the same transaction as the status: no contact data in it.
                source, source_id = origins.get(delivery.notice_id, ("", ""))
                message_type = DELIVERY_SENT if outcome.status == "sent" else DELIVERY_FAILED
                envelope = message_type.envelope(
                    DeliveryOutcome(
                        delivery_id=delivery.id,
                        notice_id=delivery.notice_id,
                        source=source,
                        source_id=source_id,
                        channel=delivery.channel,  # type: ignore[arg-type]
                        status=outcome.status,  # type: ignore[arg-type]
                        attempts=attempts,
                        error=_without_contact(outcome.error, delivery.address),
                        at=now,
                    ),
                    source=SOURCE,
                    subject=delivery.id,
                )
                outbox.append(outbox_row(message_type, envelope, at=now))
            DELIVERIES.labels(delivery.channel, outcome.status).inc()
            level = logging.INFO if outcome.status in ("sent", "skipped") else logging.WARNING
            if not log.isEnabledFor(level):
                continue
            contact = mask_email(delivery.address) if delivery.channel == "email" else mask_phone(delivery.address)
            log.log(
                level,
                "delivery %s",
                outcome.status,
                extra={
                    "delivery_id": delivery.id,
                    "notice_id": delivery.notice_id,
                    "channel": delivery.channel,
                    "to": contact,
                    "attempt": attempts,
                    "error": outcome.error,
                },
            )
        table = Delivery.__table__  # type: ignore[attr-defined]
        statements = [
            (
                sa.update(table)
                .where(table.c.id == sa.bindparam("b_id"))
                .values({k: sa.bindparam(f"v_{k}") for k in keys}),
                rows,
            )
            for keys, rows in updates.items()
        ]

        def work(conn: sa.Connection, info: dict[str, object]) -> None:
            for statement, rows in statements:
                conn.execute(statement, rows)
            if outbox:  # notify.delivery.*, published by the outbox relay after commit
                conn.execute(sa.insert(OutboxMessage.__table__), outbox)  # type: ignore[attr-defined]
                info[OUTBOX_WRITTEN] = True

        await self.db.run(work)


def _signal(outcome: Outcome) -> Signal:
    """What an SMS's outcome says about the gateway's load: a temporary failure (429, 5xx,
    timeout, unreachable) is congestion; a refusal of one number or a skip says nothing."""
    if outcome.status == "sent":
        return Signal.OK
    if outcome.status == "failed-temporary":
        return Signal.CONGESTION
    return Signal.NEUTRAL


class _GroupCommit:
    """Records outcomes in as few transactions as the database allows: the first caller
    commits what is pending, callers arriving meanwhile join the next commit. `add` returns
    once its outcome is committed (or raises what the commit raised)."""

    def __init__(self, record: Callable[[list[tuple[Due, Outcome]]], Awaitable[None]]) -> None:
        self._record = record
        self._pending: list[tuple[tuple[Due, Outcome], asyncio.Future[None]]] = []
        self._busy = False

    async def add(self, result: tuple[Due, Outcome]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((result, done))
        if not self._busy:
            self._busy = True
            try:
                while self._pending:
                    batch, self._pending = self._pending, []
                    try:
                        await self._record([r for r, _ in batch])
                    except Exception as exc:  # noqa: BLE001 - each waiting sender learns it
                        for _, f in batch:
                            if not f.done():
                                f.set_exception(exc)
                    else:
                        for _, f in batch:
                            if not f.done():
                                f.set_result(None)
            finally:
                self._busy = False
        await done
