"""Claims belong to a live delivery worker (issue 20, section 1), against SQLite and
PostgreSQL: the claims of a worker whose heartbeat is older than KRANJ_DELIVERY_STALE_SECONDS
are taken over at once (long before the lease), a claim that names no worker still waits
for the lease, and a slow but living worker keeps its claims however long it takes.

The time is frozen in-process (`shared.clock.frozen`, starting from the real now): the
heartbeats and the takeover are judged on that clock, so a loaded machine cannot make a
living worker look dead."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.settings import make_settings, wait_until

from services.notify.delivery import DeliveryWorker
from services.notify.models import Delivery, DeliveryWorkerRow, Notice
from services.notify.render import Renderer
from services.notify.transports import FileEmail, sms_transport
from shared import clock
from shared.db import Database
from shared.migrations import upgrade_async
from shared.settings import Settings

pytestmark = pytest.mark.integration


class RecordingEmail(FileEmail):
    """Counts every hand-over (by delivery id); with `gate`, each waits for it (a slow SMTP server)."""

    def __init__(self, settings: Settings, sent: list[str], gate: asyncio.Event | None = None) -> None:
        super().__init__(settings)
        self.sent, self.gate, self.waiting = sent, gate, 0
        self.after: Callable[[], None] | None = None  # called after each hand-over

    async def send_raw(self, raw: bytes, sender: str, to: str, delivery_id: str) -> str:
        return await self._take(delivery_id)

    async def send(self, message: EmailMessage, delivery_id: str) -> str:
        return await self._take(delivery_id)

    async def _take(self, delivery_id: str) -> str:
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
        self.sent.append(delivery_id)
        if self.after is not None:
            self.after()
        return "250 ok"


def worker(settings: Settings, db: Database, sent: list[str], gate: asyncio.Event | None = None) -> DeliveryWorker:
    return DeliveryWorker(
        settings, db, Renderer(settings), RecordingEmail(settings, sent, gate), sms_transport(settings)
    )


async def notice_with_deliveries(db: Database, count: int) -> list[str]:
    notice = Notice(source="/komunala-kranj/outages", source_id="n1", title="Izklop vode", body="Jutri ne bo vode.")
    deliveries = [Delivery(notice_id=notice.id, channel="email", address=f"krajan{i}@example.si") for i in range(count)]
    async with db.session() as s:
        s.add(notice)
        await s.commit()
        s.add_all(deliveries)
        await s.commit()
    return [d.id for d in deliveries]


async def rows(db: Database, query: sa.Select) -> list[tuple]:
    return await db.run(lambda conn, _info: [tuple(r) for r in conn.execute(query).all()])


DELIVERIES = Delivery.__table__  # type: ignore[attr-defined]
WORKERS = DeliveryWorkerRow.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def db(database_url: str):
    await upgrade_async("notify", database_url)
    database = Database(database_url)
    yield database
    await database.dispose()


def settings_for(tmp_path: Path, database_url: str, **overrides) -> Settings:
    return make_settings(tmp_path, "amqp://unused/", notify_database_url=database_url, **overrides)


async def test_claims_of_a_worker_that_stopped_heartbeating_are_taken_over_before_the_lease(tmp_path, database_url, db):
    settings = settings_for(tmp_path, database_url, delivery_stale_seconds=30, delivery_lease_seconds=300)
    with clock.frozen(clock.now()) as advance:
        ids = await notice_with_deliveries(db, 3)
        sent_a: list[str] = []
        a = worker(settings, db, sent_a)
        await a.heartbeat()  # registered (as run() does first)
        claimed = await a._claim("email")  # ... then it is killed: no heartbeat, nothing sent
        assert sorted(d.id for d in claimed) == sorted(ids)
        assert set(await rows(db, sa.select(DELIVERIES.c.claimed_by))) == {(a.id,)}

        # An older kind of claim, naming no worker (made before notify_0009): only the lease frees it.
        [legacy] = await notice_with_deliveries(db, 1)
        unregistered = worker(settings, db, [])
        assert [d.id for d in await unregistered._claim("email")] == [legacy]

        sent_b: list[str] = []
        b = worker(settings, db, sent_b)
        await b.heartbeat()
        assert await b._claim("email") == []  # a is not stale yet
        advance(timedelta(seconds=29))
        await b.heartbeat()
        assert await b._claim("email") == []

        advance(timedelta(seconds=2))  # a's last heartbeat is 31 s old; its lease ends in 269 s
        await b.heartbeat()
        assert await b.run_once("email") == 3  # taken over at once: claimed, sent, recorded
        assert sorted(sent_b) == sorted(ids) and sent_a == []
        states = await rows(db, sa.select(DELIVERIES.c.id, DELIVERIES.c.status, DELIVERIES.c.claimed_by))
        assert sorted(states) == sorted([(i, "sent", None) for i in ids] + [(legacy, "sending", None)])

        advance(timedelta(seconds=270))  # the lease of the claim that names no worker is over
        await b.heartbeat()
        assert await b.run_once("email") == 1
        assert sorted(sent_b) == sorted([*ids, legacy])

        # A graceful stop hands back what it holds and leaves; a stale worker's row goes at
        # the next registration after the lease.
        await b.retire()
        assert await rows(db, sa.select(WORKERS.c.id)) == [(a.id,)]
        await worker(settings, db, []).heartbeat()
        assert (a.id,) not in await rows(db, sa.select(WORKERS.c.id))


async def test_a_slow_living_worker_keeps_its_claims_however_long_it_takes(tmp_path, database_url, db):
    # A heartbeat every 0.2 s (a sixth of the stale time); the frozen clock moves 0.6 s per
    # step, 12 steps: 7.2 s = 6 stale times, 36 heartbeat intervals, more than twice the lease.
    settings = settings_for(tmp_path, database_url, delivery_stale_seconds=1.2, delivery_lease_seconds=3)
    with clock.frozen(clock.now()) as advance:
        ids = await notice_with_deliveries(db, 3)
        sent_a: list[str] = []
        gate = asyncio.Event()
        a = worker(settings, db, sent_a, gate)
        email_a = a.email
        assert isinstance(email_a, RecordingEmail)
        running = asyncio.create_task(a.run())
        try:
            await wait_until(lambda: email_a.waiting == 1, timeout=15, message="a's first email to hang at SMTP")
            claims = sa.select(DELIVERIES.c.claimed_by, DELIVERIES.c.status)
            assert set(await rows(db, claims)) == {(a.id, "sending")}

            sent_b: list[str] = []
            b = worker(settings, db, sent_b)
            for _ in range(12):
                advance(timedelta(seconds=0.6))
                now = clock.now()
                beat = sa.select(WORKERS.c.heartbeat_at).where(WORKERS.c.id == a.id)

                async def a_beat_since(now=now, beat=beat) -> bool:
                    return (await rows(db, beat))[0][0] >= now

                await wait_until(a_beat_since, timeout=15, message="a to heartbeat from its own task")
                await b.heartbeat()
                assert await b._claim("email") == []  # a is slow, not gone
                assert await b.run_once("email") == 0
            assert set(await rows(db, claims)) == {(a.id, "sending")} and sent_b == [] and sent_a == []

            gate.set()  # SMTP answers at last
            await wait_until(lambda: len(sent_a) == 3, timeout=15, message="a to send all three")
            assert sorted(sent_a) == sorted(ids) and sent_b == []
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        # A graceful stop deletes its worker row.
        assert await rows(db, sa.select(WORKERS.c.id)) == [(b.id,)]
        assert set(await rows(db, claims)) == {(None, "sent")}


async def test_a_worker_that_could_not_heartbeat_stops_sending_and_hands_its_batch_back(tmp_path, database_url, db):
    """Frozen (or cut off from its database) for longer than the others wait, a worker may
    have lost its claims to them: it sends nothing more from its batch and hands the rest
    back, so it repeats at most the email that was in flight."""
    settings = settings_for(tmp_path, database_url, delivery_stale_seconds=30, delivery_lease_seconds=300)
    with clock.frozen(clock.now()):
        ids = await notice_with_deliveries(db, 3)
        sent_a: list[str] = []
        a = worker(settings, db, sent_a)
        await a.heartbeat()
        email_a = a.email
        assert isinstance(email_a, RecordingEmail)

        def frozen_during_the_first_email() -> None:
            a._beat_ok = time.monotonic() - 30  # no heartbeat for the whole stale time

        email_a.after = frozen_during_the_first_email
        assert await a.run_once("email") == 3  # claimed 3; sent and recorded 1
        assert len(sent_a) == 1
        states = sorted(await rows(db, sa.select(DELIVERIES.c.status, DELIVERIES.c.claimed_by)))
        assert states == [("sending", None), ("sending", None), ("sent", None)]  # two handed back, due now

        sent_b: list[str] = []
        b = worker(settings, db, sent_b)
        await b.heartbeat()
        assert await b.run_once("email") == 2
        assert sorted(sent_a + sent_b) == sorted(ids)


async def test_a_claim_takes_the_longest_waiting_due_deliveries_of_every_kind_and_reads_only_its_batch(
    tmp_path, database_url, db
):
    """One claim of a batch takes, of one channel, the due deliveries that have waited
    longest, whatever their kind (queued, to retry, held past the quiet hours, a claim whose
    lease ran out), in due order, and nothing not yet due or of the other channel. On SQLite
    its query walks the index ix_deliveries_claim in order for each kind and stops after the
    batch (no sort of every due row: claims once grew with the square of a fan-out's size)."""
    settings = settings_for(tmp_path, database_url, quiet_hours="off")
    now = clock.now()
    notice = Notice(source="/komunala-kranj/outages", source_id="n-kinds", title="Izklop vode", body="Jutri.")
    ago = [now - timedelta(minutes=m) for m in range(60)]
    kinds = {  # id: (channel, status, next_attempt_at)
        "q-old": ("email", "queued", ago[50]),
        "q-new": ("email", "queued", ago[1]),
        "q-later": ("email", "queued", now + timedelta(minutes=5)),  # not yet due
        "retry": ("email", "failed-temporary", ago[40]),
        "retry-later": ("email", "failed-temporary", now + timedelta(minutes=5)),
        "held": ("email", "held", ago[30]),
        "lease-over": ("email", "sending", ago[20]),  # names no worker; its lease ran out
        "sms-old": ("sms", "queued", ago[59]),  # the other channel
    }
    async with db.session() as s:
        s.add(notice)
        await s.commit()
        s.add_all(
            Delivery(id=i, notice_id=notice.id, channel=ch, address=f"{i}@example.si", status=st, next_attempt_at=at)
            for i, (ch, st, at) in kinds.items()
        )
        await s.commit()
    statements: list[tuple[str, object]] = []
    updates: list[tuple[str, object]] = []

    def seen(_conn, _cursor, statement: str, parameters: object, _context, _many: bool) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM deliveries" in statement:
            statements.append((statement, parameters))
        elif statement.lstrip().startswith("UPDATE deliveries"):
            updates.append((statement, parameters))

    w = DeliveryWorker(settings, db, Renderer(settings), RecordingEmail(settings, []), sms_transport(settings), batch=4)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        first = await w._claim("email")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    assert [d.id for d in first] == ["q-old", "retry", "held", "lease-over"]
    assert [d.id for d in await w._claim("email")] == ["q-new"]
    assert await w._claim("email") == []

    if db.is_sqlite:
        assert statements, "the claim's queries were not seen"
        for statement, parameters in statements:
            plan = await db.run(
                lambda conn, _info, s=statement, p=parameters: [
                    r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s, p).all()
                ]
            )
            # Every walk of deliveries (one per kind, and one for claims of stopped workers)
            # goes through the index in due order; nothing is sorted.
            walks = [step for step in plan if step.startswith(("SEARCH deliveries", "SCAN deliveries"))]
            assert len(walks) >= 4, plan
            assert all("USING INDEX ix_deliveries_claim" in step for step in walks), plan
            assert not any("TEMP B-TREE" in step for step in plan), plan
        # The claim's UPDATE finds each chosen row by the rowid its walk read, in the same
        # transaction: no look-up in the primary key's index per row.
        assert len(updates) == 1, updates
        for statement, parameters in updates:
            plan = await db.run(
                lambda conn, _info, s=statement, p=parameters: [
                    r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s, p).all()
                ]
            )
            assert [step for step in plan if "deliveries" in step] == [
                "SEARCH deliveries USING INTEGER PRIMARY KEY (rowid=?)"
            ], plan
