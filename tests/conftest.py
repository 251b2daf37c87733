"""Fixtures for every test folder: the real broker, real databases, real SMTP and SMS
sinks, a TCP proxy and Chromium. This file only registers fixtures; what they are built
from is the `tests/support/` package (import it as `support.<module>`):

- `support.settings` — `make_settings(tmp_path, amqp_url, **overrides)`, `wait_until`,
  `free_port`, `run_in_thread`, the test tokens (`TEST_ADMIN_TOKEN`, `TEST_SECRET_KEY`).
- `support.rabbit` — `rabbitmqctl`, `real_clock_env`, `require_broker`, `VhostPool`,
  `vhost_url`, `vhost_of`, `publish_bare` (publish like a shell `amqp-publish`).
- `support.postgres` — `fresh_pg_database`.
- `support.smtp` — `SmtpSink`; `support.sms` — `SmsGateway` (CONTRACT.md's gateway).
- `support.proxy` — `TcpProxy`, `BrokerProxy`.
- `support.browser` — `CHROMIUM`, `axe_serious_violations`, `serve_app`.
- `support.times` — times built from the one clock, never today's date.

Fixtures:

- `amqp_vhost` (session): one fresh RabbitMQ vhost for the whole run, as an AMQP URL.
- `amqp_url` (function): a fresh, isolated vhost per test (no test sees another's queues).
- `database_url` (function, parametrized "sqlite" / "postgresql"): an empty database.
- `pg_database_url` (function): an empty PostgreSQL database only.
- `settings_factory` -> `make_settings`.
- `smtp_server`, `sms_gateway`, `broker_proxy`, `browser`.

The broker and PostgreSQL are required, never skipped: the suite must prove behaviour
against the real things. If one is missing, the fixtures fail with one clear line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import CHROMIUM, CHROMIUM_ARGS, axe_serious_violations, serve_app
from support.postgres import fresh_pg_database
from support.proxy import BrokerProxy, TcpProxy
from support.rabbit import RABBIT_HOST, RABBIT_PORT, VhostPool, rabbitmqctl, require_broker, vhost_of, vhost_url
from support.settings import DATABASE_KINDS, TEST_ADMIN_TOKEN, make_settings, wait_until
from support.sms import SmsGateway
from support.smtp import SmtpSink

from shared.settings import Settings

# A few test modules still import these from here (being moved); new ones import from support.<module>.
STILL_IMPORTED_FROM_CONFTEST = (axe_serious_violations, serve_app, rabbitmqctl, TEST_ADMIN_TOKEN, wait_until)


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    """`make_settings(tmp_path, amqp_url, **overrides) -> Settings` (see its docstring)."""
    return make_settings



@pytest.fixture(scope="session")
def _vhost_pool() -> Iterator[VhostPool]:
    require_broker()
    pool = VhostPool()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def amqp_vhost(_vhost_pool: VhostPool) -> Iterator[str]:
    """Session scope: a fresh vhost `kranj-test-<random>` with full rights for guest,
    as `amqp://guest:guest@127.0.0.1:5672/<vhost>` (vhost URL-encoded). Deleted at the end
    of the run. Shared by every test that asks for it: use `amqp_url` for isolation."""
    name = _vhost_pool.take()
    yield vhost_url(name)
    _vhost_pool.give_back(name)


@pytest.fixture
def amqp_url(_vhost_pool: VhostPool) -> Iterator[str]:
    """Function scope: an AMQP URL to a vhost of this test's own (created fresh, deleted
    afterwards), so queues, bindings and dead letters of other tests are invisible."""
    name = _vhost_pool.take()
    yield vhost_url(name)
    _vhost_pool.give_back(name)



@pytest.fixture(params=DATABASE_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for one service, once per kind: "sqlite" gives
    `sqlite+aiosqlite:///<tmp_path>/x.db`; "postgresql" creates `kranj_t_<random>` and
    gives `postgresql+asyncpg://…` (dropped afterwards). Run the service's migrations
    yourself (`await shared.migrations.upgrade_async(service, database_url)`)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{(tmp_path / 'x.db').resolve()}"
    else:
        with fresh_pg_database() as url:
            yield url


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """An empty PostgreSQL database (`postgresql+asyncpg://…`), dropped afterwards; for
    tests that are about PostgreSQL only (row locks, concurrency)."""
    with fresh_pg_database() as url:
        yield url



@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    """A real SMTP server on a free port of 127.0.0.1 that keeps every message it accepts
    (`.messages`: raw bytes, parsed `EmailMessage`, envelope sender and recipients),
    with `await .wait_for(count, timeout)` and programmable failures (`.replies`).
    Point a service at it with `make_settings(..., **smtp_server.settings())`."""
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()



@pytest.fixture
def sms_gateway() -> Iterator[SmsGateway]:
    """A real HTTP SMS gateway on a free port of 127.0.0.1 (see `SmsGateway`): records
    every request with its Authorization and Idempotency-Key headers, answers 200 by
    default, or the programmed `statuses` in order. `await .wait_for(count, timeout)`.
    Point a service at it with `make_settings(..., **sms_gateway.settings())`."""
    gateway = SmsGateway()
    gateway.start()
    yield gateway
    gateway.stop()



@pytest.fixture
async def broker_proxy(amqp_url: str) -> AsyncIterator[BrokerProxy]:
    """A TCP proxy in front of RabbitMQ for this test's vhost: `.url` goes through the proxy,
    `.direct_url` straight to the broker; `await .cut()` kills every connection through it
    and refuses new ones, `await .restore()` accepts connections again; `.stall()` /
    `.unstall()` keep connections open but silent."""
    proxy = TcpProxy(RABBIT_HOST, RABBIT_PORT)
    await proxy.start()
    yield BrokerProxy(proxy, vhost_url(vhost_of(amqp_url), "127.0.0.1", proxy.port), amqp_url)
    await proxy.cut()



@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A real headless Chromium (Debian's package; `playwright install` cannot download
    here). Fails with one clear line when Chromium is missing: `.ci/run` installs it."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()
