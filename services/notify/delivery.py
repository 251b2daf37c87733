"""Sending: a worker claims due deliveries, renders them, hands them to SMTP or the SMS
gateway (or to file outboxes when those are not configured) and records the outcome; the
rendering, handing over and recording are services/notify/sending.py (`Sender`).

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
import functools
import logging
import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlmodel import col, update

from shared.db import Database
from shared.models import new_id, table_of, utcnow
from shared.settings import Settings

from .domain import quiet_until
from .models import Delivery, DeliveryWorkerRow, Notice
from .ratelimit import RateLimiter
from .render import Renderer
from .sending import Due, GroupCommit, Outcome, Renderers, Sender, signal_of
from .transports import EmailTransport, SmsTransport
from .window import AdaptiveWindow

log = logging.getLogger("kranj.notify.delivery")
DUE_STATES = ("queued", "held", "failed-temporary", "sending")
CHANNELS = ("email", "sms")
LEASE = timedelta(minutes=5)  # default of KRANJ_DELIVERY_LEASE_SECONDS
BATCH = 100  # deliveries per claim (email; the least for SMS)
# An SMS claim holds about this long of sending at KRANJ_SMS_PER_SECOND, at most BATCH_MAX:
# each batch has a fixed cost (its claim, its senders, its last commit, and a round trip
# half idle at its end against a gateway far away), spread over more SMS at a high rate,
# while at a low one a claim still holds no more than a few seconds of work.
BATCH_SECONDS = 5.0
BATCH_MAX = 500
# SMS outcomes wait this long for others to share their commit (GroupCommit): a crash in
# between sends those SMS again with the same Idempotency-Key, which the gateway takes once.
SMS_COMMIT_LINGER = 0.02
# SMS texts are prepared this many at a time, ahead of their requests (Sender._prepare_sms).
SMS_PREPARE = 50


class DeliveryWorker(Sender):
    """Claims due deliveries of each channel in a loop of its own and sends them (`Sender`)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        renderer: Renderer,
        email: EmailTransport,
        sms: SmsTransport,
        *,
        batch: int | None = None,
        poll: float = 1.0,
        sms_window: AdaptiveWindow | None = None,
    ) -> None:
        super().__init__(settings, db, renderer, email, sms)
        # How many deliveries of a channel one claim takes: `batch` when given (tests), else
        # BATCH for email and, for SMS, about BATCH_SECONDS of sending at KRANJ_SMS_PER_SECOND
        # (`sms_batch`).
        self.batches = {"email": batch or BATCH, "sms": batch or sms_batch(settings.sms_per_second)}
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
        workers = table_of(DeliveryWorkerRow)
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
        workers = table_of(DeliveryWorkerRow)
        deliveries = table_of(Delivery)
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
            if done >= self.batches[channel]:
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
        notices: dict[str, Notice] = {}
        claimed = await self._claim(channel, notices)
        if not claimed:
            return 0
        origins = {n.id: (n.source, n.source_id) for n in notices.values()}

        # Each delivery is recorded as soon as SMTP or the gateway took it: a worker killed
        # mid-batch can then repeat only what was in flight (an email: SMTP has no idempotency
        # key; an SMS: the gateway gets the same Idempotency-Key), never the whole batch.
        if channel == "email":
            renderers: Renderers = {}  # one rendering per notice and language
            queue = iter(claimed)
            # Each connection sends its next email only after the last one is recorded (at most
            # one repeat per connection after a crash); the connections share group commits.
            recorded = GroupCommit(lambda results: self._record(results, origins))

            async def send_emails() -> None:  # one per SMTP connection: send, record, next
                for d in queue:
                    if self._stopping or not self._alive():
                        break
                    await self._limits["email"].acquire()
                    outcome = await self._send_email(d, notices.get(d.notice_id), renderers)
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

        # SMS go out as many at a time as the gateway's window allows, taken in turn by a few
        # senders (a task per SMS was a tenth of notify's CPU in a fan-out: make bench, issue
        # 20 §3); their outcomes are committed in groups behind them, whatever finished while
        # the previous commit ran going into the next. A sender does not wait for its SMS's
        # commit: a crash before it may send that SMS again, with the same Idempotency-Key
        # (the gateway takes it once).
        group = GroupCommit(lambda results: self._record(results, origins), linger=SMS_COMMIT_LINGER)
        texts: Renderers = {}  # one fitting per notice and language
        window, limit = self.sms_window, self._limits["sms"]

        def prepared() -> Iterator[tuple[Due, str | Outcome]]:  # a few dozen at a time (_prepare_sms)
            for first in range(0, len(claimed), SMS_PREPARE):
                chunk = claimed[first : first + SMS_PREPARE]
                yield from [(d, self._prepare_sms(d, notices.get(d.notice_id), texts)) for d in chunk]

        ready = prepared()

        async def sms_sender() -> None:
            for d, text in ready:
                if isinstance(text, Outcome):  # not to be sent, or no text: no request, so no slot or token
                    if self._stopping or not self._alive():
                        return
                    group.submit((d, text))
                    continue
                await window.acquire()
                try:
                    if self._stopping or not self._alive():
                        return
                    await limit.acquire()
                    started = time.perf_counter()
                    outcome = await self._send_sms(d, text)
                    window.record(signal_of(outcome), time.perf_counter() - started)
                finally:
                    window.release()
                group.submit((d, outcome))

        # As many senders as the window may grow to within the batch (fewer leave it short
        # against a slow gateway); those beyond its size wait for room.
        senders = min(len(claimed), window.ceiling)
        failures = [
            r
            for r in await asyncio.gather(*(sms_sender() for _ in range(senders)), return_exceptions=True)
            if isinstance(r, BaseException)
        ]
        try:
            await group.drain()  # every SMS sent is recorded before the next claim
        except Exception as exc:  # noqa: BLE001 - raised below, after the senders' own
            failures.append(exc)
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
        mine = col(Delivery.claimed_by) == self.id if self._registered else col(Delivery.claimed_by).is_(None)
        release = (
            update(Delivery)
            .where(col(Delivery.id).in_([d.id for d in claimed]), col(Delivery.status) == "sending", mine)
            .values(next_attempt_at=utcnow(), claimed_by=None)
        )
        await self.db.run(lambda conn, _info: conn.execute(release))

    async def follow_quiet_hours(self) -> int:
        """At start: held deliveries wait for the end of the quiet hours in force NOW
        (`KRANJ_QUIET_HOURS`), not for a time computed under the setting they were held by;
        with no quiet hours now they are due at once. Returns how many were re-timed."""
        now = utcnow()
        until = quiet_until(now, self.settings.quiet_window) or now
        table = table_of(Delivery)
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

    async def _claim(self, channel: str, notices: dict[str, Notice] | None = None) -> list[Due]:
        """Claim a batch of due deliveries of `channel` for this worker; with `notices`, their
        notices are read into it in the same transaction (a session of its own for them cost
        as much CPU as the claim itself)."""
        now = utcnow()
        # Held deliveries follow the quiet hours in force now, whatever time they were held
        # until: all due when it is not quiet now, none while it is.
        quiet_now = quiet_until(now, self.settings.quiet_window) is not None
        sqlite = self.db.is_sqlite
        find, claim = _claim_statements(channel, quiet_now, sqlite)
        batch = self.batches[channel]
        params = {"now": now, "stale_before": now - self.stale, "batch": batch}

        def work(conn: sa.Connection, _info: dict[str, object]) -> list[Due]:
            found = [row for statement in find for row in conn.execute(statement, params).all()]
            # First what workers that stopped heartbeating had claimed (killed, frozen, their
            # host gone): they were first in line, and their lease may be minutes away; then
            # the due deliveries of every kind that have waited longest.
            found.sort(key=_claim_order)
            chosen = found[:batch]
            rows = [Due(*row[2:-1]) for row in chosen]
            orphans = sum(1 for row in chosen if row[0] == 0)
            if orphans:
                log.warning(
                    "claimed again from a delivery worker that stopped heartbeating",
                    extra={"channel": channel, "count": orphans},
                )
            if rows:
                conn.execute(
                    claim,
                    {
                        "keys": orjson.dumps([row[1] for row in chosen]).decode() if sqlite else [r.id for r in rows],
                        "lease_end": now + self.lease,
                        "claimer": self.id if self._registered else None,
                    },
                )
                if notices is not None:
                    ids = sorted({r.notice_id for r in rows})
                    notices.update((n.id, Notice(**n._mapping)) for n in conn.execute(_NOTICES, {"ids": ids}))
            return rows

        return await self.db.run(work)


