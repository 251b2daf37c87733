"""Shared test infrastructure for every test folder: the real broker, real databases,
real SMTP and SMS sinks.

Fixtures (all documented below):

- `amqp_vhost` (session): one fresh RabbitMQ vhost for the whole run, as an AMQP URL.
- `amqp_url` (function): a fresh, isolated vhost per test (no test sees another's queues).
- `database_url` (function, parametrized "sqlite" / "postgresql"): an empty database.
- `pg_database_url` (function): an empty PostgreSQL database only.
- `settings_factory` -> `make_settings(tmp_path, amqp_url, **overrides)`.
- `smtp_server`: a real aiosmtpd server collecting messages (`SmtpSink`).
- `sms_gateway`: a real HTTP SMS gateway implementing CONTRACT.md (`SmsGateway`).
- `broker_proxy`: a TCP proxy in front of RabbitMQ that a test can cut, stall and restore.

Plain helpers: `free_port()`, `make_settings(...)`, `wait_until(...)`, `publish_bare(...)`
(publish like a shell `amqp-publish`: no AMQP properties at all), `rabbitmqctl(...)`,
`vhost_url(...)`, `vhost_of(...)`.
They live here so that `from conftest import make_settings, free_port` works from any test
module (pytest puts `tests/` on `sys.path`); inside tests prefer the fixtures.

The broker and PostgreSQL are required, never skipped: the suite must prove behaviour
against the real things. If one is missing, the fixtures fail with one clear line.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import email
import email.message
import email.policy
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings

RABBIT_HOST = os.environ.get("KRANJ_TEST_RABBIT_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("KRANJ_TEST_RABBIT_PORT", "5672"))
RABBIT_USER = "guest"
RABBIT_PASSWORD = "guest"
RABBITMQCTL = os.environ.get("KRANJ_TEST_RABBITMQCTL", "rabbitmqctl")
VHOST_PREFIX = "kranj-test-"

PG_HOST = os.environ.get("KRANJ_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("KRANJ_TEST_PG_PORT", "5432"))
PG_USERS = tuple(os.environ.get("KRANJ_TEST_PG_USERS", "root,postgres").split(","))
PG_DB_PREFIX = "kranj_t_"

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
)


# ======================================================================================
# Small helpers
# ======================================================================================
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host` (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
    values["accounts_database_url"] = f"sqlite+aiosqlite:///{(tmp_path / 'accounts.db').resolve()}"  # the identity store
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    """`make_settings(tmp_path, amqp_url, **overrides) -> Settings` (see its docstring)."""
    return make_settings


def _run_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking or `asyncio.run`-based code outside any running event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


# ======================================================================================
# RabbitMQ: one vhost per test
# ======================================================================================
_broker_problem: str | None = None
_broker_checked = False


def real_clock_env() -> dict[str, str]:
    """This process's environment without `faketime` (`make test-future` moves the clock of
    the tests and of the services they start). Tools that talk to the real-clock broker's
    Erlang node, such as `rabbitmqctl`, must keep the real clock or they cannot connect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKETIME")}
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p and "faketime" not in p]
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    return env


