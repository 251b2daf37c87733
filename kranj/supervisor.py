"""A small process supervisor: what `kranj up` runs the four services with.

- Each child runs in its own process group, so the terminal's Ctrl-C reaches only the
  supervisor, which then stops the children in order (SIGTERM, wait, SIGKILL). An exit
  during shutdown is expected and never restarted.
- A child that exits while we are running is started again after a backoff that doubles
  from `backoff_initial` up to `backoff_max`, and goes back to `backoff_initial` once the
  child has stayed up `stable_after` seconds.
- On Linux each child also gets SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG),
  so a killed `kranj up` never leaves services running behind it.
- The children's stdout and stderr are the supervisor's: their output goes straight
  through to the terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None  # None: inherit the supervisor's environment
    cwd: str | None = None
    pass_fds: Sequence[int] = ()  # file descriptors the child inherits (e.g. a listening socket)


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float = 0.0  # the backoff before the next restart
    restart_at: float | None = None
    starts: int = 0
    last_exit: int | None = None
    stopped: bool = False  # exited during shutdown (or never started again)


def _default_log(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"{stamp} kranj: {message}", file=sys.stderr, flush=True)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        except Exception:  # noqa: BLE001, S110 - best effort
            pass


@dataclass
class Supervisor:
    children: Sequence[ChildSpec]
    stop_timeout: float = 25.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    stable_after: float = 60.0
    poll_interval: float = 0.2
    log: Callable[[str], None] = _default_log
    clock: Callable[[], float] = time.monotonic
    _children: list[_Child] = field(init=False, default_factory=list)
    _stop_requested: str | None = field(init=False, default=None)
    _force: bool = field(init=False, default=False)
    _stopping: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.children]
        if len(set(names)) != len(names):
            raise ValueError("child names must be unique")
        self._children = [_Child(spec, delay=self.backoff_initial) for spec in self.children]

    # ---- public ------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping or self._stop_requested is not None

    def pids(self) -> dict[str, int | None]:
        return {c.spec.name: (c.proc.pid if c.proc and c.proc.poll() is None else None) for c in self._children}

    def starts(self) -> dict[str, int]:
        return {c.spec.name: c.starts for c in self._children}

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask `run()` to stop every child and return (safe from a signal handler or thread)."""
        if self._stop_requested is not None or self._stopping:
            self._force = True  # asked twice: do not wait for stragglers
            return
        self._stop_requested = reason

    def start_all(self) -> None:
        for child in self._children:
            self._spawn(child)

    def check(self) -> None:
        """One supervision step: notice exits, schedule and perform restarts."""
        now = self.clock()
        for child in self._children:
            if child.proc is not None:
                code = child.proc.poll()
                if code is None:
                    continue
                child.proc = None
                child.last_exit = code
                if self.stopping:
                    child.stopped = True
                    continue
                uptime = now - child.started_at
                if uptime >= self.stable_after:
                    child.delay = self.backoff_initial
                delay = child.delay
                child.delay = min(child.delay * 2, self.backoff_max)
                child.restart_at = now + delay
                self.log(
                    f"{child.spec.name} {describe_exit(code)} after {uptime:.1f} s; starting it again in {delay:g} s"
                )
            elif child.restart_at is not None and now >= child.restart_at and not self.stopping:
                child.restart_at = None
                self._spawn(child, restart=True)

    def run(self, *, install_signal_handlers: bool = True) -> int:
        """Start every child, supervise until SIGINT/SIGTERM/SIGHUP (or `request_stop`), stop all; 0."""
        previous: dict[signal.Signals, Callable[..., Any] | int | None] = {}
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal went away
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            if self._stop_requested is None:
                self.start_all()
            while self._stop_requested is None:
                self.check()
                time.sleep(self.poll_interval)
            self.shutdown(self._stop_requested)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def shutdown(self, reason: str = "stopping") -> None:
        """SIGTERM to every child, wait up to `stop_timeout`, then SIGKILL the rest."""
        self._stopping = True
        running = [c for c in self._children if c.proc is not None and c.proc.poll() is None]
        for child in self._children:
            child.restart_at = None
        if running:
            self.log(f"{reason}: stopping {', '.join(c.spec.name for c in running)}")
        for child in running:
            self._signal(child, signal.SIGTERM)
        deadline = self.clock() + self.stop_timeout
        while any(c.proc.poll() is None for c in running if c.proc) and self.clock() < deadline and not self._force:
            time.sleep(min(self.poll_interval, 0.05))
        for child in running:
            assert child.proc is not None
            if child.proc.poll() is None:
                self.log(f"{child.spec.name} did not stop in {self.stop_timeout:g} s; killing it")
                self._signal(child, signal.SIGKILL)
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
                self.log(f"{child.spec.name} (pid {child.proc.pid}) is still there after SIGKILL")
            child.last_exit = child.proc.returncode
            child.stopped = True
            child.proc = None
        if running:
            self.log("all services stopped")

    # ---- internals ---------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self._stop_requested is not None or self._stopping:
            self._force = True
            self.log(f"{name} again: killing whatever is still running")
            return
        self.request_stop(f"{name} received")

    def _spawn(self, child: _Child, *, restart: bool = False) -> None:
        env = dict(child.spec.env) if child.spec.env is not None else None
        try:
            child.proc = subprocess.Popen(
                list(child.spec.argv),
                env=env,
                cwd=child.spec.cwd,
                stdin=subprocess.DEVNULL,
                pass_fds=tuple(child.spec.pass_fds),
                process_group=0,  # own group: the terminal's Ctrl-C is for the supervisor only
                preexec_fn=_child_setup,  # noqa: PLW1509 - the supervisor is single-threaded
            )
        except OSError as exc:
            delay = child.delay
            child.delay = min(child.delay * 2, self.backoff_max)
            child.restart_at = self.clock() + delay
            self.log(f"{child.spec.name} could not be started ({exc}); trying again in {delay:g} s")
            return
        child.started_at = self.clock()
        child.starts += 1
        if restart:
            self.log(f"{child.spec.name} started again (pid {child.proc.pid}, start #{child.starts})")

    def _signal(self, child: _Child, sig: signal.Signals) -> None:
        if child.proc is None:
            return
        try:
            os.killpg(child.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                child.proc.send_signal(sig)
            except ProcessLookupError:
                pass
