"""The transactional outbox: a message is written as a row in the same database
transaction as the business change it announces, and the relay publishes it after commit
(with confirms), marks it sent, and retries with back-off until it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from faststream.rabbit import RabbitBroker
from pydantic import BaseModel
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .broker import ConfirmChannel, is_nack, publish_envelope
from .contracts import MessageType
from .db import Database, executemany
from .metrics import MESSAGES_PUBLISHED, OUTBOX_OLDEST_SECONDS, OUTBOX_UNSENT, PUBLISH_FAILURES
from .models import OutboxMessage, table_of, utcnow

log = logging.getLogger("kranj.bus")

_OUTBOX = table_of(OutboxMessage)
_MARK_SENT = (  # the relay's marks, built once (shared.db.executemany caches their SQL)
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.bindparam("b_id"))
    .values(sent_at=sa.bindparam("v_sent"), last_error=None)
)
_MARK_FAILED = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.bindparam("b_id"))
    .values(
        attempts=sa.bindparam("v_attempts"), next_attempt_at=sa.bindparam("v_next"), last_error=sa.bindparam("v_error")
    )
)

# Set in a session's (or `Database.run`'s) info by a writer of outbox rows: the relay wakes
# when that transaction commits.
OUTBOX_WRITTEN = "outbox_written"


def outbox_row(message_type: MessageType, envelope: dict[str, Any], *, at: datetime | None = None) -> dict[str, Any]:
    """The columns of the outbox row of `envelope` (a CloudEvent of `message_type`): the one
    row builder of every writer, whether it adds one row to a session (`add_to_outbox`) or
    inserts many with one Core statement (notify's delivery outcomes). Due at once."""
    at = at or utcnow()
    return {
        "id": envelope["id"],
        "routing_key": message_type.routing_key,
        "type": message_type.type,
        # orjson: the standard library's encoder was 3 % of notify's CPU per SMS (a page of
        # outcomes per commit; make bench, issue 20 §3). UTF-8, no spaces: the same JSON.
        "body": orjson.dumps(envelope).decode(),
        "created_at": at,
        "sent_at": None,
        "attempts": 0,
        "next_attempt_at": at,
        "last_error": None,
    }


def add_to_outbox(
    session: AsyncSession,
    message_type: MessageType,
    data: BaseModel | dict[str, Any],
    *,
    source: str,
    subject: str | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    """Stage a CloudEvent in the caller's transaction; the relay publishes it after commit."""
    envelope = message_type.envelope(data, source=source, subject=subject, id=id)
    session.add(OutboxMessage(**outbox_row(message_type, envelope)))
    session.info[OUTBOX_WRITTEN] = True
    return envelope


def _retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(60.0, 0.5 * 2 ** min(attempts, 10)))


class OutboxRelay:
    """Publishes committed outbox rows with confirms and marks them sent; retries until it is."""

    def __init__(
        self,
        db: Database,
        broker: RabbitBroker,
        service: str,
        *,
        batch: int = 200,
        poll: float = 1.0,
        user_id: str | None = None,
    ):
        self.db = db
        self.broker = broker
        self.channel = ConfirmChannel(broker, app_id=f"kranj-{service}")  # the relay's own
        self.service = service
        self.user_id = user_id  # the broker user of `broker`'s connection, set on every publish
        self.batch = batch
        self.poll = poll
        self._wake = asyncio.Event()
        self._stopping = False
        db.on_commit(self._after_commit)

    def _after_commit(self, info: dict[str, Any]) -> None:
        if info.pop(OUTBOX_WRITTEN, False):
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        last_gauge = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                published = await self.flush_once()
                if time.monotonic() - last_gauge > 5:
                    await self.update_gauges()
                    last_gauge = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay cycle failed", extra={"service": self.service})
                published = 0
            if published >= self.batch:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def close(self) -> None:
        """Close the relay's channel (after `run` has returned)."""
        await self.channel.close()

    async def flush_once(self) -> int:
        """Publish one batch of due rows; returns how many were confirmed. Rows are read and
        marked with Core statements (a fan-out writes thousands: no ORM unit of work)."""
        now = utcnow()
        t = table_of(OutboxMessage)
        query = (
            sa.select(t.c.id, t.c.routing_key, t.c.type, t.c.body, t.c.attempts)
            .where(t.c.sent_at.is_(None), t.c.next_attempt_at <= now)
            .order_by(t.c.created_at)
            .limit(self.batch)
        )
        if self.db.is_sqlite:
            # SQLite's single write lock is not held while waiting for confirms (one relay per file).
            rows = await self.db.run(lambda conn, _info: conn.execute(query).all())
            if not rows:
                return 0
            marks = self._marks(rows, await self._publish(rows))
            await self.db.run(lambda conn, _info: self._mark(conn, marks))
        else:
            # The rows stay locked until they are marked: another replica's relay skips them.
            async with self.db.engine.begin() as conn:
                rows = (await conn.execute(query.with_for_update(skip_locked=True))).all()
                if not rows:
                    return 0
                marks = self._marks(rows, await self._publish(rows))
                await conn.run_sync(self._mark, marks)
        sent, failed = marks
        if failed:
            log.warning(
                "outbox: %d of %d messages not confirmed, will retry: %s",
                len(failed),
                len(rows),
                failed[0]["v_error"],
            )
        return len(sent)

    async def _publish(self, rows: Sequence[sa.Row[*tuple[Any, ...]]]) -> list[BaseException | None]:
        results: list[BaseException | None] = await asyncio.gather(
            *(
                publish_envelope(
                    self.channel,
                    row.body,
                    routing_key=row.routing_key,
                    message_id=row.id,
                    message_type=row.type,
                    user_id=self.user_id,
                )
                for row in rows
            ),
            return_exceptions=True,
        )
        if any(is_nack(result) for result in results):
            # Nacked: the rows are tried again later, on a new channel (ConfirmChannel).
            log.warning("outbox: the broker refused messages; the next try goes on a new channel")
            await self.channel.renew()
        return results

    def _marks(
        self, rows: Sequence[sa.Row[*tuple[Any, ...]]], results: list[BaseException | None]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The parameters of `_mark`: (confirmed rows, rows to try again later)."""
        at = utcnow()
        sent: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                attempts = row.attempts + 1
                failed.append(
                    {
                        "b_id": row.id,
                        "v_attempts": attempts,
                        "v_next": at + _retry_delay(attempts),
                        "v_error": f"{type(result).__name__}: {result}"[:1000],
                    }
                )
                PUBLISH_FAILURES.labels(self.service, row.type).inc()
            else:
                sent.append({"b_id": row.id, "v_sent": at})
                MESSAGES_PUBLISHED.labels(self.service, row.type).inc()
        return sent, failed

    @staticmethod
    def _mark(conn: sa.Connection, marks: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
        sent, failed = marks
        executemany(conn, _MARK_SENT, sent)  # on SQLite, sqlite3's own executemany
        executemany(conn, _MARK_FAILED, failed)

    async def update_gauges(self) -> tuple[int, float]:
        async with self.db.session() as session:
            count, oldest = (
                await session.exec(
                    select(func.count(), func.min(OutboxMessage.created_at)).where(
                        col(OutboxMessage.sent_at).is_(None)
                    )
                )
            ).one()
            await session.rollback()
        age = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = max(0.0, (utcnow() - oldest).total_seconds())
        OUTBOX_UNSENT.labels(self.service).set(count)
        OUTBOX_OLDEST_SECONDS.labels(self.service).set(age)
        return count, age
