"""Contact data (issue #8): retention of delivery details (`KRANJ_CONTACT_RETENTION_DAYS`) on
SQLite and PostgreSQL, once across two replicas; and no resident's email address or phone
number in the logs of a fan-out, a subscription and a dead-lettered message."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from conftest import make_settings, wait_until
from sqlmodel import select

from services.notify import service
from services.notify.app import build
from services.notify.models import Delivery, JobRun, Notice
from services.notify.retention import JOB, apply_retention
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import utcnow

pytestmark = pytest.mark.integration
UNUSED_BROKER = "amqp://guest:guest@127.0.0.1:5672/not-used-here"
DAYS = 30


def _eml(path: Path, to: str, when) -> None:
    message = EmailMessage()
    message["From"] = "Kranj ZA vse <obvestila@kranj.si>"
    message["To"] = to
    message["Subject"] = "Izklop vode"
    message["Date"] = format_datetime(when)
    message.set_content(f"Obvestilo za {to}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(message))


async def _given_deliveries(db: Database, now) -> dict[str, str]:
    old, recent = now - timedelta(days=DAYS + 10), now - timedelta(days=DAYS - 10)
    rows = {
        "old-sent": Delivery(channel="email", address="ana.novak@example.si", status="sent", attempts=1,
                             next_attempt_at=None, created_at=old, sent_at=old),  # fmt: skip
        "old-failed": Delivery(channel="sms", address="+38640123456", status="failed-permanent", attempts=1,
                               next_attempt_at=None, created_at=old,
                               last_error="gateway refused with 400: +38640123456 is blocked"),  # fmt: skip
        "old-skipped": Delivery(channel="email", address="b.kos@example.si", status="skipped", next_attempt_at=None,
                                created_at=old, last_error="550 <b.kos@example.si>: no such user"),  # fmt: skip
        "old-but-due": Delivery(channel="email", address="due@example.si", status="queued", next_attempt_at=now,
                                created_at=old),  # fmt: skip
        "recent": Delivery(channel="email", address="mlad@example.si", status="sent", attempts=1,
                           next_attempt_at=None, created_at=recent, sent_at=recent),  # fmt: skip
    }
    async with db.session() as session:
        notice = Notice(source="/test", source_id="n-1", title="Izklop vode", body="V torek.", ks=["huje"])
        session.add(notice)
        await session.flush()
        for row in rows.values():
            row.notice_id = notice.id
            session.add(row)
        await session.commit()
        return {name: row.id for name, row in rows.items()} | {"notice": notice.id}


async def _rows(db: Database) -> dict[str, Delivery]:
    async with db.session() as session:
        return {d.id: d for d in (await session.exec(select(Delivery))).all()}


async def test_retention_strips_old_contact_data_once_across_two_replicas(tmp_path, database_url):
    settings = make_settings(tmp_path, UNUSED_BROKER, notify_database_url=database_url, contact_retention_days=DAYS)
    await upgrade_async("notify", database_url)
    replica_a, replica_b = Database(database_url), Database(database_url)
    try:
        now = utcnow() - timedelta(days=1)  # "yesterday's" run; the service's own job makes today's below
        ids = await _given_deliveries(replica_a, now)
        old, recent = now - timedelta(days=DAYS + 10), now - timedelta(days=DAYS - 10)
        outbox = settings.outbox_dir
        _eml(outbox / "email" / "old.eml", "ana.novak@example.si", old)
        _eml(outbox / "email" / "recent.eml", "mlad@example.si", recent)
        (outbox / "sms.jsonl").write_text(
            json.dumps({"to": "+38640123456", "text": "Izklop vode", "reference": "x", "at": old.isoformat()}) + "\n"
            + json.dumps({"to": "+38641999888", "text": "Izklop vode", "reference": "y", "at": recent.isoformat()})
            + "\n",
            encoding="utf-8",
        )  # fmt: skip
        counts_before = await service.delivery_summary(replica_a, ids["notice"])

        runs = await asyncio.gather(
            apply_retention(replica_a, settings, now=now), apply_retention(replica_b, settings, now=now)
        )
        done = [r for r in runs if r is not None]
        assert len(done) == 1, f"exactly one replica claims the run: {runs}"
        assert (done[0].deliveries, done[0].emails, done[0].sms) == (3, 1, 1)
        assert await apply_retention(replica_b, settings, now=now) is None, "once a day"

        rows = await _rows(replica_a)
        for name in ("old-sent", "old-failed", "old-skipped"):
            assert rows[ids[name]].address is None, name
        assert rows[ids["old-failed"]].last_error == "gateway refused with 400: +386***56 is blocked"
        assert rows[ids["old-skipped"]].last_error == "550 <b***@example.si>: no such user"
        assert rows[ids["old-but-due"]].address == "due@example.si", "still to be sent: kept"
        assert rows[ids["recent"]].address == "mlad@example.si"
        # What statistics need stays: channel, status, attempts, times, counts.
        assert rows[ids["old-sent"]].status == "sent" and rows[ids["old-sent"]].attempts == 1
        assert rows[ids["old-sent"]].sent_at is not None
        assert await service.delivery_summary(replica_a, ids["notice"]) == counts_before

        old_eml = (outbox / "email" / "old.eml").read_bytes()
        assert b"ana.novak@example.si" not in old_eml and b"To: a***@example.si" in old_eml
        assert b"To: mlad@example.si" in (outbox / "email" / "recent.eml").read_bytes()
        sms = [json.loads(line) for line in (outbox / "sms.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [s["to"] for s in sms] == ["+386***56", "+38641999888"]
        assert [s["text"] for s in sms] == ["Izklop vode", "Izklop vode"]

        # The service runs the job by itself (now, then hourly): a new old delivery loses its address.
        async with replica_a.session() as session:
            late = Delivery(notice_id=ids["notice"], channel="sms", address="+38651222333", status="sent",
                            next_attempt_at=None, created_at=old)  # fmt: skip
            session.add(late)
            await session.commit()
            late_id = late.id
        ctx = build(settings)
        [job] = [f for f in ctx.background if f.__name__ == "contact_retention"]
        task = asyncio.create_task(job())
        try:

            async def late_cleared() -> bool:
                async with replica_a.session() as session:
                    today = await session.get(JobRun, (JOB, utcnow().date().isoformat()))
                return today is not None and today.result is not None  # the run finished

            await wait_until(late_cleared, timeout=20, message="the service's retention job")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ctx.db.dispose()
        assert (await _rows(replica_a))[late_id].address is None
        async with replica_a.session() as session:
            claims = (await session.exec(select(JobRun).where(JobRun.job == JOB))).all()
        assert sorted(c.run_key for c in claims) == sorted({now.date().isoformat(), utcnow().date().isoformat()})
        assert all(json.loads(c.result)["deliveries"] >= 1 for c in claims)
    finally:
        await replica_a.dispose()
        await replica_b.dispose()
    if database_url.startswith("sqlite"):
        data = Path(database_url.split("///", 1)[1]).read_bytes()
        assert b"ana.novak@example.si" not in data and b"+38640123456" not in data