def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    """Run `rabbitmqctl -q <args>`; raises RuntimeError with its output on failure.

    It runs in a process group of its own that is killed whole on a timeout: killing only
    the `rabbitmqctl` script would leave its Erlang VM behind, holding one of the CLI's
    few distribution ports (35672-35682) until no rabbitmqctl on the machine can start."""
    try:
        proc = subprocess.Popen(
            [RABBITMQCTL, "-q", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=real_clock_env(),
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise RuntimeError(f"{RABBITMQCTL} not found on PATH") from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.communicate()
        raise RuntimeError(f"`{RABBITMQCTL} {' '.join(args)}` did not answer within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"`{RABBITMQCTL} {' '.join(args)}` failed ({proc.returncode}): {(stderr or stdout).strip()}")
    return stdout


def require_broker() -> None:
    """Fail (never skip) with one clear line when RabbitMQ is not usable for the tests."""
    global _broker_problem, _broker_checked
    if not _broker_checked:
        _broker_checked = True
        try:
            with socket.create_connection((RABBIT_HOST, RABBIT_PORT), timeout=3):
                pass
        except OSError as exc:
            _broker_problem = f"nothing accepts AMQP connections on {RABBIT_HOST}:{RABBIT_PORT} ({exc})"
        else:
            if shutil.which(RABBITMQCTL) is None:
                _broker_problem = f"`{RABBITMQCTL}` is not on PATH (needed to create a vhost per test)"
            else:
                try:
                    rabbitmqctl("list_vhosts", timeout=30)
                except RuntimeError as exc:
                    _broker_problem = str(exc)
    if _broker_problem:
        pytest.fail(
            f"RabbitMQ is required by the test suite and is not usable: {_broker_problem}. "
            f"Start RabbitMQ (guest/guest on {RABBIT_HOST}:{RABBIT_PORT}) and run the tests as a user "
            f"allowed to run rabbitmqctl.",
            pytrace=False,
        )


def vhost_url(vhost: str, host: str = RABBIT_HOST, port: int = RABBIT_PORT) -> str:
    return f"amqp://{RABBIT_USER}:{RABBIT_PASSWORD}@{host}:{port}/{urllib.parse.quote(vhost, safe='')}"


def _erlang_list(names: list[str]) -> str:
    return "[" + ", ".join(f'<<"{n}">>' for n in names) + "]"


def _create_vhosts(count: int) -> list[str]:
    """`count` fresh vhosts with full rights for guest. One `rabbitmqctl eval` does a whole
    batch (~0.4 s for several, where `add_vhost` + `set_permissions` cost ~0.6 s each); if
    the broker's internals differ, fall back to the documented commands."""
    names = [f"{VHOST_PREFIX}{secrets.token_hex(5)}" for _ in range(count)]
    if _VhostPool.use_eval:
        expr = (
            "[begin ok = rabbit_vhost:add(V, <<\"kranj-tests\">>), "
            f"ok = rabbit_auth_backend_internal:set_permissions(<<\"{RABBIT_USER}\">>, V, "
            "<<\".*\">>, <<\".*\">>, <<\".*\">>, <<\"kranj-tests\">>), V end "
            f"|| V <- {_erlang_list(names)}]."
        )
        try:
            out = rabbitmqctl("eval", expr)
            if all(name in out for name in names):
                return names
        except RuntimeError:
            pass
        _VhostPool.use_eval = False
        _delete_vhosts(names)  # whatever part of the batch was made
    for name in names:
        rabbitmqctl("add_vhost", name)
        rabbitmqctl("set_permissions", "-p", name, RABBIT_USER, ".*", ".*", ".*")
    return names


def _delete_vhosts(names: list[str]) -> None:
    if not names:
        return
    if _VhostPool.use_eval:
        expr = f"[rabbit_vhost:delete(V, <<\"kranj-tests\">>) || V <- {_erlang_list(names)}]."
        with contextlib.suppress(RuntimeError):
            rabbitmqctl("eval", expr)
            return
    for name in names:
        with contextlib.suppress(RuntimeError):
            rabbitmqctl("delete_vhost", name)


class _VhostPool:
    """Makes fresh vhosts in batches ahead of need and deletes used ones in batches, in a
    background thread, so a vhost per test costs the suite almost nothing."""

    use_eval = os.environ.get("KRANJ_TEST_VHOST_EVAL", "1") != "0"
    BATCH = 6
    DELETE_BATCH = 12

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="vhosts")
        self._ready: collections.deque[str] = collections.deque()
        self._batch: concurrent.futures.Future[list[str]] | None = None
        self._used: list[str] = []
        self._deletions: list[concurrent.futures.Future[None]] = []
        self._lock = threading.Lock()

    def _refill(self) -> None:  # with the lock held
        if self._batch is None and len(self._ready) <= 2:
            self._batch = self._executor.submit(_create_vhosts, self.BATCH)

    def take(self) -> str:
        while True:
            with self._lock:
                if self._batch is not None and self._batch.done():
                    batch, self._batch = self._batch, None
                    self._ready.extend(batch.result())  # raises what rabbitmqctl said
                if self._ready:
                    name = self._ready.popleft()
                    self._refill()
                    return name
                self._refill()
                batch = self._batch
            assert batch is not None
            concurrent.futures.wait([batch], timeout=120)

    def give_back(self, name: str) -> None:
        with self._lock:
            self._used.append(name)
            if len(self._used) >= self.DELETE_BATCH:
                used, self._used = self._used, []
                self._deletions.append(self._executor.submit(_delete_vhosts, used))

    def close(self) -> None:
        with self._lock:
            leftovers = [*self._used, *self._ready]
            self._used, self._ready = [], collections.deque()
            if self._batch is not None:
                with contextlib.suppress(Exception):
                    leftovers += self._batch.result(timeout=120)
                self._batch = None
        self._deletions.append(self._executor.submit(_delete_vhosts, leftovers))
        concurrent.futures.wait(self._deletions, timeout=120)
        self._executor.shutdown(wait=True)


@pytest.fixture(scope="session")
def _vhost_pool() -> Iterator[_VhostPool]:
    require_broker()
    pool = _VhostPool()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def amqp_vhost(_vhost_pool: _VhostPool) -> Iterator[str]:
    """Session scope: a fresh vhost `kranj-test-<random>` with full rights for guest,
    as `amqp://guest:guest@127.0.0.1:5672/<vhost>` (vhost URL-encoded). Deleted at the end
    of the run. Shared by every test that asks for it: use `amqp_url` for isolation."""
    name = _vhost_pool.take()
    yield vhost_url(name)
    _vhost_pool.give_back(name)


@pytest.fixture
def amqp_url(_vhost_pool: _VhostPool) -> Iterator[str]:
    """Function scope: an AMQP URL to a vhost of this test's own (created fresh, deleted
    afterwards), so queues, bindings and dead letters of other tests are invisible."""
    name = _vhost_pool.take()
    yield vhost_url(name)
    _vhost_pool.give_back(name)


def vhost_of(url: str) -> str:
    """The (decoded) vhost of an AMQP URL."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/")) or "/"


async def publish_bare(
    url: str, body: bytes | str, *, routing_key: str, exchange: str = "kranj", timeout: float = 10.0
) -> None:
    """Publish `body` the way the plainest AMQP client does (a shell `amqp-publish`, another
    city's Java system): a content header with NO properties at all (no content_type,
    message_id, type, headers, delivery_mode). aio-pika/aiormq cannot do this (aiormq
    always adds a message_id and delivery_mode), so this speaks AMQP 0-9-1 itself with pamqp.
    Waits for the broker's publisher confirm (a channel-level switch; it does not touch the
    message), so the message is on its queues when this returns."""
    from pamqp import body as amqp_body
    from pamqp import commands, frame, header
    from pamqp.exceptions import UnmarshalingException

    raw = body.encode() if isinstance(body, str) else body
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 5672), timeout
    )
    buffer = b""

    async def expect(kind: type) -> Any:
        nonlocal buffer
        while True:
            try:
                used, _channel, value = frame.unmarshal(buffer)
            except UnmarshalingException:
                chunk = await asyncio.wait_for(reader.read(65536), timeout)
                if not chunk:
                    raise ConnectionError("the broker closed the connection") from None
                buffer += chunk
                continue
            buffer = buffer[used:]
            if isinstance(value, kind):
                return value
            if isinstance(value, (commands.Connection.Close, commands.Channel.Close)):
                raise ConnectionRefusedError(f"broker refused: {value.reply_code} {value.reply_text}")

    def send(channel: int, *values: Any) -> None:
        for value in values:
            writer.write(frame.marshal(value, channel))

    try:
        writer.write(header.ProtocolHeader().marshal())
        await expect(commands.Connection.Start)
        credentials = f"\0{urllib.parse.unquote(parts.username or 'guest')}\0{urllib.parse.unquote(parts.password or 'guest')}"
        send(0, commands.Connection.StartOk(client_properties={}, mechanism="PLAIN", response=credentials, locale="en_US"))
        tune = await expect(commands.Connection.Tune)
        send(0, commands.Connection.TuneOk(channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
        send(0, commands.Connection.Open(virtual_host=vhost_of(url)))
        await expect(commands.Connection.OpenOk)
        send(1, commands.Channel.Open())
        await expect(commands.Channel.OpenOk)
        send(1, commands.Confirm.Select())
        await expect(commands.Confirm.SelectOk)
        max_body = tune.frame_max - 8 if tune.frame_max else 131072
        send(
            1,
            commands.Basic.Publish(exchange=exchange, routing_key=routing_key),
            header.ContentHeader(body_size=len(raw), properties=commands.Basic.Properties()),
            *(amqp_body.ContentBody(raw[i : i + max_body]) for i in range(0, len(raw), max_body)),
        )
        await expect(commands.Basic.Ack)
        send(1, commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        await expect(commands.Channel.CloseOk)
        send(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        await expect(commands.Connection.CloseOk)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


# ======================================================================================
# Databases
# ======================================================================================
_pg_admin: str | None = None


def _pg_admin_dsn() -> str:
    """The first of postgresql://root@…/postgres, postgresql://postgres@…/postgres that works."""
    global _pg_admin
    if _pg_admin is not None:
        return _pg_admin
    import asyncpg

    problems = []
    for user in PG_USERS:
        dsn = f"postgresql://{user}@{PG_HOST}:{PG_PORT}/postgres"

        async def probe(dsn: str = dsn) -> None:
            conn = await asyncpg.connect(dsn, timeout=5)
            await conn.close()

        try:
            _run_in_thread(asyncio.run, probe())
        except Exception as exc:  # noqa: BLE001 - collect, report all
            problems.append(f"{dsn}: {type(exc).__name__}: {exc}")
            continue
        _pg_admin = dsn
        return dsn
    pytest.fail(
        "PostgreSQL is required by the test suite and is not usable: " + "; ".join(problems),
        pytrace=False,
    )


def _pg_execute(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(_pg_admin_dsn(), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run_in_thread(asyncio.run, run())


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new database `kranj_t_<random>`; yields its `postgresql+asyncpg://` URL and drops it
    (WITH (FORCE), so leftover connections do not block the drop)."""
    admin = _pg_admin_dsn()
    name = f"{PG_DB_PREFIX}{secrets.token_hex(6)}"
    _pg_execute(f'CREATE DATABASE "{name}"')
    user = urllib.parse.urlsplit(admin).username
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


# ======================================================================================
# SMTP sink
# ======================================================================================
@dataclass
class ReceivedMail:
    """One message the SMTP sink accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: email.message.EmailMessage
    auth_login: str | None = None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def part(self, content_type: str) -> str | None:
        """The decoded text of the first `text/plain` / `text/html` part, if any."""
        for part in self.message.walk():
            if part.get_content_type() == content_type and not part.is_multipart():
                return str(part.get_content())
        return None


class SmtpSink:
    """A real SMTP server (aiosmtpd, own thread) on 127.0.0.1:`port`.

    - `messages`: every accepted `ReceivedMail` (parsed with `email.policy.default`).
    - `await wait_for(count, timeout=10)`: the first `count` messages, or the test fails.
    - `replies`: a queue of SMTP replies for the next DATA commands, e.g.
      `sink.replies.extend(["451 4.3.0 try later", "550 5.1.1 no such user"])`; when empty
      messages are accepted with "250 OK". Refused messages are not in `messages` but are
      counted in `refused`.
    - Authentication is optional; a client that logs in must use `username`/`password`
      (the login is recorded on each message).
    - `settings()`: the `Settings` overrides that point a service at this server.
    """

    username = "kranj"
    password = "smtp-test-password"

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.messages: list[ReceivedMail] = []
        self.replies: collections.deque[str] = collections.deque()
        self.refused: list[bytes] = []
        self._controller: Any = None

    # aiosmtpd handler hook
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        if self.replies:
            reply = self.replies.popleft()
            if not reply.startswith("2"):
                self.refused.append(raw)
                return reply
        login = getattr(session, "login_data", None) or getattr(session, "auth_data", None)
        if isinstance(login, bytes):
            login = login.decode(errors="replace")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.messages.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw,
                message=message,  # type: ignore[arg-type]
                auth_login=str(login) if login else None,
            )
        )
        return "250 OK"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        login = getattr(auth_data, "login", b"") or b""
        password = getattr(auth_data, "password", b"") or b""
        ok = login == self.username.encode() and password == self.password.encode()
        return AuthResult(success=ok, handled=False, auth_data=login.decode() if ok else None)

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(
            self,
            hostname=self.host,
            port=self.port,
            authenticator=self._authenticate,
            auth_require_tls=False,
            auth_required=False,
            ready_timeout=10,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        await wait_until(
            lambda: len(self.messages) >= count,
            timeout=timeout,
            message=f"{count} email(s) at the SMTP sink (got {len(self.messages)})",
        )
        return self.messages[:count]

    def settings(self) -> dict[str, Any]:
        return {"smtp_host": self.host, "smtp_port": self.port, "smtp_starttls": False}


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


# ======================================================================================
# SMS gateway
# ======================================================================================
@dataclass
class SmsRequest:
    """One request the SMS gateway received, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int
    received_at: float = field(default_factory=time.monotonic)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class SmsGateway:
    """The SMS gateway of CONTRACT.md as a real HTTP server (uvicorn + Starlette in a thread).

    `POST <url>` with `Authorization: Bearer <token>`, `Idempotency-Key` and JSON
    `{"to", "text", "reference"}`. Answers:
    - the next code of `statuses` if any (e.g. `gw.statuses.extend([500, 429, 200])`);
    - else 401 for a wrong/missing bearer token, 422 for a body that breaks the contract
      (`problems` says why);
    - else 200 with `{"id": …, "status": "accepted"}`.
    `delay` (seconds) makes every answer slow (simulate "no answer" with a client timeout).
    `requests` keeps every request in order; `accepted` only the 2xx ones;
    `await wait_for(count, timeout)` waits for `count` requests of any outcome.
    """

    token = "test-sms-token"

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.url = f"http://{self.host}:{self.port}/sms"
        self.statuses: collections.deque[int] = collections.deque()
        self.requests: list[SmsRequest] = []
        self.problems: list[str] = []
        self.delay = 0.0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def receive(request: Request) -> JSONResponse:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            status, answer = self._decide(headers, payload)
            if self.delay:
                await asyncio.sleep(self.delay)
            self.requests.append(
                SmsRequest(path=request.url.path, headers=headers, body=body, json=payload, status=status)
            )
            return JSONResponse(answer, status_code=status)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])

    def _decide(self, headers: dict[str, str], payload: Any) -> tuple[int, dict[str, Any]]:
        if self.statuses:
            status = self.statuses.popleft()
            return status, {"status": "programmed", "code": status}
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "bad or missing bearer token"}
        problems = []
        if not isinstance(payload, dict):
            problems.append("body is not a JSON object")
        else:
            for key in ("to", "text", "reference"):
                if not isinstance(payload.get(key), str) or not payload.get(key):
                    problems.append(f"{key} missing")
            to = payload.get("to")
            if isinstance(to, str) and not (to.startswith("+") and to[1:].isdigit()):
                problems.append(f"to is not E.164: {to!r}")
        if not headers.get("idempotency-key"):
            problems.append("Idempotency-Key header missing")
        if problems:
            self.problems.extend(problems)
            return 422, {"error": "; ".join(problems)}
        return 200, {"id": secrets.token_hex(8), "status": "accepted"}

    @property
    def accepted(self) -> list[SmsRequest]:
        return [r for r in self.requests if r.accepted]

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self._app(), host=self.host, port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="sms-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test SMS gateway did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[SmsRequest]:
        await wait_until(
            lambda: len(self.requests) >= count,
            timeout=timeout,
            message=f"{count} request(s) at the SMS gateway (got {len(self.requests)})",
        )
        return self.requests[:count]

    def settings(self) -> dict[str, Any]:
        return {"sms_gateway_url": self.url, "sms_gateway_token": self.token}


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


# ======================================================================================
# A TCP proxy in front of RabbitMQ, to cut the broker away and bring it back
# ======================================================================================
class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`. `await cut()` drops every live connection and
    refuses new ones (as a dead broker or a broken network would); `await restore()`
    listens again on the same port. `stall()` keeps connections open but swallows every
    byte (a broker that stopped answering, a silent network); `unstall()` ends that.
    Runs in the test's event loop."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far
        self.stalled = False  # when True, bytes are swallowed in both directions

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port, reuse_address=True)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        for task in tasks:
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.stalled:
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.abort()  # RST, not a polite close
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restore(self) -> None:
        self.stalled = False
        if self._server is None:
            await self.start()

    def stall(self) -> None:
        self.stalled = True

    def unstall(self) -> None:
        self.stalled = False

    @property
    def is_up(self) -> bool:
        return self._server is not None


@dataclass
class BrokerProxy:
    """`url`: the test's vhost reached through `proxy` (use it in `make_settings`)."""

    proxy: TcpProxy
    url: str
    direct_url: str

    async def cut(self) -> None:
        await self.proxy.cut()

    async def restore(self) -> None:
        await self.proxy.restore()

    def stall(self) -> None:
        self.proxy.stall()

    def unstall(self) -> None:
        self.proxy.unstall()


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


# ======================================================================================
# Real Chromium (Debian's /usr/bin/chromium) driven by Playwright, and axe-core
# ======================================================================================
CHROMIUM = os.environ.get("KRANJ_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


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


async def axe_serious_violations(page: Any) -> list[str]:
    """Run axe-core (WCAG 2.1 A/AA rules) on `page`; the serious and critical violations,
    one readable line each (empty list = the page passes)."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(
        page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    )
    found = []
    for violation in results.response.get("violations", []):
        if violation.get("impact") in ("serious", "critical"):
            targets = [", ".join(node.get("target", [])) for node in violation.get("nodes", [])][:3]
            found.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets}")
    return found


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app (with its lifespan) on a free port of 127.0.0.1 inside this
    event loop, for a real browser; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=30, message="the app to start serving")
        if task.done():
            task.result()  # raise its startup error
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
