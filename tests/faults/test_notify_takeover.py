"""A crashed sender's work is taken over in seconds, not at the end of its lease (issue 20,
section 1), on SQLite and on PostgreSQL.

notify runs as a real process (`python -m services.notify`, as `kranj up` starts it) on the
private RabbitMQ node, with a real SMTP server and a real HTTP SMS gateway. A notice fans
out to 200 residents (400 deliveries); notify is killed with `kill -9` while it holds
claimed deliveries it has not sent, and started again at once (as `kranj up` does). Every
resident must have the notice once per channel (at most one email repeated: the one in
flight on the one SMTP connection) within 60 s of the restart.

Settings, on purpose:
- KRANJ_DELIVERY_LEASE_SECONDS = 300 (the default): the lease cannot be what frees the
  dead process's claims within the test;
- KRANJ_DELIVERY_STALE_SECONDS = 3 (default 30; heartbeat every 0.5 s): the takeover after
  the restart comes within seconds;
- KRANJ_EMAIL_PER_SECOND / KRANJ_SMS_PER_SECOND = 60: the fan-out takes seconds, so the
  kill lands in its middle.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from support.rabbit import publish_bare
from support.settings import TEST_ADMIN_TOKEN, TEST_SECRET_KEY, free_port, wait_until

from .conftest import KRANJ, PgCluster, notice_envelope, received_emails, received_sms, write_residents_csv

RESIDENTS = 200
STALE_SECONDS = 3


class Notify:
    """notify alone as a process, started again after a kill as `kranj up` would."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KRANJ_")},
            "KRANJ_DATA_DIR": str(base / "var"),
            "KRANJ_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
            "KRANJ_SECRET_KEY": TEST_SECRET_KEY,
            "KRANJ_QUIET_HOURS": "off",
            "KRANJ_GRACEFUL_TIMEOUT": "5",
            "KRANJ_LOG_FORMAT": "console",
            "KRANJ_LOG_LEVEL": "WARNING",
            "KRANJ_NOTIFY_PORT": str(self.port),
            **env,
        }
        self.log_path = base / "notify.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.base / "var").mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.notify"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.base, start_new_session=True,
            )

    async def wait_ready(self) -> None:
        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"notify exited with {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(f"{self.url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(ready, timeout=60, interval=0.1, message="notify ready")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kranj(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(KRANJ), *args], env=self.env, capture_output=True, text=True, timeout=120,
                              cwd=self.base, check=False)


class Db:
    """Counts read straight from notify's database (SQLite file or PostgreSQL)."""

    def __init__(self, path: Path | None, pg_url: str | None) -> None:
        self.path, self.pg_url = path, pg_url

    async def text(self, query: str) -> Any:
        if self.pg_url:
            conn = await asyncpg.connect(self.pg_url)
            try:
                return await conn.fetchval(query)
            finally:
                await conn.close()
        assert self.path is not None
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(query).fetchone()[0]
        finally:
            conn.close()

    async def scalar(self, query: str) -> int:
        return int(await self.text(query))

    async def count(self, title: str, status: str) -> int:
        return await self.scalar(
            "SELECT count(*) FROM deliveries d JOIN notices n ON n.id = d.notice_id "
            f"WHERE n.title = '{title}' AND d.status = '{status}'"
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Db, dict[str, str]]]:
    if request.param == "sqlite":
        yield Db(tmp_path / "var" / "notify.db", None), {}
    else:
        cluster: PgCluster = request.getfixturevalue("fault_postgres")
        url = cluster.new_database()
        yield Db(None, url), {"KRANJ_NOTIFY_DATABASE_URL": url}


