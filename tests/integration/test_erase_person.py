"""GDPR erasure by one identifier reaches every copy (issue 17).

One person does everything: is subscribed on both channels, registers for an event, asks for
a room with a purpose that names her, answers a survey with her contact and a free-text
answer that names her, receives emails (a real SMTP server) and SMS (the file outbox under
the data directory), and has one of her messages dead-lettered. She is then erased by her
email alone (`kranj subscriber erase --email`), with the four services still running, and
every byte store is searched for the email, the phone in every spelling and the name: each
SQLite file with its `-wal` and `-shm` (or each PostgreSQL database through `pg_dump`),
every file under the data directory, every message in every queue of the vhost, and the log
records. Zero hits, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from datetime import timedelta
from pathlib import Path

import aio_pika
import httpx
import pytest
from security.helpers import ADMIN, at, day_ahead
from support.apps import running
from support.postgres import fresh_pg_database
from support.rabbit import publish_bare, rabbitmqctl, vhost_of
from support.settings import TEST_SECRET_KEY, make_settings, wait_until
from support.times import iso, weekday_ahead
from typer.testing import CliRunner

from kranj.cli import app as cli
from shared.bus import DEAD_QUEUE_NAME
from shared.settings import SERVICES

pytestmark = pytest.mark.integration

NAME, EMAIL, PHONE = "Tina Zupan", "tina.zupan@example.si", "041 777 888"
# Every way a byte store may spell her (lower-cased; stores are searched lower-cased).
NEEDLES = [
    b"tina.zupan@example.si",
    b"+38641777888",
    b"041 777 888",
    b"041777888",
    b"+386 41 777 888",
    b"38641777888",
    b"tina zupan",
    b"tina%20zupan",
    b"tina.zupan%40example.si",
]


def hits(raw: bytes) -> list[bytes]:
    lowered = raw.lower()
    return [n for n in NEEDLES if n in lowered]


@contextlib.contextmanager
def databases(kind: str, tmp_path: Path):
    """A database per service: SQLite files under the data directory, or four fresh
    PostgreSQL databases."""
    if kind == "sqlite":
        yield {}
        return
    with contextlib.ExitStack() as stack:
        yield {f"{name}_database_url": stack.enter_context(fresh_pg_database()) for name in SERVICES}


async def she_does_everything(c: dict[str, httpx.AsyncClient], amqp_url: str, smtp_server, outbox: Path) -> None:
    added = await c["notify"].post(
        "/api/v1/subscribers",
        headers=ADMIN,
        json={"email": EMAIL, "phone": PHONE, "ks": ["primskovo"], "topics": ["general", "events"],
              "channels": ["email", "sms"], "language": "sl"},
    )  # fmt: skip
    assert added.status_code == 201, added.text

    thursday = weekday_ahead(3, weeks=2)
    event = await c["events"].post(
        "/api/v1/events",
        headers=ADMIN,
        json={"ks": "primskovo", "title": "Delavnica: kaj potrebuje naša KS", "starts_at": iso(thursday),
              "ends_at": iso(thursday + timedelta(hours=2)), "venue": "Dom KS Primskovo", "capacity": 20},
    )  # fmt: skip
    event_id = event.json()["id"]
    assert (await c["events"].post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)).status_code == 200
    registered = await c["events"].post(
        f"/api/v1/events/{event_id}/registrations", json={"name": NAME, "email": EMAIL, "phone": PHONE}
    )
    assert registered.status_code == 201, registered.text

    friday = at(day_ahead(15, weekday=4), "18:00")  # no public holiday
    booked = await c["booking"].post(
        "/api/v1/bookings",
        json={"room_id": "ks-primskovo", "starts_at": iso(friday), "ends_at": iso(friday + timedelta(hours=2)),
              "purpose": f"Sestanek bralnega krožka, vodi {NAME}", "name": NAME, "email": EMAIL,
              "phone": PHONE, "attendees": 8},
    )  # fmt: skip
    assert booked.status_code == 201, booked.text

    survey = await c["surveys"].post(
        "/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"}, headers=ADMIN
    )
    survey_id = survey.json()["id"]
    assert (await c["surveys"].post(f"/api/v1/surveys/{survey_id}/open", headers=ADMIN)).status_code == 200
    answered = await c["surveys"].post(
        f"/api/v1/surveys/{survey_id}/responses",
        json={"answers": {"need": "yes", "what": ["culture"], "take-part": "yes",
                          "existing": f"Sem {NAME}, pokličite me na {PHONE} ali pišite na {EMAIL}."},
              "contact": {"name": NAME, "email": EMAIL, "phone": PHONE, "consent": True}},
    )  # fmt: skip
    assert answered.status_code == 201, answered.text

    # One of her messages that no consumer can take: dead-lettered with the reason.
    await publish_bare(
        amqp_url,
        json.dumps({"specversion": "1.0", "id": "bad-1", "source": "/drustvo", "type": "si.kranj.notify.notice.requested.v1",
                    "data": {"ks": ["atlantida"], "title": f"Vabilo, piše {NAME}", "body": f"Pišite na {EMAIL}"}}),
        routing_key="notify.notice.requested",
    )  # fmt: skip

    # She has received emails and SMS (the SMS in the file outbox of the data directory).
    await smtp_server.wait_for(3, timeout=60)
    await wait_until(lambda: _sms_to_her(outbox), timeout=60, message="an SMS to her in the file outbox")
    await wait_until(lambda: _queue_depth(amqp_url, DEAD_QUEUE_NAME), timeout=30, message="her dead letter")
    assert any(EMAIL in m.rcpt_tos for m in smtp_server.messages)


async def _sms_to_her(outbox: Path) -> bool:
    path = outbox / "sms.jsonl"
    return path.exists() and b"+38641777888" in path.read_bytes()


async def _queue_depth(url: str, name: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0


async def every_message(url: str) -> list[bytes]:
    """Every message in every queue of the vhost: bodies and headers."""
    listed = rabbitmqctl("list_queues", "-p", vhost_of(url), "--quiet", "--no-table-headers", "name")
    names = [line.strip() for line in listed.splitlines() if line.strip()]
    assert DEAD_QUEUE_NAME in names
    found: list[bytes] = []
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                found.append(message.body + repr(message.headers or {}).encode())
    return found


def stored_bytes(settings, tmp_path: Path, kind: str) -> dict[str, bytes]:
    """Every byte store the platform writes to: each file under the data directory (the
    SQLite files with -wal and -shm, the file outboxes, the signing key), or each
    PostgreSQL database as pg_dump writes it."""
    stores = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    if kind == "postgresql":
        for name in SERVICES:
            url = settings.database_url(name).replace("postgresql+asyncpg://", "postgresql://")
            dump = subprocess.run(["pg_dump", "--data-only", url], capture_output=True, check=True, timeout=60)
            stores[f"pg_dump {name}"] = dump.stdout
    return stores


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_erasure_by_email_alone_leaves_her_in_no_byte_store(
    kind, tmp_path, amqp_url, smtp_server, monkeypatch, caplog
):
    caplog.set_level("INFO")
    with databases(kind, tmp_path) as urls:
        settings = make_settings(tmp_path, amqp_url, **smtp_server.settings(), **urls)
        outbox = settings.outbox_dir
        for key, value in {"KRANJ_AMQP_URL": amqp_url, "KRANJ_DATA_DIR": str(tmp_path),
                           "KRANJ_SECRET_KEY": TEST_SECRET_KEY}.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        for name in SERVICES:
            monkeypatch.setenv(f"KRANJ_{name.upper()}_DATABASE_URL", settings.database_url(name))

        async def scenario() -> list[bytes]:
            async with running(settings) as (clients, _apps):
                await she_does_everything(clients, amqp_url, smtp_server, outbox)
                before = stored_bytes(settings, tmp_path, kind)
                assert any(hits(raw) for raw in before.values()), "the scenario stored her data somewhere"
                # Access (Art. 15): one document from every service, found by the email alone.
                exported = await asyncio.to_thread(CliRunner().invoke, cli, ["subscriber", "export", "--email", EMAIL])
                assert exported.exit_code == 0, exported.output
                document = json.loads(exported.stdout)
                assert document["identifiers"] == {"emails": [EMAIL], "phones": ["+38641777888"], "names": [NAME]}
                [subscription] = document["notify"]["subscriptions"]
                assert subscription["phone"] == "+38641777888" and len(subscription["consents"]) == 2
                assert {d["channel"] for d in document["notify"]["deliveries"]} == {"email", "sms"}
                assert [r["name"] for r in document["events"]["registrations"]] == [NAME]
                assert [b["purpose"] for b in document["booking"]["bookings"]] == [f"Sestanek bralnega krožka, vodi {NAME}"]
                assert len(document["surveys"]["answers_naming_them"]) == 1
                # Erased while the services run, by the email alone.
                result = await asyncio.to_thread(CliRunner().invoke, cli, ["subscriber", "erase", "--email", EMAIL])
                assert result.exit_code == 0, result.output
                assert not hits(result.output.encode()), result.output
                assert "found by 1 email(s), 1 phone(s), 1 name(s)" in result.output
                await asyncio.sleep(1.0)  # anything the erasure set moving (none expected) settles
                again = await asyncio.to_thread(CliRunner().invoke, cli, ["subscriber", "export", "--email", EMAIL])
                emptied = json.loads(again.stdout)
                assert emptied["notify"]["subscriptions"] == [] and emptied["events"]["registrations"] == []
                assert emptied["booking"]["bookings"] == [] and emptied["surveys"]["answers_naming_them"] == []
                found = [
                    f"{store}: {hits(raw)}"
                    for store, raw in stored_bytes(settings, tmp_path, kind).items()
                    if hits(raw)
                ]
            return found + [f"queue message: {hits(m)}" for m in await every_message(amqp_url) if hits(m)]

        left = asyncio.run(scenario())
        assert left == [], "\n".join(left)
    # The platform's own log records (the test's SMTP server logs what it receives).
    ours = [r for r in caplog.records if r.name.startswith(("kranj", "faststream", "uvicorn", "shared", "services"))]
    assert ours, "the services logged while she used them"
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours).encode()
    assert not hits(logged), [n for n in hits(logged)]

