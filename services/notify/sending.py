"""Sending one claimed delivery and recording what became of it: render it (once per notice and
language of a batch), hand it to SMTP or the SMS gateway (or their file outboxes), and write the
outcome with its `notify.delivery.*` facts in one transaction, batched in group commits: one
`notify.delivery.outcomes` v2 page per commit (and, while KRANJ_DELIVERY_FACTS_V1 is true,
the deprecated `notify.delivery.sent|failed` v1 event per delivery).

`Sender` is what `DeliveryWorker` (services/notify/delivery.py: the loops, the claims, the
heartbeats) sends with; it holds no claims of its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime as email_date
from typing import Any

import sqlalchemy as sa

from shared import clock
from shared.contact import sms_number
from shared.contracts.notify import (
    DELIVERY_FAILED,
    DELIVERY_OUTCOMES,
    DELIVERY_SENT,
    OUTCOMES_PAGE_SIZE,
    DeliveryOutcomes,
)
from shared.db import Database, executemany
from shared.inbox import gather_turns
from shared.invitations import invitee_for, make_invitation
from shared.logs import mask_email, mask_phone
from shared.metrics import DELIVERIES, SEND_SECONDS
from shared.models import OutboxMessage, table_of, utcnow
from shared.outbox import OUTBOX_WRITTEN, outbox_row
from shared.settings import Settings

from . import mail
from .domain import retry_delay
from .models import Delivery, Notice
from .render import Renderer
from .transports import EmailTransport, PermanentFailure, SmsTransport, TemporaryFailure
from .window import Signal

log = logging.getLogger("kranj.notify.delivery")  # one logger for sending and its outcomes
SOURCE = "/kranj/notify"  # CloudEvent source of notify.delivery.* (the Bus's source for notify)


def without_contact(error: str | None, address: str | None) -> str | None:
    """A server's words may quote the recipient (`550 <ana@…>: no such user`): not in events.
    At most 1,000 characters (a page of outcomes stays well under a consumer's size limit)."""
    if not error or not address:
        return error[:1000] if error else error
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


class Sender:
    """Renders, sends and records deliveries that someone has claimed."""

    def __init__(
        self, settings: Settings, db: Database, renderer: Renderer, email: EmailTransport, sms: SmsTransport
    ) -> None:
        self.settings = settings
        self.db = db
        self.renderer = renderer
        self.email = email
        self.sms = sms
        # The metric children by label values, looked up once (`labels()` per delivery locks
        # and validates each time; make bench, issue 20 §4).
        self._send_seconds: dict[tuple[str, str, str], Any] = {}

    def _refusal(self, delivery: Due, notice: Notice | None) -> Outcome | None:
        """Why a delivery is not to be sent at all (`skipped`), or None."""
        if notice is None or not delivery.address:
            return Outcome("skipped", error="notice or contact no longer exists")
        if notice.valid_until is not None and notice.valid_until <= utcnow():
            return Outcome("skipped", error="expired before it could be sent")
        if delivery.channel == "sms":
            country, mobile = sms_number(delivery.address)
            if not self.settings.sms_allowed_country(country):
                return Outcome("skipped", error="SMS only to numbers of KRANJ_SMS_COUNTRY_CODES (stops SMS pumping)")
            if not mobile:  # the APIs refuse them too (422)
                return Outcome("skipped", error="SMS only to mobile numbers (not landline, premium-rate or toll-free)")
        return None

    def _personal(self, delivery: Due, notice: Notice) -> tuple[Notice, str | None]:
        """The notice as this recipient gets it (a survey invitation carries their own link) and
        their unsubscribe link. Personal (transactional) messages go to one person, not to
        followers: nothing to leave."""
        unsubscribe = (
            self.renderer.unsubscribe_url(delivery.subscriber_id, delivery.channel) if delivery.subscriber_id else None
        )
        if notice.kind == "survey" and notice.url and delivery.subscriber_id:
            notice = self._with_invitation(notice, delivery.subscriber_id)
        return notice, unsubscribe

    def _observe(self, channel: str, transport: str, status: str, started: float) -> None:
        key = (channel, transport, status)
        if (histogram := self._send_seconds.get(key)) is None:
            histogram = self._send_seconds[key] = SEND_SECONDS.labels(*key)
        histogram.observe(time.perf_counter() - started)

    @staticmethod
    def _failure(exc: Exception, delivery: Due) -> Outcome:
        """The outcome of an attempt that raised: what the transport said, or a bug, which must
        not lose the delivery (tried again later)."""
        if isinstance(exc, TemporaryFailure):
            return Outcome("failed-temporary", error=str(exc), retry_after=exc.retry_after)
        if isinstance(exc, PermanentFailure):
            return Outcome("failed-permanent", error=str(exc))
        log.error("unexpected error while sending", exc_info=exc, extra={"delivery_id": delivery.id})
        return Outcome("failed-temporary", error=f"{type(exc).__name__}: {exc}")

    async def _send_email(self, delivery: Due, notice: Notice | None, renderers: Renderers | None = None) -> Outcome:
        if (refusal := self._refusal(delivery, notice)) is not None:
            return refusal
        assert notice is not None and delivery.address is not None
        notice, unsubscribe = self._personal(delivery, notice)
        started = time.perf_counter()
        try:
            raw = self._email_bytes(delivery, notice, unsubscribe, renderers)
            if raw is not None:
                reference = await self.email.send_raw(raw[0], raw[1], delivery.address, delivery.id)
            else:
                reference = await self.email.send(self._email(delivery, notice, unsubscribe), delivery.id)
            outcome = Outcome("sent", reference=reference)
        except Exception as exc:  # noqa: BLE001 - _failure
            outcome = self._failure(exc, delivery)
        self._observe("email", self.email.transport, outcome.status, started)
        return outcome

    def _prepare_sms(self, delivery: Due, notice: Notice | None, renderers: Renderers) -> str | Outcome:
        """An SMS's text, with its recipient's own link, or the outcome that it is not sent.
        A batch's texts are prepared a few dozen at a time (SMS_PREPARE), apart from the
        requests: the same work interleaved with each request cost about a tenth more of
        notify's CPU per SMS (docs/scaling.md, "Session 19"). So a notice's expiry is judged
        at most that many SMS before the request: five seconds at KRANJ_SMS_PER_SECOND=10."""
        if (refusal := self._refusal(delivery, notice)) is not None:
            return refusal
        assert notice is not None
        try:
            notice, unsubscribe = self._personal(delivery, notice)
            return self._sms_text(delivery, notice, unsubscribe, renderers)
        except Exception as exc:  # noqa: BLE001 - _failure
            return self._failure(exc, delivery)

    async def _send_sms(self, delivery: Due, text: str) -> Outcome:
        """Hands a prepared SMS (`_prepare_sms`) to the gateway."""
        assert delivery.address is not None
        started = time.perf_counter()
        try:
            outcome = Outcome("sent", reference=await self.sms.send(delivery.address, text, delivery.id))
        except Exception as exc:  # noqa: BLE001 - _failure
            outcome = self._failure(exc, delivery)
        self._observe("sms", self.sms.transport, outcome.status, started)
        return outcome

    def _with_invitation(self, notice: Notice, subscriber_id: str) -> Notice:
        """A survey invitation carries a personal link: each invited resident answers once
        (shared.invitations; the survey never learns who the invitee is)."""
        survey_id = notice.source_id.split(":", 1)[0]
        token = make_invitation(self.settings, survey_id, invitee_for(self.settings, subscriber_id))
        separator = "&" if "?" in (notice.url or "") else "?"
        return notice.model_copy(update={"url": f"{notice.url}{separator}t={token}"})

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
        return renderers[key](unsubscribe_url)

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
        facts: list[dict[str, object]] = []  # notify.delivery.outcomes v2: pages of these
        v1 = self.settings.delivery_facts_v1
        counted: Counter[tuple[str, str]] = Counter()  # kranj_deliveries_total, added once per commit
        for delivery, outcome in results:
            status = outcome.status
            attempts = delivery.attempts + (1 if status != "skipped" else 0)
            values: dict[str, object] = {"status": status, "last_error": outcome.error, "claimed_by": None,
                                         "attempts": attempts}  # fmt: skip
            if status == "sent":
                values.update(sent_at=now, reference=outcome.reference, next_attempt_at=None)
            elif status == "failed-temporary" and attempts < self.settings.delivery_attempts:
                delay = retry_delay(attempts, self.settings.retry_base_seconds)
                if outcome.retry_after:
                    delay = max(delay, timedelta(seconds=outcome.retry_after))
                values["next_attempt_at"] = now + delay
            else:  # sent elsewhere, permanent, skipped, or out of attempts: final
                values["next_attempt_at"] = None
            keys = tuple(values)
            if (rows := updates.get(keys)) is None:
                rows = updates[keys] = []
            rows.append(dict(zip(_param_names(keys), values.values(), strict=True), b_id=delivery.id))
            final_failure = status.startswith("failed") and values["next_attempt_at"] is None
            if (status == "sent" or final_failure) and delivery.channel in ("email", "sms"):
                # notify.delivery.* in the same transaction as the status: no contact data in it.
                source, source_id = origins.get(delivery.notice_id, ("", ""))
                fact: dict[str, object] = {
                    "delivery_id": delivery.id,
                    "notice_id": delivery.notice_id,
                    "source": source,
                    "source_id": source_id,
                    "channel": delivery.channel,
                    "status": status,
                    "attempts": attempts,
                    "error": without_contact(outcome.error, delivery.address),
                    "at": now,
                }
                facts.append(fact)
                if v1:  # deprecated: one event per delivery (KRANJ_DELIVERY_FACTS_V1)
                    message_type = DELIVERY_SENT if status == "sent" else DELIVERY_FAILED
                    envelope = message_type.envelope(fact, source=SOURCE, subject=delivery.id)
                    outbox.append(outbox_row(message_type, envelope, at=now))
            counted[delivery.channel, status] += 1
            level = logging.INFO if status in ("sent", "skipped") else logging.WARNING
            if not log.isEnabledFor(level):
                continue
            contact = mask_email(delivery.address) if delivery.channel == "email" else mask_phone(delivery.address)
            log.log(
                level,
                "delivery %s",
                status,
                extra={
                    "delivery_id": delivery.id,
                    "notice_id": delivery.notice_id,
                    "channel": delivery.channel,
                    "to": contact,
                    "attempt": attempts,
                    "error": outcome.error,
                },
            )
        for (channel, status), count in counted.items():
            DELIVERIES.labels(channel, status).inc(count)
        for first in range(0, len(facts), OUTCOMES_PAGE_SIZE):  # one page per commit (a batch is 100)
            # The page validated as one (each outcome a model of its own cost a third more)
            page = DeliveryOutcomes.model_validate({"outcomes": facts[first : first + OUTCOMES_PAGE_SIZE]})
            outbox.append(outbox_row(DELIVERY_OUTCOMES, DELIVERY_OUTCOMES.envelope(page, source=SOURCE), at=now))
        statements = [(_outcome_update(keys), rows) for keys, rows in updates.items()]

        def work(conn: sa.Connection, info: dict[str, object]) -> None:
            for statement, rows in statements:
                executemany(conn, statement, rows)  # on SQLite, sqlite3's own executemany
            if outbox:  # notify.delivery.*, published by the outbox relay after commit
                executemany(conn, _OUTBOX_INSERT, outbox)
                info[OUTBOX_WRITTEN] = True

        await self.db.run(work)


_OUTBOX_INSERT = sa.insert(table_of(OutboxMessage))


@functools.lru_cache(maxsize=32)
def _param_names(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The bind parameters of `_outcome_update(keys)`'s values, named once per shape."""
    return tuple(f"v_{k}" for k in keys)


@functools.lru_cache(maxsize=32)
def _outcome_update(keys: tuple[str, ...]) -> sa.Update:
    """The UPDATE of one shape of outcome (which columns change), built once: building it
    for every group commit was a tenth of recording one (make bench, issue 20 §4)."""
    table = table_of(Delivery)
    return sa.update(table).where(table.c.id == sa.bindparam("b_id")).values({k: sa.bindparam(f"v_{k}") for k in keys})


def signal_of(outcome: Outcome) -> Signal:
    """What an SMS's outcome says about the gateway's load: a temporary failure (429, 5xx,
    timeout, unreachable) is congestion; a refusal of one number or a skip says nothing."""
    if outcome.status == "sent":
        return Signal.OK
    if outcome.status == "failed-temporary":
        return Signal.CONGESTION
    return Signal.NEUTRAL


class GroupCommit:
    """Records outcomes in as few transactions as the database allows: what is pending, with
    what becomes ready over the next turns of the event loop (`gather_turns`), is committed
    at once, and what arrives meanwhile joins the next commit.

    `add` returns once its outcome is committed (or raises what the commit raised): an email's
    connection sends its next only then. `submit` does not wait (SMS): a task commits what is
    pending, after `linger` seconds (answers of a gateway 100 ms away arrive one by one: a
    commit each cost more CPU than the request itself; make bench, issue 20 §3) or as soon as
    a page of outcomes is pending; `drain` commits the rest at once, waits for everything
    submitted and raises the first failure."""

    def __init__(
        self,
        record: Callable[[list[tuple[Due, Outcome]]], Awaitable[None]],
        *,
        linger: float = 0.0,
        page: int = OUTCOMES_PAGE_SIZE,
    ) -> None:
        self._record = record
        self._linger = linger
        self._page = page
        self._pending: list[tuple[tuple[Due, Outcome], asyncio.Future[None] | None]] = []
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._hurry: asyncio.Future[None] | None = None  # set: stop lingering, commit now
        self._draining = False  # nothing more is coming: no more lingering
        self._failure: Exception | None = None

    async def add(self, result: tuple[Due, Outcome]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((result, done))
        if not self._busy:
            self._busy = True
            await self._commit_pending()
        await done

    def submit(self, result: tuple[Due, Outcome]) -> None:
        self._pending.append((result, None))
        if not self._busy:
            self._busy = True
            self._task = asyncio.create_task(self._commit_pending(self._linger), name="notify-group-commit")
        elif len(self._pending) >= self._page:
            self._commit_now()

    async def drain(self) -> None:
        self._draining = True
        self._commit_now()
        while self._task is not None and not self._task.done():
            # shielded: a stop while waiting must not cut a commit of what was already sent
            await asyncio.shield(self._task)
        if self._failure is not None:
            raise self._failure

    def _commit_now(self) -> None:
        if self._hurry is not None and not self._hurry.done():
            self._hurry.set_result(None)

    async def _linger_for(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        hurry = self._hurry = loop.create_future()
        timer = loop.call_later(seconds, self._commit_now)
        try:
            await hurry
        finally:
            timer.cancel()
            self._hurry = None

    async def _commit_pending(self, linger: float = 0.0) -> None:
        try:
            while self._pending:
                if linger and not self._draining and len(self._pending) < self._page:
                    await self._linger_for(linger)
                if not self._draining:
                    # Outcomes ready in the next turns join this commit: recorded on the loop's
                    # own thread (Database.run), a commit gives no time for others to arrive
                    # meanwhile, and a commit per email cost more than the email.
                    await gather_turns(lambda: len(self._pending), self._page)
                batch, self._pending = self._pending, []
                try:
                    await self._record([r for r, _ in batch])
                except Exception as exc:  # noqa: BLE001 - each waiting sender learns it, drain raises it
                    self._failure = self._failure or exc
                    for _, f in batch:
                        if f is not None and not f.done():
                            f.set_exception(exc)
                else:
                    for _, f in batch:
                        if f is not None and not f.done():
                            f.set_result(None)
        finally:
            self._busy = False
