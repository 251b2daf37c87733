"""The real RabbitMQ for tests: `rabbitmqctl`, a vhost per test (`VhostPool`), `publish_bare`."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import urllib.parse
from typing import Any

import pytest

RABBIT_HOST = os.environ.get("KRANJ_TEST_RABBIT_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("KRANJ_TEST_RABBIT_PORT", "5672"))
RABBIT_USER = "guest"
RABBIT_PASSWORD = "guest"
RABBITMQCTL = os.environ.get("KRANJ_TEST_RABBITMQCTL", "rabbitmqctl")
VHOST_PREFIX = "kranj-test-"

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


# `rabbitmqctl` commands of users and rights as one `rabbitmqctl eval`: each command starts
# an Erlang VM of its own (~0.6 s), and the broker-privilege tests ran about 20 per test.
# The internal functions the commands call, with the same arguments; `-p VHOST` first.
_BATCHED = {
    "add_vhost": ("rabbit_vhost:add", 1),
    "delete_vhost": ("rabbit_vhost:delete", 1),
    "add_user": ("rabbit_auth_backend_internal:add_user", 2),
    "delete_user": ("rabbit_auth_backend_internal:delete_user", 1),
    "set_permissions": ("rabbit_auth_backend_internal:set_permissions", 4),
    "set_topic_permissions": ("rabbit_auth_backend_internal:set_topic_permissions", 4),
}


def _erlang_binary(text: str) -> str:
    """`text` as an Erlang binary of its UTF-8 bytes: no quote, backslash or `$` for Debian's
    `rabbitmqctl` wrapper, which passes its arguments through `sh -c` again."""
    return "<<" + ",".join(str(b) for b in text.encode()) + ">>"


def _erlang_call(command: list[str]) -> str | None:
    """`command` (rabbitmqctl's arguments) as the Erlang call it makes, or None if not batched."""
    name, *args = command
    if name not in _BATCHED:
        return None
    function, arity = _BATCHED[name]
    if name.startswith("set_"):  # set_permissions -p VHOST USER ... -> (User, VHost, ...)
        if args[:1] != ["-p"] or len(args) != 2 + arity:
            return None
        vhost, user, *rest = args[1:]
        args = [user, vhost, *rest]
    elif len(args) != arity:
        return None
    return f"{function}({', '.join(_erlang_binary(a) for a in [*args, 'kranj-tests'])})"


def rabbitmqctl_batch(commands: list[list[str]], *, cleanup: bool = False) -> None:
    """Run `commands` (each rabbitmqctl's arguments, in order): all in one `rabbitmqctl eval`
    when each is of users, vhosts or rights, else one by one. `cleanup`: deleting what is
    already gone is no failure, and one failure does not stop the rest."""
    if not commands:
        return
    calls = [_erlang_call(c) for c in commands]
    if VhostPool.use_eval and all(calls):
        expr = "[" + ", ".join(f"(catch {c})" if cleanup else c for c in calls) + "]."
        try:
            out = "".join(rabbitmqctl("eval", expr).split())  # a long list is printed on several lines
        except RuntimeError:
            if not cleanup:
                raise
        else:
            if cleanup or out == "[" + ",".join(["ok"] * len(calls)) + "]":
                return
            raise RuntimeError(f"rabbitmqctl eval of {len(calls)} commands: {out}")
    for command in commands:
        try:
            rabbitmqctl(*command)
        except RuntimeError:
            if not cleanup:
                raise


def vhost_url(vhost: str, host: str = RABBIT_HOST, port: int = RABBIT_PORT) -> str:
    return f"amqp://{RABBIT_USER}:{RABBIT_PASSWORD}@{host}:{port}/{urllib.parse.quote(vhost, safe='')}"


def _create_vhosts(count: int) -> list[str]:
    """`count` fresh vhosts with full rights for guest. One `rabbitmqctl eval` does a whole
    batch (~0.4 s for several, where `add_vhost` + `set_permissions` cost ~0.6 s each); if
    the broker's internals differ, fall back to the documented commands."""
    names = [f"{VHOST_PREFIX}{secrets.token_hex(5)}" for _ in range(count)]
    commands = [
        command
        for name in names
        for command in (["add_vhost", name], ["set_permissions", "-p", name, RABBIT_USER, ".*", ".*", ".*"])
    ]
    if VhostPool.use_eval:
        try:
            rabbitmqctl_batch(commands)
            return names
        except RuntimeError:
            VhostPool.use_eval = False
            _delete_vhosts(names)  # whatever part of the batch was made
    rabbitmqctl_batch(commands)  # one by one now
    return names


def _delete_vhosts(names: list[str]) -> None:
    rabbitmqctl_batch([["delete_vhost", name] for name in names], cleanup=True)


class VhostPool:
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
