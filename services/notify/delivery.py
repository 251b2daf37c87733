"""Sending: a worker claims due deliveries, renders them, hands them to SMTP or the SMS
gateway (or to file outboxes when those are not configured) and records the outcome.

A delivery is claimed with a lease (status `sending`, `next_attempt_at` = lease end): a
worker that dies mid-send leaves it to be claimed again after the lease. That may repeat
one email; for SMS the gateway receives the same `Idempotency-Key` (the delivery id), so
it cannot become a second text message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime as email_date
from pathlib import Path

import aiosmtplib
import httpx
from sqlmodel import col, select, update

from shared.bus import add_to_outbox
from shared.contracts.notify import DELIVERY_FAILED, DELIVERY_SENT, DeliveryOutcome
from shared.db import Database
from shared.invitations import invitee_for, make_invitation
from shared.logs import mask_email, mask_phone
from shared.metrics import DELIVERIES, SEND_SECONDS
from shared.models import utcnow
from shared.settings import Settings

from .domain import retry_delay
from .models import Delivery, Notice
from .ratelimit import RateLimiter
from .render import Renderer

log = logging.getLogger("kranj.notify.delivery")
DUE_STATES = ("queued", "held", "failed-temporary", "sending")
LEASE = timedelta(minutes=5)  # default of KRANJ_DELIVERY_LEASE_SECONDS
SOURCE = "/kranj/notify"  # CloudEvent source of notify.delivery.* (the Bus's source for notify)


class TemporaryFailure(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    pass


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class EmailSender:
    """SMTP with one reused connection; `.eml` files under the data dir when no host is set."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.outbox = settings.outbox_dir / "email"

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            username=s.smtp_user,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=30,
        )
        await smtp.connect()
        self._smtp = smtp
        return smtp

    async def send(self, message: EmailMessage, delivery_id: str) -> str:
        if not self.settings.smtp_host:
            await asyncio.to_thread(_atomic_write, self.outbox / f"{delivery_id}.eml", bytes(message))
            return f"file:{delivery_id}.eml"
        async with self._lock:  # one SMTP conversation at a time on the shared connection
            try:
                smtp = await self._connection()
                errors, response = await smtp.send_message(message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [r.code for r in exc.recipients]
                if any(400 <= c < 500 for c in codes):
                    raise TemporaryFailure(f"recipient refused for now: {codes}") from exc
                raise PermanentFailure(f"recipient refused: {codes}") from exc
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset()
                if 400 <= exc.code < 500:
                    raise TemporaryFailure(f"SMTP {exc.code}: {exc.message}") from exc
                raise PermanentFailure(f"SMTP {exc.code}: {exc.message}") from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await self._reset()
                raise TemporaryFailure(f"SMTP unavailable: {type(exc).__name__}: {exc}") from exc
        return response[:200] if response else "sent"

    async def _reset(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass
        self._smtp = None

    async def close(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            try:
                await self._smtp.quit()
            except Exception:  # noqa: BLE001
                self._smtp.close()
        self._smtp = None


class SmsSender:
    """The HTTP SMS gateway of CONTRACT.md; `sms.jsonl` under the data dir when not configured."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outbox = settings.outbox_dir / "sms.jsonl"
        self._client: httpx.AsyncClient | None = None
        self._file_lock = asyncio.Lock()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"User-Agent": "kranj-za-vse-notify/1.0"}
            if self.settings.sms_gateway_token:
                headers["Authorization"] = f"Bearer {self.settings.sms_gateway_token.get_secret_value()}"
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(15.0, connect=5.0),
                headers=headers,
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
            )
        return self._client

    async def send(self, to: str, text: str, delivery_id: str) -> str:
        payload = {"to": to, "text": text, "reference": delivery_id}
        if not self.settings.sms_gateway_url:
            line = json.dumps({**payload, "at": utcnow().isoformat()}, ensure_ascii=False) + "\n"
            async with self._file_lock:
                await asyncio.to_thread(_append, self.outbox, line)
            return f"file:{delivery_id}"
        try:
            response = await self._http().post(
                self.settings.sms_gateway_url, json=payload, headers={"Idempotency-Key": delivery_id}
            )
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"gateway unreachable: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return _gateway_reference(response) or delivery_id
        if response.status_code == 429 or response.status_code >= 500:
            raise TemporaryFailure(
                f"gateway answered {response.status_code}", retry_after=_retry_after(response.headers.get("retry-after"))
            )
        raise PermanentFailure(f"gateway refused with {response.status_code}: {response.text[:200]}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _gateway_reference(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        for key in ("id", "reference", "message_id"):
            if isinstance(body.get(key), (str, int)):
                return str(body[key])[:200]
    return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _without_contact(error: str | None, address: str | None) -> str | None:
    """A server's words may quote the recipient (`550 <ana@…>: no such user`): not in events."""
    if not error or not address:
        return error
    return re.sub(re.escape(address), "[naslov]", error, flags=re.IGNORECASE)[:1000]


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
        email: EmailSender,
        sms: SmsSender,
        *,
        batch: int = 100,
        poll: float = 1.0,
        sms_concurrency: int = 10,
    ) -> None:
        self.settings = settings
        self.db = db
        self.renderer = renderer
        self.email = email
        self.sms = sms
        self.batch = batch
        self.poll = poll
        self._wake = asyncio.Event()
        self._sms_slots = asyncio.Semaphore(sms_concurrency)
        self.lease = timedelta(seconds=settings.delivery_lease_seconds) if settings.delivery_lease_seconds else LEASE
        self._stopping = False  # shutdown: send nothing new, finish and record what is in flight
        # Per-channel rate limits (KRANJ_SMS_PER_SECOND, KRANJ_EMAIL_PER_SECOND), per process.
        self._limits = {"email": RateLimiter(settings.email_per_second), "sms": RateLimiter(settings.sms_per_second)}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.ensure_future(self._loop())
        try:
            await asyncio.shield(loop)
        except asyncio.CancelledError:
            # Shutdown (SIGTERM): never cut between a hand-over and its record (that would send
            # it again after the lease). Nothing new is sent; what is in flight finishes and is
            # recorded; the rest of the claimed batch is released to the next worker at once.
            self._stopping = True
            self.wake()
            try:
                await asyncio.wait_for(loop, timeout=self.settings.graceful_timeout)
            except Exception:  # noqa: BLE001 - out of time or failed: the lease covers the rest
                log.warning("delivery worker did not finish its batch in time; the lease covers the rest")
            raise
        finally:
            await self.email.close()
            await self.sms.close()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery cycle failed")
                done = 0
            if done >= self.batch:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """Claim, send and record one batch of due deliveries; returns how many were handled."""
        claimed = await self._claim()
        if not claimed:
            return 0
        notice_ids = {d.notice_id for d in claimed}
        async with self.db.session() as session:
            notices = {
                n.id: n for n in (await session.exec(select(Notice).where(col(Notice.id).in_(notice_ids)))).all()
            }
        emails = [d for d in claimed if d.channel == "email"]
        texts = [d for d in claimed if d.channel == "sms"]

        # Each delivery is recorded as soon as SMTP or the gateway took it: a worker killed
        # mid-batch can then repeat only what was in flight (an email: SMTP has no idempotency
        # key; an SMS: the gateway gets the same Idempotency-Key), never the whole batch.
        async def send_emails() -> None:
            for d in emails:
                if self._stopping:
                    break
                await self._limits["email"].acquire()
                await self._record([(d, await self._send_one(d, notices.get(d.notice_id)))])

        async def send_sms_one(d: Delivery) -> None:
            async with self._sms_slots:
                if self._stopping:
                    return
                await self._limits["sms"].acquire()
                outcome = await self._send_one(d, notices.get(d.notice_id))
            await self._record([(d, outcome)])

        await asyncio.gather(send_emails(), *(send_sms_one(d) for d in texts))
        if self._stopping:  # hand the claimed deliveries that were not sent back at once (not after the lease)
            async with self.db.session() as session:
                await session.exec(  # type: ignore[call-overload]
                    update(Delivery)
                    .where(col(Delivery.id).in_([d.id for d in claimed]), Delivery.status == "sending")
                    .values(next_attempt_at=utcnow())
                )
                await session.commit()
        return len(claimed)

    async def _claim(self) -> list[Delivery]:
        now = utcnow()
        async with self.db.session() as session:
            query = (
                select(Delivery)
                .where(col(Delivery.status).in_(DUE_STATES), col(Delivery.next_attempt_at) <= now)
                .order_by(col(Delivery.next_attempt_at))
                .limit(self.batch)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = list((await session.exec(query)).all())
            if not rows:
                await session.rollback()
                return []
            await session.exec(  # type: ignore[call-overload]
                update(Delivery)
                .where(col(Delivery.id).in_([r.id for r in rows]))
                .values(status="sending", next_attempt_at=now + self.lease)
            )
            await session.commit()
        return rows

    async def _send_one(self, delivery: Delivery, notice: Notice | None) -> Outcome:
        if notice is None or not delivery.address:
            return Outcome("skipped", error="notice or contact no longer exists")
        if notice.valid_until is not None and notice.valid_until <= utcnow():
            return Outcome("skipped", error="expired before it could be sent")
        if delivery.channel == "sms" and not self.settings.sms_allowed(delivery.address):
            return Outcome("skipped", error="SMS only to numbers of KRANJ_SMS_COUNTRY_CODES (stops SMS pumping)")
        # Personal (transactional) messages go to one person, not to followers: nothing to leave.
        unsubscribe = (
            self.renderer.unsubscribe_url(delivery.subscriber_id, delivery.channel) if delivery.subscriber_id else None
        )
        if delivery.channel == "email":
            transport = "smtp" if self.settings.smtp_host else "file"
        else:
            transport = "gateway" if self.settings.sms_gateway_url else "file"
        if notice.kind == "survey" and notice.url and delivery.subscriber_id:
            notice = self._with_invitation(notice, delivery.subscriber_id)
        started = time.perf_counter()
        outcome = await self._hand_over(delivery, notice, unsubscribe)
        SEND_SECONDS.labels(delivery.channel, transport, outcome.status).observe(time.perf_counter() - started)
        return outcome

    def _with_invitation(self, notice: Notice, subscriber_id: str) -> Notice:
        """A survey invitation carries a personal link: each invited resident answers once
        (shared.invitations; the survey never learns who the invitee is)."""
        survey_id = notice.source_id.split(":", 1)[0]
        token = make_invitation(self.settings, survey_id, invitee_for(self.settings, subscriber_id))
        separator = "&" if "?" in (notice.url or "") else "?"
        return notice.model_copy(update={"url": f"{notice.url}{separator}t={token}"})

    async def _hand_over(self, delivery: Delivery, notice: Notice, unsubscribe: str | None) -> Outcome:
        assert delivery.address is not None
        try:
            if delivery.channel == "email":
                reference = await self.email.send(self._email(delivery, notice, unsubscribe), delivery.id)
            elif delivery.channel == "sms":
                text = self.renderer.sms(notice, delivery.language, unsubscribe)
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

    def _email(self, delivery: Delivery, notice: Notice, unsubscribe_url: str | None) -> EmailMessage:
        rendered = self.renderer.email(notice, delivery.language, unsubscribe_url)
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = delivery.address
        msg["Subject"] = rendered.subject
        msg["Date"] = email_date(datetime.now(UTC))
        msg["Message-ID"] = f"<{delivery.id}@kranj-za-vse.si>"  # stable per delivery
        if unsubscribe_url:
            msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        msg["Content-Language"] = delivery.language  # after set_content, which drops Content-* headers
        return msg

    async def _record(self, results: list[tuple[Delivery, Outcome]]) -> None:
        now = utcnow()
        async with self.db.session() as session:
            notice_ids = {d.notice_id for d, o in results if o.status != "skipped"}
            origins = {
                row[0]: (row[1], row[2])
                for row in (
                    await session.exec(
                        select(Notice.id, Notice.source, Notice.source_id).where(col(Notice.id).in_(notice_ids))
                    )
                ).all()
            }
            for delivery, outcome in results:
                values: dict[str, object] = {"status": outcome.status, "last_error": outcome.error}
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
                await session.exec(  # type: ignore[call-overload]
                    update(Delivery).where(Delivery.id == delivery.id).values(**values)
                )
                final_failure = outcome.status.startswith("failed") and values["next_attempt_at"] is None
                if (outcome.status == "sent" or final_failure) and delivery.channel in ("email", "sms"):
                    # notify.delivery.* in the same transaction as the status: no contact data in it.
                    source, source_id = origins.get(delivery.notice_id, ("", ""))
                    add_to_outbox(
                        session,
                        DELIVERY_SENT if outcome.status == "sent" else DELIVERY_FAILED,
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
                DELIVERIES.labels(delivery.channel, outcome.status).inc()
                contact = mask_email(delivery.address) if delivery.channel == "email" else mask_phone(delivery.address)
                level = logging.INFO if outcome.status in ("sent", "skipped") else logging.WARNING
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
            await session.commit()
