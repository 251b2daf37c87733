"""Contact data (issue #8): retention of delivery details (`KRANJ_CONTACT_RETENTION_DAYS`) on
SQLite and PostgreSQL, once across two replicas; and no resident's email address or phone
number in the logs of a fan-out, a subscription and a dead-lettered message."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import aio_pika
import httpx
import pytest
from sqlmodel import select
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until

from services.notify import notices, subscribers
from services.notify.app import build
from services.notify.models import Delivery, JobRun, Notice
from services.notify.retention import JOB, apply_retention
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import utcnow
from shared.senders import amqp_user

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
        "old-sent": Delivery(
            channel="email",
            address="ana.novak@example.si",
            status="sent",
            attempts=1,
            next_attempt_at=None,
            created_at=old,
            sent_at=old,
        ),
        "old-failed": Delivery(
            channel="sms",
            address="+38640123456",
            status="failed-permanent",
            attempts=1,
            next_attempt_at=None,
            created_at=old,
            last_error="gateway refused with 400: +38640123456 is blocked",
        ),
        "old-skipped": Delivery(
            channel="email",
            address="b.kos@example.si",
            status="skipped",
            next_attempt_at=None,
            created_at=old,
            last_error="550 <b.kos@example.si>: no such user",
        ),
        "old-but-due": Delivery(
            channel="email", address="due@example.si", status="queued", next_attempt_at=now, created_at=old
        ),
        "recent": Delivery(
            channel="email",
            address="mlad@example.si",
            status="sent",
            attempts=1,
            next_attempt_at=None,
            created_at=recent,
            sent_at=recent,
        ),
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
            json.dumps({"to": "+38640123456", "text": "Izklop vode", "reference": "x", "at": old.isoformat()})
            + "\n"
            + json.dumps({"to": "+38641999888", "text": "Izklop vode", "reference": "y", "at": recent.isoformat()})
            + "\n",
            encoding="utf-8",
        )
        counts_before = await notices.delivery_summary(replica_a, ids["notice"])

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
        assert await notices.delivery_summary(replica_a, ids["notice"]) == counts_before

        old_eml = (outbox / "email" / "old.eml").read_bytes()
        assert b"ana.novak@example.si" not in old_eml and b"To: a***@example.si" in old_eml
        assert b"To: mlad@example.si" in (outbox / "email" / "recent.eml").read_bytes()
        sms = [json.loads(line) for line in (outbox / "sms.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [s["to"] for s in sms] == ["+386***56", "+38641999888"]
        assert [s["text"] for s in sms] == ["Izklop vode", "Izklop vode"]

        # The service runs the job by itself (now, then hourly): a new old delivery loses its address.
        async with replica_a.session() as session:
            late = Delivery(
                notice_id=ids["notice"],
                channel="sms",
                address="+38651222333",
                status="sent",
                next_attempt_at=None,
                created_at=old,
            )
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


# --------------------------------------------------------------------------------------
# Contact data never in logs
# --------------------------------------------------------------------------------------
RESIDENTS = {"ana.novak@example.si": "+38640123456", "b.kos@example.si": "+38641222333"}
SPELLINGS = [
    *RESIDENTS,
    *RESIDENTS.values(),
    *(p.replace("+386", "0") for p in RESIDENTS.values()),  # 040123456
    *(p.replace("+", "00") for p in RESIDENTS.values()),  # 0038640123456
    "mladi.prostovoljec@example.si",
    "+38631444555",
]


async def test_no_contact_data_in_the_logs_of_a_fanout_a_subscription_and_dead_letters(
    tmp_path, amqp_url, smtp_server, sms_gateway, monkeypatch
):
    import io

    from services.notify.app import create_app
    from shared import inbox, logs

    stream = io.StringIO()
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    logs.configure("notify", fmt="json", level="DEBUG")
    logging.getLogger().handlers[0].setStream(stream)
    monkeypatch.setattr(inbox, "HANDLER_ATTEMPTS", 2)  # the failing handler gives up after one retry

    async def crash(*_: object, email: str | None = None, phone: str | None = None, **__: object) -> None:
        raise RuntimeError(f"could not add the volunteer {email} / {phone}")

    monkeypatch.setattr(subscribers, "add_volunteer", crash)
    smtp_server.replies.append("550 5.1.1 <ana.novak@example.si>: no such user here")
    sms_gateway.statuses.extend([400])
    settings = make_settings(
        tmp_path, amqp_url, log_format="json", log_level="DEBUG", **smtp_server.settings(), **sms_gateway.settings()
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            api = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://notify.test",
                headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"},
            )
            async with api:
                for email, phone in RESIDENTS.items():
                    answer = await api.post(
                        "/api/v1/subscribers",
                        json={
                            "email": email,
                            "phone": phone.replace("+386", "0"),
                            "ks": ["primskovo"],
                            "channels": ["email", "sms"],
                        },
                    )
                    assert answer.status_code == 201, answer.text
                clash = await api.post("/api/v1/subscribers", json={"email": "ana.novak@example.si", "ks": ["huje"]})
                assert clash.status_code in (200, 201, 409, 422), clash.text
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange("kranj", ensure=False)
                bodies = {
                    "notify.notice.requested": [
                        {"title": "Izklop vode", "body": "V torek ne bo vode.", "ks": ["primskovo"]},
                        # refused: the reason quotes the value, a resident's address
                        {
                            "title": "Obvestilo",
                            "body": "Pišite.",
                            "ks": ["primskovo"],
                            "url": "mailto:ana.novak@example.si",
                        },
                    ],
                    "surveys.respondent.volunteered": [
                        {
                            "survey_id": "s-1",
                            "survey_title": "Potrebe",
                            "ks": "primskovo",
                            "email": "mladi.prostovoljec@example.si",
                            "phone": "+38631444555",
                            "channels": ["email"],
                            "consent_text": "Soglašam.",
                            "consent_at": "2026-11-24T09:00:00Z",
                            "consent_source": "web",
                        },
                    ],
                }
                for key, items in bodies.items():
                    for data in items:
                        envelope = {
                            "specversion": "1.0",
                            "id": str(uuid.uuid4()),
                            "source": "/test",
                            "type": f"si.kranj.{key}.v1",
                            "data": data,
                        }
                        # Platform facts only from the platform's own broker user (shared/senders.py).
                        user_id = None if key == "notify.notice.requested" else amqp_user(amqp_url)
                        await exchange.publish(
                            aio_pika.Message(json.dumps(envelope).encode(), delivery_mode=2, user_id=user_id),
                            routing_key=key,
                        )

                async def two_dead() -> bool:
                    queue = await channel.declare_queue("kranj.dead", passive=True)
                    return (queue.declaration_result.message_count or 0) >= 2

                await wait_until(two_dead, timeout=30, message="two dead letters")

            async def all_final() -> bool:
                async with app.state.ctx.db.session() as session:
                    states = (await session.exec(select(Delivery.status))).all()
                return len(states) == 4 and all(s in ("sent", "failed-permanent") for s in states)

            await wait_until(all_final, timeout=30, message="every delivery sent or failed for good")
    finally:
        logging.getLogger().handlers[:], level = saved
        logging.getLogger().setLevel(level)

    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    messages = {line.get("message") for line in lines}
    # The log really covers what matters here ...
    assert {"delivery sent", "delivery failed-permanent", "message dead-lettered", "giving up on message"} <= messages
    assert any("a***@example.si" in line for line in text.splitlines()), "masked contacts are logged"
    # ... and never names a resident.
    leaks = [(s, line) for s in SPELLINGS for line in text.splitlines() if s.lower() in line.lower()]
    [retry] = [line for line in lines if line["message"] == "handler failed, message will be redelivered"]
    assert "RuntimeError: could not add the volunteer m***@example.si / +386***55" in retry["exc_info"]
    reasons = [line["reason"] for line in lines if line["message"] == "message dead-lettered"]
    assert any("mailto:a***@example.si" in r for r in reasons) and any("m***@example.si" in r for r in reasons)
    assert leaks == [], leaks
