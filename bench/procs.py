"""Services as real processes (what `kranj run <service>` starts), a fresh RabbitMQ vhost,
a fresh PostgreSQL database, and the resident set size of a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
RABBIT = os.environ.get("BENCH_RABBIT", "127.0.0.1:5672")
PG = os.environ.get("BENCH_PG", "127.0.0.1:5432")
ADMIN_TOKEN = "bench-admin-token"
SECRET_KEY = "bench-secret-key-not-for-production-0123456789abcdef"
UNLIMITED = "100000"  # KRANJ_SMS_PER_SECOND / KRANJ_EMAIL_PER_SECOND while benchmarking


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=120).stdout


class Vhost:
    """A fresh vhost `kranj-bench-<random>` with rights for guest; deleted on exit."""

    def __init__(self) -> None:
        self.name = f"kranj-bench-{secrets.token_hex(4)}"

    def __enter__(self) -> Vhost:
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            rabbitmqctl("delete_vhost", self.name)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{RABBIT}/{urllib.parse.quote(self.name, safe='')}"


async def _pg(sql: str) -> None:
    import asyncpg

    last: Exception | None = None
    for user in ("root", "postgres"):
        try:
            conn = await asyncpg.connect(f"postgresql://{user}@{PG}/postgres", timeout=5)
        except Exception as exc:  # noqa: BLE001 - try the next user
            last = exc
            continue
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
        return
    raise RuntimeError(f"PostgreSQL at {PG} is not usable: {last}")


async def pg_user() -> str:
    import asyncpg

    for user in ("root", "postgres"):
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(f"postgresql://{user}@{PG}/postgres", timeout=5)
            await conn.close()
            return user
    raise RuntimeError(f"PostgreSQL at {PG} is not usable")


class PgDatabase:
    """A fresh PostgreSQL database `kranj_bench_<random>`, dropped on exit."""

    def __init__(self) -> None:
        self.name = f"kranj_bench_{secrets.token_hex(4)}"
        self.url = ""

    async def __aenter__(self) -> PgDatabase:
        user = await pg_user()
        await _pg(f'CREATE DATABASE "{self.name}"')
        self.url = f"postgresql+asyncpg://{user}@{PG}/{self.name}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await _pg(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def base_env(amqp_url: str, data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRANJ_")}
    env.update(
        {
            "KRANJ_AMQP_URL": amqp_url,
            "KRANJ_DATA_DIR": str(data_dir),
            "KRANJ_QUIET_HOURS": "off",
            # The benchmark publishes its notices as an outside system would (a plain AMQP
            # message, no user_id) and marks them urgent, as an alert to a whole KS is; the
            # sender registry (shared/senders.py) gives anonymous senders ordinary rights only,
            # so here they may send urgent notices too.
            "KRANJ_SENDERS": '{"*": {"description": "the benchmark publisher", "urgent": true}}',
            "KRANJ_SECRET_KEY": SECRET_KEY,
            "KRANJ_ADMIN_TOKEN": ADMIN_TOKEN,
            "KRANJ_LOG_LEVEL": "WARNING",
            "KRANJ_LOG_FORMAT": "console",
            # The per-channel rate limits (default 10 SMS/s, 50 emails/s per process) are
            # lifted: the benchmark measures how fast notify can go, not the chosen limit.
            "KRANJ_SMS_PER_SECOND": UNLIMITED,
            "KRANJ_EMAIL_PER_SECOND": UNLIMITED,
            # The per-address limits of the public endpoints (issue #8) would answer most of the
            # booking phase's requests from one address with 429: off, to measure booking itself.
            "KRANJ_RATE_LIMIT_ENABLED": "false",
            # As many SMTP connections as the plain-client ceiling uses (default 1; see README).
            "KRANJ_SMTP_CONNECTIONS": os.environ.get("BENCH_SMTP_CONNECTIONS", "16"),
            # What the platform is heading to: delivery outcomes only as `notify.delivery.outcomes`
            # v2 pages, one per group commit, without the deprecated per-delivery v1 events (whose
            # default turns false after 2027-06-30). BENCH_DELIVERY_FACTS_V1=1 measures both.
            "KRANJ_DELIVERY_FACTS_V1": "true" if os.environ.get("BENCH_DELIVERY_FACTS_V1") == "1" else "false",
        }
    )
    if os.environ.get("BENCH_PREFETCH"):  # to try another KRANJ_PREFETCH
        env["KRANJ_PREFETCH"] = os.environ["BENCH_PREFETCH"]
    if os.environ.get("BENCH_DEFAULT_RATES") == "1":
        env.pop("KRANJ_SMS_PER_SECOND")
        env.pop("KRANJ_EMAIL_PER_SECOND")
    env.update(extra or {})
    return env


class Service:
    """One service as `python -m services.<name>` (= `kranj run <name>`) on a free port."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, *, profile: Path | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, f"KRANJ_{name.upper()}_PORT": str(self.port)}
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.profiler: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", f"services.{self.name}"]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if self.profile is not None:
            # py-spy samples the thread holding the GIL (idle waits left out) as collapsed
            # stacks; it writes them when the service exits (bench/profile.py summarises them)
            py_spy = Path(sys.executable).with_name("py-spy")
            self.profiler = subprocess.Popen(
                [str(py_spy), "record", "--format", "raw", "--rate", "250", "--nonblocking", "--gil",
                 "--pid", str(self.proc.pid), "-o", str(self.profile)],  # fmt: skip
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s; see {self.log_path}")
                await asyncio.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.profiler is not None:
            self.profiler.wait(30)  # py-spy writes its samples once the service is gone


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(Exception):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    rabbit = ""
    with contextlib.suppress(Exception):
        rabbit = rabbitmqctl("version").strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "rabbitmq": rabbit,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def server_pids() -> dict[str, list[int]]:
    """The local RabbitMQ and PostgreSQL processes (shared with whatever else runs here)."""
    rabbit, pg = [], []
    for p in psutil.process_iter(["name"]):
        name = p.info.get("name") or ""
        if name.startswith("beam.smp"):
            rabbit.append(p.pid)
        elif name in ("postgres", "postmaster"):
            pg.append(p.pid)
    return {"rabbitmq": rabbit, "postgresql": pg}


def cpu_times(groups: dict[str, list[int]]) -> dict[int, float]:
    times: dict[int, float] = {}
    for pids in groups.values():
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                times[pid] = t.user + t.system
    return times


class CpuMeter:
    """CPU seconds each group of processes spent between `start()` and `stop()`."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self.groups = {**self.groups, **server_pids()}
        self._before = cpu_times(self.groups)

    def stop(self) -> dict[str, float]:
        groups = {**self.groups, **server_pids()}  # PostgreSQL forks a process per connection
        after = cpu_times(groups)
        return {
            group: round(sum(after.get(pid, 0.0) - self._before.get(pid, 0.0) for pid in pids if pid in after), 2)
            for group, pids in groups.items()
        }
