"""Test settings and small helpers: `make_settings`, `wait_until`, `free_port`, the test tokens."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings

TEST_ADMIN_TOKEN = "test-admin-token"
TEST_SECRET_KEY = "test-secret-key-not-for-production-0123456789abcdef"
SERVICES = ("events", "booking", "surveys", "notify")
DATABASE_KINDS = ("sqlite", "postgresql")
GENEROUS_RATE_LIMITS = (
    "subscribe",
    "subscribe_contact",
    "sms_code",
    "registration",
    "registration_contact",
    "booking",
    "booking_contact",
    "survey_answer",
    "link",
    "sms_inbound",
    "pdf",
)


# ======================================================================================
# Small helpers
# ======================================================================================
def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_block() -> range:
    """This test process's own block of ports, below the kernel's ephemeral range.

    Binding to port 0 hands out a port from the ephemeral range, and every outgoing
    connection (to RabbitMQ, PostgreSQL, a service) takes its local port from the same
    range: between "free a moment ago" and the server's bind, a client may take it
    (CI saw `address already in use` that way). Below the range only our own servers
    bind; each pytest-xdist worker gets its own block so workers never pick alike.
    """
    low = 20000
    high = min(_ephemeral_range()[0], 32768)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    size = 1000
    blocks = max(1, (high - low) // size)
    start = low + (index % blocks) * size
    return range(start, start + size)


_next_port = itertools.count((os.getpid() * 7) % 1000)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port for a test server on `host`: free now, outside the ephemeral range, and
    not handed out before by this process (see `_port_block`)."""
    block = _port_block()
    for _ in range(len(block)):
        port = block[next(_next_port) % len(block)]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {block}")


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; return that.
    Fails the test with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.1f} s waiting for {message}")
        await asyncio.sleep(interval)


def make_settings(tmp_path: Path, amqp_url: str, **overrides: Any) -> Settings:
    """Settings for one test: data under `tmp_path`, broker `amqp_url`, no quiet hours,
    admin token `test-admin-token`, a fixed secret key, one SQLite file per service (and `accounts.db`, the identity store) under
    `tmp_path`, no SMTP/SMS (file outboxes), rate limits far above what a test sends and a
    short graceful timeout. `overrides` win
    (e.g. `events_database_url=database_url`, `**smtp_server.settings()`).

    Everything is passed explicitly so stray `KRANJ_*` variables of the shell do not leak
    into a test (init arguments take precedence over the environment in pydantic-settings).
    """
    tmp_path = Path(tmp_path)
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "amqp_url": amqp_url,
        "quiet_hours": "off",
        "admin_token": TEST_ADMIN_TOKEN,
        "secret_key": TEST_SECRET_KEY,
        "public_url": None,
        "smtp_host": None,
        "smtp_user": None,
        "smtp_password": None,
        "smtp_starttls": False,
        "sms_gateway_url": None,
        "sms_gateway_token": None,
        "log_format": "console",
        "graceful_timeout": 5.0,
        # Rate limits far above what any test sends; tests/integration/test_rate_limits.py
        # sets the real ones.
        **{f"rate_limit_{kind}": "100000/minute" for kind in GENEROUS_RATE_LIMITS},
    }
    for service in SERVICES:
        values[f"{service}_database_url"] = f"sqlite+aiosqlite:///{(tmp_path / f'{service}.db').resolve()}"
    values["accounts_database_url"] = (
        f"sqlite+aiosqlite:///{(tmp_path / 'accounts.db').resolve()}"  # the identity store
    )
    values.update(overrides)
    return Settings(**values)


def run_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking or `asyncio.run`-based code outside any running event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()