async def test_kill_9_mid_fan_out_the_claims_are_taken_over_in_seconds(
    tmp_path, database, fault_amqp_url, smtp_server, sms_gateway
):
    db, db_env = database
    notify = Notify(
        tmp_path,
        {
            "KRANJ_AMQP_URL": fault_amqp_url,
            "KRANJ_SMTP_HOST": smtp_server.host,
            "KRANJ_SMTP_PORT": str(smtp_server.port),
            "KRANJ_SMS_GATEWAY_URL": sms_gateway.url,
            "KRANJ_SMS_GATEWAY_TOKEN": sms_gateway.token,
            "KRANJ_EMAIL_PER_SECOND": "60",
            "KRANJ_SMS_PER_SECOND": "60",
            "KRANJ_SMTP_CONNECTIONS": "1",
            "KRANJ_DELIVERY_LEASE_SECONDS": "300",
            "KRANJ_DELIVERY_STALE_SECONDS": str(STALE_SECONDS),
            **db_env,
        },
    )
    try:
        notify.start()
        await notify.wait_ready()
        csv_path = tmp_path / "residents.csv"
        people = write_residents_csv(csv_path, RESIDENTS, prefix="lifeline", series=7, ks=("orehek-drulovka",))
        imported = notify.kranj("subscriber", "import", str(csv_path))
        assert imported.returncode == 0, imported.stdout + imported.stderr

        title = "Nujno: voda ni pitna"
        envelope = notice_envelope(title, ks=["orehek-drulovka"])
        await publish_bare(fault_amqp_url, json.dumps(envelope), routing_key="notify.notice.requested")
        await wait_until(
            lambda: _at_least(db.count(title, "sent"), 40), timeout=60, interval=0.05, message="40 sent"
        )

        notify.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        at_kill = await db.count(title, "sent")
        orphaned = await db.count(title, "sending")  # claimed by the dead process, not sent
        assert at_kill < 2 * RESIDENTS and orphaned > 0, (at_kill, orphaned)
        dead = await db.text("SELECT min(claimed_by) FROM deliveries WHERE status = 'sending'")
        held_by_dead = f"SELECT count(*) FROM deliveries WHERE claimed_by = '{dead}'"
        assert await db.scalar(held_by_dead) == orphaned  # every claim names its (now dead) worker

        notify.start()  # at once, as `kranj up` does
        restarted_at = time.monotonic()
        await notify.wait_ready()
        ready_at = time.monotonic()
        # The new process claims what the dead one held before anything else, once its
        # heartbeat is STALE_SECONDS old: then no delivery names the dead worker any more.
        await wait_until(lambda: _equals(db.scalar(held_by_dead), 0), timeout=60, interval=0.1,
                         message="the dead worker's claims taken over")
        taken_at = time.monotonic()
        await wait_until(
            lambda: _at_least(db.count(title, "sent"), 2 * RESIDENTS), timeout=60, interval=0.1,
            message="every delivery sent within 60 s of the restart",
        )
        done_at = time.monotonic()
        assert done_at - restarted_at < 60
        assert "claimed again from a delivery worker that stopped heartbeating" in notify.log()

        emails = received_emails(smtp_server, title)
        texts, requests = received_sms(sms_gateway, title)
        assert all(emails[e] >= 1 for e, _ in people), "an email is missing"
        repeated = {e: n for e, n in emails.items() if n > 1}
        assert len(repeated) <= 1 and all(n == 2 for n in repeated.values()), repeated  # one SMTP connection
        assert all(texts[p] == 1 for _, p in people), "a text message missing or twice"

        # A graceful stop deletes its worker row: only the killed process's row is left.
        notify.stop()
        assert notify.proc is not None and notify.proc.returncode in (0, -signal.SIGTERM)
        assert await db.scalar("SELECT count(*) FROM delivery_workers") == 1
        kind = "PostgreSQL" if db.pg_url else "SQLite"
        print(
            f"\n{kind}: kill -9 after {at_kill} of {2 * RESIDENTS} sent, {orphaned} claimed and unsent; "
            f"restarted, ready in {ready_at - restarted_at:.1f} s, the dead worker's claims all taken over "
            f"{taken_at - restarted_at:.1f} s after the restart ({taken_at - killed_at:.1f} s after the kill), every delivery sent {done_at - restarted_at:.1f} s "
            f"after the restart ({done_at - killed_at:.1f} s after the kill; lease 300 s, stale {STALE_SECONDS} s); "
            f"emails {sum(emails.values())} ({len(repeated)} repeated), text messages {sum(texts.values())} "
            f"({sum(requests.values())} gateway requests), 0 missing"
        )
    finally:
        notify.stop()


async def _at_least(value, target: int) -> bool:  # noqa: ANN001
    return (await value) >= target


async def _equals(value, target: int) -> bool:  # noqa: ANN001
    return (await value) == target
