"""The shared test infrastructure itself works: isolated vhosts, fresh databases, the SMTP
and SMS sinks, and the broker proxy really cut and restore connections."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aio_pika
import aiormq
import aiosmtplib
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from support.rabbit import vhost_of
from support.settings import make_settings


async def test_amqp_url_is_a_fresh_vhost_of_its_own(amqp_url: str, amqp_vhost: str) -> None:
    assert vhost_of(amqp_url).startswith("kranj-test-")
    assert vhost_of(amqp_url) != vhost_of(amqp_vhost)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("probe", durable=False, auto_delete=False)
    # ... and another vhost cannot see it
    other = await aio_pika.connect(amqp_vhost)
    async with other:
        channel = await other.channel()
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await channel.declare_queue("probe", passive=True)


async def test_database_url_is_an_empty_working_database(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            assert tables == []
            await conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(sa.text("INSERT INTO t VALUES (42)"))
            assert (await conn.execute(sa.text("SELECT x FROM t"))).scalar_one() == 42
    finally:
        await engine.dispose()


def test_make_settings_defaults_and_overrides(tmp_path, amqp_vhost: str) -> None:
    settings = make_settings(tmp_path, amqp_vhost, quiet_hours="22:00-06:00")
    assert settings.amqp_url == amqp_vhost
    assert settings.data_dir == tmp_path
    assert settings.quiet_hours == "22:00-06:00"
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "test-admin-token"
    assert settings.database_url("notify") == f"sqlite+aiosqlite:///{(tmp_path / 'notify.db').resolve()}"
    assert make_settings(tmp_path, amqp_vhost).quiet_window is None
    assert settings.signing_key() == make_settings(tmp_path, amqp_vhost).signing_key()


async def test_smtp_server_collects_real_messages(smtp_server) -> None:
    message = EmailMessage()
    message["From"] = "obvestila@kranj.si"
    message["To"] = "ana@example.si"
    message["Subject"] = "Zapora ceste na Primskovem"
    message.set_content("Besedilo v slovenščini.")
    message.add_alternative("<p>Besedilo v slovenščini.</p>", subtype="html")
    await aiosmtplib.send(
        message,
        hostname=smtp_server.host,
        port=smtp_server.port,
        recipients=["ana@example.si", "bojan@example.si"],
        username=smtp_server.username,
        password=smtp_server.password,
        start_tls=False,
        use_tls=False,
    )
    [mail] = await smtp_server.wait_for(1, timeout=5)
    assert mail.rcpt_tos == ["ana@example.si", "bojan@example.si"]
    assert mail.subject == "Zapora ceste na Primskovem"
    assert mail.part("text/plain").strip() == "Besedilo v slovenščini."
    assert "<p>" in mail.part("text/html")
    assert mail.auth_login == "kranj"
    assert b"Subject:" in mail.raw

    smtp_server.replies.append("451 4.3.0 try again later")
    with pytest.raises(aiosmtplib.SMTPDataError) as failed:
        await aiosmtplib.send(message, hostname=smtp_server.host, port=smtp_server.port)
    assert failed.value.code == 451
    assert len(smtp_server.messages) == 1 and len(smtp_server.refused) == 1


async def test_sms_gateway_contract_and_programmed_statuses(sms_gateway) -> None:
    payload = {"to": "+38640123456", "text": "Pozdravljeni", "reference": "d-1"}
    headers = {"Authorization": f"Bearer {sms_gateway.token}", "Idempotency-Key": "d-1"}
    async with httpx.AsyncClient(timeout=5) as client:
        ok = await client.post(sms_gateway.url, json=payload, headers=headers)
        unauthorised = await client.post(sms_gateway.url, json=payload, headers={"Idempotency-Key": "d-1"})
        broken = await client.post(sms_gateway.url, json={"to": "040 123"}, headers=headers)
        sms_gateway.statuses.extend([500, 429, 200])
        programmed = [(await client.post(sms_gateway.url, json=payload, headers=headers)).status_code for _ in range(3)]
        after = await client.post(sms_gateway.url, json=payload, headers=headers)
    assert ok.status_code == 200
    assert unauthorised.status_code == 401
    assert broken.status_code == 422 and "text missing" in broken.json()["error"]
    assert programmed == [500, 429, 200]
    assert after.status_code == 200
    requests = await sms_gateway.wait_for(7, timeout=5)
    assert requests[0].authorization == f"Bearer {sms_gateway.token}"
    assert requests[0].idempotency_key == "d-1"
    assert requests[0].json == payload
    assert [r.status for r in requests] == [200, 401, 422, 500, 429, 200, 200]
    assert len(sms_gateway.accepted) == 3


async def test_broker_proxy_cuts_and_restores(broker_proxy) -> None:
    connection = await aio_pika.connect(broker_proxy.url)
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    await broker_proxy.cut()
    await asyncio.wait_for(closed.wait(), timeout=5)
    with pytest.raises((ConnectionError, OSError, aiormq.exceptions.AMQPConnectionError)):
        await aio_pika.connect(broker_proxy.url, timeout=2)
    await broker_proxy.restore()
    again = await aio_pika.connect(broker_proxy.url)
    await again.close()
