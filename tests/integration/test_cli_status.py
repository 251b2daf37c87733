"""`kranj status` and `kranj db upgrade` against the real broker and databases."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kranj.cli import app

pytestmark = pytest.mark.integration
SERVICES = ("events", "booking", "surveys", "notify")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kranj(tmp_path: Path, amqp_url: str, *args: str, **extra: str) -> Any:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KRANJ_")}
    env.update({f"KRANJ_{s.upper()}_PORT": str(_free_port()) for s in SERVICES})  # nothing runs there
    env.update({"KRANJ_AMQP_URL": amqp_url, "KRANJ_DATA_DIR": str(tmp_path / "var"), **extra})
    return CliRunner().invoke(app, list(args), env=env)


class _Ready(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok"} if self.status == 200 else {"detail": "broker unreachable"}).encode()
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _NotReady(_Ready):
    status = 503


@pytest.fixture
def fake_services() -> Iterator[dict[str, str]]:
    """events answers /readyz 200, notify 503; the other two run nothing."""
    servers = {
        name: ThreadingHTTPServer(("127.0.0.1", 0), h) for name, h in (("events", _Ready), ("notify", _NotReady))
    }
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {f"KRANJ_{n.upper()}_PORT": str(s.server_address[1]) for n, s in servers.items()}
    for server in servers.values():
        server.shutdown()
        server.server_close()


def test_db_upgrade_migrates_every_service_once_per_line_and_is_idempotent(
    tmp_path: Path, pg_database_url: str
) -> None:
    for _ in range(2):
        result = kranj(tmp_path, "amqp://unused/", "db", "upgrade", KRANJ_BOOKING_DATABASE_URL=pg_database_url)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert [line.split(":")[0] for line in lines] == [*SERVICES, "accounts"]  # and the identity store
        assert "postgresql+asyncpg://" in lines[1]
        assert lines[-1].startswith("accounts: database at accounts_")
    assert {p.name for p in (tmp_path / "var").glob("*.db")} == {"events.db", "surveys.db", "notify.db", "accounts.db"}
    one = kranj(tmp_path, "amqp://unused/", "db", "upgrade", "--service", "notify")
    assert one.exit_code == 0 and one.stdout.startswith("notify: database at notify_")


def test_status_shows_services_queues_dead_letters_and_outbox(
    tmp_path: Path, amqp_url: str, fake_services: dict[str, str]
) -> None:
    assert kranj(tmp_path, amqp_url, "db", "upgrade", "--service", "events").exit_code == 0
    with sqlite3.connect(tmp_path / "var" / "events.db") as conn:
        conn.execute(
            "INSERT INTO outbox (id, routing_key, type, body, created_at, attempts, next_attempt_at) "
            "VALUES ('x', 'events.event.published', 't', '{}', '2026-01-01 00:00:00', 0, '2026-01-01 00:00:00')"
        )
    result = kranj(tmp_path, amqp_url, "status", "--json", **fake_services)
    assert result.exit_code == 1  # not everything is ready
    report = json.loads(result.stdout)
    assert report["services"] == {
        "events": "ok",
        "booking": "not running",
        "surveys": "not running",
        "notify": "unavailable (HTTP 503: broker unreachable)",
    }
    assert report["broker"] is None
    assert report["outbox"]["events"] == "1 unsent"
    assert report["outbox"]["notify"] == "not migrated"
    assert report["healthy"] is False
    assert "kranj.dead" in report["queues"]

    text = kranj(tmp_path, amqp_url, "status")
    assert text.exit_code == 1
    for needle in ("Services", "not running", "Queues at amqp://guest:***@", "Dead letters:", "Outbox", "1 unsent"):
        assert needle in text.stdout


def test_status_without_a_broker_still_reports_the_rest(tmp_path: Path) -> None:
    result = kranj(tmp_path, "amqp://guest:guest@127.0.0.1:1/", "status")
    assert result.exit_code == 1
    assert "RabbitMQ is not reachable" in result.stdout
    assert "Dead letters: unknown" in result.stdout
    assert "not migrated" in result.stdout
