"""The fault suite's own infrastructure: a throwaway RabbitMQ node and a throwaway
PostgreSQL cluster (never the shared ones: other people's tests run on those), and the
whole platform started as `make run` starts it (`kranj up` in a subprocess).

Session fixtures:
- `fault_rabbit`: a second RabbitMQ node (`kranjfaults-<random>@localhost`) on free ports,
  its data under a temp dir, `consumer_timeout` of `CONSUMER_TIMEOUT_MS` checked every
  second (for the SIGSTOP test). `stop_app()` / `start_app()` stop and start the broker
  application; `new_vhost()` gives a test a vhost of its own. Stopped at the end.
- `fault_postgres`: a private PostgreSQL cluster (initdb + pg_ctl as the `postgres` user,
  trust auth, a free port). `stop()` / `start()` restart it; `new_database()` an empty
  database. Stopped at the end.

Module fixtures: `rabbit_cluster` (a `RabbitCluster`: three private nodes
`kranjcluster<random>n<i>@localhost` clustered, `.leader(vhost, queue)`, `.new_vhost()`;
a node's `.kill_9()` kills its Erlang VM) and `cluster_haproxy` (an `HAProxy` in TCP mode in
front of the three, on a free port). Stopped and removed at the end.

Function fixtures: `fault_amqp_url` (a fresh vhost on the private node), `kranj_up`
(a factory: `kranj_up(env, name=...)` -> a `KranjUp` to `.start()`, stopped after the test).

`KranjUp` is `kranj up` in a subprocess (free ports, its own data dir): `.wait_ready()`,
`.child_pid(service)`, `.kill_child(service, signal)`, `.log()`, `.kranj(*args)` (the CLI
with the same environment). Helpers count what residents received: `received_emails`
(per recipient, at the SMTP server) and `received_sms` (per phone: distinct Idempotency-Keys,
i.e. text messages, and raw gateway requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.settings import SERVICES, TEST_ADMIN_TOKEN, TEST_SECRET_KEY, free_port, wait_until

KRANJ = Path(sys.executable).parent / "kranj"
RABBIT_BIN = Path(os.environ.get("KRANJ_TEST_RABBIT_BIN", "/usr/lib/rabbitmq/bin"))
CONSUMER_TIMEOUT_MS = 4000
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _as_user(user: str) -> list[str]:
    """Run a command as `user` when we are root (the broker and PostgreSQL refuse root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--"]
    return []


def _owned_tempdir(prefix: str, user: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


# ======================================================================================
# A private RabbitMQ node
# ======================================================================================
class RabbitNode:
    """One private node. `name` (default `kranjfaults<random>@localhost`) lets a
    `RabbitCluster` name its members; every node started by this suite, alone or clustered,
    runs as the same user with the same HOME and so the same Erlang cookie."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"kranjfaults{secrets.token_hex(3)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.base = _owned_tempdir("kranj-faults-rabbit-", "rabbitmq")
        self.proc: subprocess.Popen[bytes] | None = None
        home = Path("/var/lib/rabbitmq")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "KRANJ_"))},
            # As root the node runs as the `rabbitmq` user, with its Erlang cookie (made on first use).
            "HOME": str(home) if os.geteuid() == 0 else os.environ.get("HOME", str(Path.home())),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
        }

    def _write_config(self) -> None:
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"consumer_timeout = {CONSUMER_TIMEOUT_MS}\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        # The consumer timeout is checked on the channel tick (60 s by default): every second here.
        (self.base / "advanced.config").write_text("[{rabbit, [{channel_tick_interval, 1000}]}].\n")
        (self.base / "enabled_plugins").write_text("[].\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam("rabbitmq")
            for path in self.base.iterdir():
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def ctl(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        for attempt in range(3):
            proc = subprocess.run(
                [*_as_user("rabbitmq"), str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, "-q", *args],
                env=self.env,
                # the rabbitmq user's Erlang reads its working directory: not the checkout, which
                # may be private to its owner (a clone in `mktemp -d` failed with eacces)
                cwd=self.base,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            # The CLI's own Erlang node could not start (its few distribution ports, derived
            # from the node's, taken for a moment by another process): try again.
            if proc.returncode == 0 or "Distribution failed" not in proc.stderr + proc.stdout or attempt == 2:
                break
            time.sleep(1)
        if check and proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {(proc.stderr or proc.stdout).strip()}")
        return proc

    def start(self) -> None:
        self.launch()
        self.wait_running(90)

    def launch(self) -> None:
        """Start the node's VM without waiting for it (`wait_running` waits)."""
        if not (RABBIT_BIN / "rabbitmq-server").exists():
            pytest.fail(f"rabbitmq-server not found in {RABBIT_BIN} (apt-get install rabbitmq-server)", pytrace=False)
        self._write_config()
        self.proc = subprocess.Popen(
            [*_as_user("rabbitmq"), str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env,
            cwd=self.base,
            stdout=(self.base / "server.out").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def os_pid(self) -> int:
        """The OS pid of the node's Erlang VM (beam.smp)."""
        out = self.ctl("eval", "os:getpid().").stdout.strip().strip('"')
        return int(out)

    def kill_9(self, pid: int | None = None) -> int:
        """`kill -9` the node's Erlang VM (`pid`: its `os_pid()`, looked up beforehand to
        kill at a precise moment), as a crashed host would; returns the pid."""
        pid = pid or self.os_pid()
        os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        return pid

    def wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                out = (self.base / "server.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the private RabbitMQ node exited: {out}")
            if _port_open(self.port) and self.ctl("await_startup", "--timeout", "5", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                out = (self.base / "server.out").read_text(errors="replace")[-1500:]
                raise RuntimeError(
                    f"the private RabbitMQ node {self.name} did not start in {timeout:.0f} s: {out} {self.log()[-1500:]}"
                )
            time.sleep(0.3)

    def log(self) -> str:
        """The node's log file (warnings and errors)."""
        return "".join(p.read_text(errors="replace") for p in (self.base / "log").glob("*.log"))

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.wait_running(60)

    def new_vhost(self) -> str:
        vhost = f"faults-{secrets.token_hex(4)}"
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def queue_counts(self, vhost: str) -> dict[str, tuple[int, int]]:
        """queue -> (ready, unacked)."""
        out = self.ctl("list_queues", "-p", vhost, "name", "messages_ready", "messages_unacknowledged").stdout
        counts = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[1].isdigit():
                counts[parts[0]] = (int(parts[1]), int(parts[2]))
        return counts

    def stop(self, *, graceful: bool = True) -> None:
        """`rabbitmqctl stop`, or (`graceful=False`, a throwaway node) kill its VM at once."""
        alive = self.proc is None or self.proc.poll() is None  # not when it is known dead (kill_9)
        if graceful and alive:
            with contextlib.suppress(Exception):
                self.ctl("stop", timeout=60, check=False)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30 if graceful else 0.1)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def fault_rabbit() -> Iterator[RabbitNode]:
    node = RabbitNode()
    try:
        node.start()
    except BaseException:
        node.stop()
        raise
    yield node
    node.stop()


@pytest.fixture
def fault_amqp_url(fault_rabbit: RabbitNode) -> str:
    """A fresh vhost of this test's own on the private RabbitMQ node."""
    fault_rabbit.wait_running(90)  # a previous test may have stopped the application
    return fault_rabbit.new_vhost()


# ======================================================================================
# A private three-node RabbitMQ cluster, and HAProxy in front of it
# ======================================================================================
class RabbitCluster:
    """`size` private nodes (`kranjcluster<random>n<i>@localhost`, each a `RabbitNode` with
    its own ports and data dir, all with the same Erlang cookie), joined into one cluster:
    nodes 2.. `stop_app`, `join_cluster` the first, `start_app`. The platform declares its
    queues — every one, kranj.dead and the other kranj.* ones included — as quorum queues
    without `x-quorum-initial-group-size`, so each has a member on every node (the default
    group size, up to 5)."""

    def __init__(self, size: int = 3) -> None:
        tag = secrets.token_hex(3)
        self.nodes = [RabbitNode(f"kranjcluster{tag}n{i}@localhost") for i in range(1, size + 1)]

    @property
    def first(self) -> RabbitNode:
        return self.nodes[0]

    def live(self) -> RabbitNode:
        """A node whose VM is still running (commands go there)."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                return node
        raise RuntimeError("no node of the cluster is running")

    def start(self) -> None:
        for node in self.nodes:  # the VMs boot in parallel; joining is one by one
            node.launch()
        for node in self.nodes:
            node.wait_running(120)
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", self.first.name)
            node.start_app()
        running = self.first.ctl("eval", "length(rabbit_nodes:all_running()).").stdout.strip()
        if running != str(len(self.nodes)):
            raise RuntimeError(f"the cluster has {running} running nodes, not {len(self.nodes)}")

    def node(self, name: str) -> RabbitNode:
        return next(n for n in self.nodes if n.name == name)

    def new_vhost(self) -> str:
        """A fresh vhost; returns its name."""
        node = self.live()
        vhost = f"cluster-{secrets.token_hex(4)}"
        node.ctl("add_vhost", vhost)
        node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return vhost

    def leader(self, vhost: str, queue: str) -> RabbitNode:
        """The node that leads the quorum queue `queue`."""
        out = self.live().ctl("list_queues", "-p", vhost, "name", "leader").stdout
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[0] == queue:
                return self.node(parts[1].strip())
        raise RuntimeError(f"no leader of {queue} in {out!r}")

    def consumer_nodes(self, vhost: str, queue: str) -> list[RabbitNode]:
        """The nodes of the connections that consume from `queue` (from their channels' pids)."""
        out = self.live().ctl("list_consumers", "-p", vhost, "queue_name", "channel_pid").stdout
        nodes = []
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[0] == queue and (found := re.match(r"<([^@<>]+@[^.]+)\.", parts[1])):
                nodes.append(self.node(found.group(1)))
        return nodes

    def move_leaders(self, vhost: str, queues: list[str], to: RabbitNode, timeout: float = 60) -> None:
        """Make `to` the leader of the quorum queues `queues` (Ra's leadership transfer)."""
        names = ", ".join(f'<<"{q}">>' for q in queues)
        self.live().ctl(
            "eval",
            f'[begin {{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"{vhost}">>, queue, N)), '
            f"{{Ra, Leader}} = amqqueue:get_pid(Q), ra:transfer_leadership({{Ra, Leader}}, {{Ra, '{to.name}'}}) "
            f"end || N <- [{names}]].",
        )
        deadline = time.monotonic() + timeout
        while True:
            leaders = dict(row for row in self.queues(vhost, "leader") if len(row) == 2)
            if all(leaders.get(q) == to.name for q in queues):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the leaders of {queues} did not move to {to.name}: {leaders}")
            time.sleep(0.5)

    def queues(self, vhost: str, *items: str) -> list[list[str]]:
        out = self.live().ctl("list_queues", "-p", vhost, "name", *items).stdout
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        """Kill every node's VM (their data is thrown away with them)."""
        for node in reversed(self.nodes):
            node.stop(graceful=False)


class HAProxy:
    """HAProxy (Debian's `haproxy`) in TCP mode in front of `ports` on 127.0.0.1, on a free
    port: a node is checked every second, marked down after 2 failed checks (its sessions
    shut down at once) and up again after 2 good ones; new connections go round-robin."""

    def __init__(self, ports: list[int], base: Path) -> None:
        self.binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.port = free_port()
        self.base = base
        self.config = base / "haproxy.cfg"
        self.proc: subprocess.Popen[bytes] | None = None
        servers = "\n".join(
            f"    server node{i} 127.0.0.1:{port} check inter 1s fall 2 rise 2 on-marked-down shutdown-sessions"
            for i, port in enumerate(ports, start=1)
        )
        self.config.write_text(
            "global\n"
            "    maxconn 2000\n"
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 2s\n"
            # Longer than AMQP's heartbeat: an idle connection is the client's to close.
            "    timeout client 3h\n"
            "    timeout server 3h\n"
            "listen amqp\n"
            f"    bind 127.0.0.1:{self.port}\n"
            "    balance roundrobin\n"
            "    option tcpka\n"
            # A connection refused by a node not yet marked down is tried on another one.
            "    retries 2\n"
            "    option redispatch 1\n"
            f"{servers}\n"
        )

    def start(self) -> None:
        if not Path(self.binary).exists():
            pytest.fail("haproxy not found (apt-get install haproxy)", pytrace=False)
        self.proc = subprocess.Popen(
            [self.binary, "-db", "-f", str(self.config)],
            stdout=(self.base / "haproxy.out").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not _port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start: {(self.base / 'haproxy.out').read_text()[-2000:]}")
            time.sleep(0.1)

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """Three clustered private nodes for the module's tests; stopped and removed at the end."""
    cluster = RabbitCluster(3)
    try:
        try:
            cluster.start()
        except RuntimeError as exc:  # the machine, not the code under test: once more, on new ports
            print(f"\nthe cluster did not form, trying again with new nodes: {exc}")
            cluster.stop()
            cluster = RabbitCluster(3)
            cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster_haproxy(rabbit_cluster: RabbitCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxy]:
    """HAProxy in front of `rabbit_cluster`'s three nodes."""
    proxy = HAProxy([n.port for n in rabbit_cluster.nodes], tmp_path_factory.mktemp("haproxy"))
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()


# ======================================================================================
# A private PostgreSQL cluster
# ======================================================================================
class PgCluster:
    def __init__(self) -> None:
        bins = sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name))
        if not bins:
            pytest.fail(f"PostgreSQL server binaries not found ({PG_BIN_GLOB})", pytrace=False)
        self.bin = bins[-1]
        self.port = free_port()
        self.base = _owned_tempdir("kranj-faults-pg-", "postgres")
        self.data = self.base / "data"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        proc = subprocess.run(
            [*_as_user("postgres"), *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()[-2000:]}")

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        self.start()

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.base / "pg.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import asyncpg

        name = f"faults_{secrets.token_hex(4)}"

        async def create() -> None:
            conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        from support.settings import run_in_thread as _run_in_thread

        _run_in_thread(asyncio.run, create())
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def fault_postgres() -> Iterator[PgCluster]:
    cluster = PgCluster()
    try:
        cluster.init()
    except BaseException:
        cluster.destroy()
        raise
    yield cluster
    cluster.destroy()


# ======================================================================================
# The platform as `make run` starts it
# ======================================================================================
class KranjUp:
    """`kranj up` in a subprocess, with its own data dir and free ports."""

    def __init__(self, data_dir: Path, env: dict[str, str], name: str = "kranj-up") -> None:
        self.data_dir = data_dir
        self.ports = {s: free_port() for s in SERVICES}
        self.urls = {s: f"http://127.0.0.1:{p}" for s, p in self.ports.items()}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KRANJ_")},
            "KRANJ_DATA_DIR": str(data_dir),
            "KRANJ_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
            "KRANJ_SECRET_KEY": TEST_SECRET_KEY,
            "KRANJ_QUIET_HOURS": "off",
            "KRANJ_GRACEFUL_TIMEOUT": "5",
            "KRANJ_LOG_FORMAT": "console",
            "KRANJ_LOG_LEVEL": "WARNING",
            "KRANJ_SMS_PER_SECOND": "500",
            "KRANJ_EMAIL_PER_SECOND": "500",
            **{f"KRANJ_{s.upper()}_PORT": str(p) for s, p in self.ports.items()},
            **env,
        }
        self.log_path = data_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(KRANJ), "up"], env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.data_dir.parent
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def ready(self, services: tuple[str, ...] = SERVICES) -> bool:
        async with httpx.AsyncClient(timeout=2) as client:
            for service in services:
                try:
                    if (await client.get(f"{self.urls[service]}/readyz")).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
        return True

    async def wait_ready(self, timeout: float = 90, services: tuple[str, ...] = SERVICES) -> None:
        try:
            await wait_until(lambda: self.ready(services), timeout=timeout, interval=0.3, message="services ready")
        except BaseException:
            print(self.log()[-6000:])
            raise

    def child_pid(self, service: str) -> int | None:
        assert self.proc is not None
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid), "-f", "--", f" -m services\\.{service}$"],
            capture_output=True,
            text=True,
        ).stdout.split()
        return int(out[0]) if out else None

    def kill_child(self, service: str, sig: signal.Signals) -> int:
        pid = self.child_pid(service)
        assert pid is not None, f"{service} is not running"
        os.kill(pid, sig)
        return pid

    def stop(self, timeout: float = 40) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def kranj(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the `kranj` CLI with this system's environment."""
        return subprocess.run(
            [str(KRANJ), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.data_dir.parent,
            check=False,
        )


@pytest.fixture
async def kranj_up(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`system = kranj_up(env, name=...)`: a `KranjUp` (not started; call `.start()`), stopped after the test."""
    systems: list[KranjUp] = []

    def make(env: dict[str, str], name: str = "kranj-up", data_dir: Path | None = None) -> KranjUp:
        system = KranjUp(data_dir or tmp_path / name, env, name)
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.stop()


# ======================================================================================
# Helpers: residents, notices, counting what residents received
# ======================================================================================
KS_SAMPLE = ("primskovo", "center", "zlato-polje", "struzevo", "bitnje", "golnik")
# Slovenian mobile prefixes, one per `series`: SMS go only to mobile numbers (issue 15).
MOBILE_PREFIXES = ("40", "41", "51", "30", "31", "64", "71", "68", "69", "70")


def write_residents_csv(
    path: Path, count: int, *, prefix: str = "r", series: int = 0, ks: tuple[str, ...] = KS_SAMPLE
) -> list[tuple[str, str]]:
    """`count` residents with email and SMS, spread over `ks`; returns (email, phone) pairs.
    `series` (0-9) keeps the phone numbers of several imports into one system apart."""
    people = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=";")
        writer.writerow(["email", "phone", "ks", "topics", "channels", "language"])
        for i in range(count):
            email = f"{prefix}{i:04d}@example.si"
            phone = f"+386{MOBILE_PREFIXES[series]}{i:06d}"
            writer.writerow([email, phone, ks[i % len(ks)], "general", "email|sms", "sl"])
            people.append((email, phone))
    return people


def import_residents(
    system: KranjUp, count: int, *, prefix: str = "r", series: int = 0, ks: tuple[str, ...] = KS_SAMPLE
) -> list[tuple[str, str]]:
    path = system.data_dir.parent / f"{prefix}-residents.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    people = write_residents_csv(path, count, prefix=prefix, series=series, ks=ks)
    result = system.kranj("subscriber", "import", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return people


def notice_envelope(title: str, *, ks: list[str] | None = None, channels: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"title": title, "body": f"{title}: obvestilo za krajane.", "ks": ks or ["*"]}
    if channels:
        data["channels"] = channels
    return {
        "specversion": "1.0",
        "id": secrets.token_hex(16),
        "source": "/komunala-kranj/outages",
        "type": "si.kranj.notify.notice.requested.v1",
        "data": data,
    }


def received_emails(smtp_server: Any, title: str) -> Counter[str]:
    """recipient -> how many emails with `title` in the subject the SMTP server accepted."""
    counts: Counter[str] = Counter()
    for mail in smtp_server.messages:
        if title in mail.subject:
            for rcpt in mail.rcpt_tos:
                counts[rcpt.lower()] += 1
    return counts


def received_sms(sms_gateway: Any, title: str) -> tuple[Counter[str], Counter[str]]:
    """(phone -> distinct accepted Idempotency-Keys, phone -> accepted requests) for texts with `title`.
    The gateway of CONTRACT.md turns one Idempotency-Key into one text message, so the first
    count is what residents' phones receive; the second is what crossed the wire."""
    keys: dict[str, set[str]] = {}
    raw: Counter[str] = Counter()
    for request in sms_gateway.accepted:
        body = request.json or {}
        if title in str(body.get("text", "")):
            keys.setdefault(body["to"], set()).add(request.idempotency_key or "")
            raw[body["to"]] += 1
    return Counter({to: len(k) for to, k in keys.items()}), raw


def notify_db(system: KranjUp) -> Path:
    return system.data_dir / "notify.db"


def sqlite_scalar(path: Path, query: str, *args: Any) -> Any:
    """One value from a service's SQLite file (read-only; the service keeps writing)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(query, args).fetchone()[0]
    finally:
        conn.close()


def sent_for(db: Path, title: str, status: str = "sent") -> int:
    """Deliveries of the notice titled `title` in `status`."""
    return sqlite_scalar(
        db,
        "SELECT count(*) FROM deliveries d JOIN notices n ON n.id = d.notice_id WHERE n.title = ? AND d.status = ?",
        title,
        status,
    )