def _claim_order(row: sa.Row[Any]) -> tuple[int, bool, Any]:
    """Claims of stopped workers first, then in due order; a row without a due time (never
    written so) before the rest."""
    return row[0], row[-1] is not None, row[-1] or 0


_NOTICES = sa.select(table_of(Notice)).where(table_of(Notice).c.id.in_(sa.bindparam("ids", expanding=True)))


@functools.lru_cache(maxsize=16)
def _claim_statements(
    channel: str, quiet_now: bool, sqlite: bool
) -> tuple[list[sa.Select[Any] | sa.CompoundSelect[Any]], sa.Update]:
    """A claim's queries, built once per channel, quiet or not, and database (building them
    for every batch was most of a claim's CPU: `python -m bench --claims`): the due
    deliveries of each kind, `batch` of each, every row led by 0 for a claim of a worker that
    stopped heartbeating and 1 for the rest, and the UPDATE that claims the chosen ones.
    Parameters: now, stale_before, batch; then keys (each row's `key`), lease_end, claimer.

    Each query walks the index ix_deliveries_claim (status, channel, next_attempt_at) in due
    order and stops after a batch: one query with the kinds' OR had the database gather and
    sort every due row of both channels for each batch of 100 (a fan-out's claims grew with
    the square of its size). On SQLite the kinds go in one statement (UNION ALL of the
    walks; the merge in due order is `_claim`'s); on PostgreSQL, which locks no rows of a
    UNION, one statement each, with FOR UPDATE SKIP LOCKED."""
    table = table_of(Delivery)
    c = table.c
    now = sa.bindparam("now", type_=c.next_attempt_at.type)
    kinds = [
        sa.and_(c.status == "queued", c.next_attempt_at <= now),
        sa.and_(c.status == "failed-temporary", c.next_attempt_at <= now),
        # The lease, last resort: claims that name no worker (made before notify_0009, or by
        # a worker used without run()). A worker's claims are free once it is stale (below).
        sa.and_(c.status == "sending", c.next_attempt_at <= now, c.claimed_by.is_(None)),
    ]
    if not quiet_now:
        kinds.append(c.status == "held")
    # Claims of workers that stopped heartbeating (`sending` with a worker named: none of the
    # kinds above), first in line.
    workers = table_of(DeliveryWorkerRow)
    live = sa.select(workers.c.id).where(
        workers.c.heartbeat_at >= sa.bindparam("stale_before", type_=workers.c.heartbeat_at.type)
    )
    orphaned = sa.and_(c.status == "sending", c.claimed_by.is_not(None), c.claimed_by.not_in(live))
    columns = [c[name] for name in Due.COLUMNS]
    # The due time only orders the rows: as the database gives it (on SQLite, text that sorts
    # as the times do), not converted to a datetime for each row.
    due = sa.type_coerce(c.next_attempt_at, sa.String).label("due")
    # What the UPDATE finds the chosen rows by: on SQLite the rowid, read in the same
    # transaction (nothing can renumber rows between the two; the primary key's index, a
    # random uuid per row, was looked up once per claimed row); on PostgreSQL the id.
    key = (sa.literal_column(f"{table.name}.rowid", sa.Integer) if sqlite else c.id).label("key")
    batch = sa.bindparam("batch", type_=sa.Integer)
    walks = [
        sa.select(sa.literal(first, sa.Integer).label("first"), key, *columns, due)
        .where(kind, c.channel == channel)
        .order_by(c.next_attempt_at)
        .limit(batch)
        for first, kind in [(0, orphaned), *((1, kind) for kind in kinds)]
    ]
    find: list[sa.Select[Any] | sa.CompoundSelect[Any]]
    if sqlite:
        find = [sa.union_all(*(sa.select(walk.subquery()) for walk in walks))]
    else:
        find = [walk.with_for_update(skip_locked=True) for walk in walks]
    if sqlite:  # the keys as one JSON array: no bind parameter, nor its rendering, per row
        chosen = sa.literal_column("rowid").in_(
            sa.select(sa.column("value", sa.Integer)).select_from(
                sa.func.json_each(sa.bindparam("keys", type_=sa.String))
            )
        )
    else:
        chosen = c.id.in_(sa.bindparam("keys", expanding=True))
    claim = (
        sa.update(table)
        .where(chosen)
        .values(
            status="sending",
            next_attempt_at=sa.bindparam("lease_end", type_=c.next_attempt_at.type),
            claimed_by=sa.bindparam("claimer", type_=c.claimed_by.type),
        )
    )
    return find, claim


def sms_batch(per_second: float) -> int:
    """How many SMS one claim takes at KRANJ_SMS_PER_SECOND = `per_second`: about
    BATCH_SECONDS of sending, between BATCH and BATCH_MAX."""
    return int(min(max(BATCH, per_second * BATCH_SECONDS), BATCH_MAX))
