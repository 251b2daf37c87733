"""The supervisor behind `kranj up`, with tiny `python -c` children instead of the services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kranj.supervisor import ChildSpec, Supervisor, describe_exit

PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_for(predicate, timeout: float = 10.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {message}")
        time.sleep(0.02)


def _start_in_thread(supervisor: Supervisor) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run(install_signal_handlers=False)))
    thread.start()
    return thread, result


def test_a_child_that_dies_is_started_again_with_doubling_backoff(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    crasher = ChildSpec("crasher", [PY, "-c", f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"])
    steady = ChildSpec("steady", [PY, "-c", "import time; time.sleep(60)"])
    lines: list[str] = []
    supervisor = Supervisor(
        [crasher, steady],
        backoff_initial=0.05,
        backoff_max=0.2,
        stable_after=60,
        poll_interval=0.01,
        stop_timeout=5,
        log=lines.append,
    )
    thread, result = _start_in_thread(supervisor)
    try:
        _wait_for(lambda: starts.exists() and len(starts.read_text()) >= 5, message="five starts of the crasher")
        steady_pid = supervisor.pids()["steady"]
    finally:
        supervisor.request_stop("test over")
        thread.join(timeout=20)
    assert result == [0]
    assert supervisor.starts()["steady"] == 1  # its neighbour's crashes do not touch it
    restarts = [line for line in lines if line.startswith("crasher exited with code 3")]
    assert len(restarts) >= 4
    delays = [line.rsplit("in ", 1)[1] for line in restarts[:4]]
    assert delays == ["0.05 s", "0.1 s", "0.2 s", "0.2 s"]  # doubling, capped at backoff_max
    assert any(line.startswith("crasher started again") for line in lines)
    assert steady_pid is not None and not _alive(steady_pid)
    assert supervisor.pids() == {"crasher": None, "steady": None}


def test_backoff_starts_over_after_the_child_stayed_up_long_enough(tmp_path: Path) -> None:
    lines: list[str] = []
    child = ChildSpec("slow", [PY, "-c", "import time; time.sleep(0.3); raise SystemExit(1)"])
    supervisor = Supervisor(
        [child], backoff_initial=0.05, backoff_max=10, stable_after=0.2, poll_interval=0.01, log=lines.append
    )
    thread, _ = _start_in_thread(supervisor)
    try:
        _wait_for(lambda: supervisor.starts()["slow"] >= 4, message="four starts")
    finally:
        supervisor.request_stop()
        thread.join(timeout=20)
    delays = [line.rsplit("in ", 1)[1] for line in lines if line.startswith("slow exited")]
    assert delays[:3] == ["0.05 s", "0.05 s", "0.05 s"]


def test_describe_exit() -> None:
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-9) == "was killed by SIGKILL"


SUPERVISOR_SCRIPT = textwrap.dedent(
    """
    import sys
    from kranj.supervisor import ChildSpec, Supervisor

    pids, py = sys.argv[1], sys.executable
    child = (
        "import os, signal, sys, time\\n"
        "if sys.argv[1] == 'stubborn': signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "open(sys.argv[2], 'a').write(f'{sys.argv[1]} {os.getpid()}\\\\n')\\n"
        "time.sleep(120)\\n"
    )
    specs = [ChildSpec(name, [py, "-c", child, name, pids]) for name in sys.argv[2:]]
    supervisor = Supervisor(specs, stop_timeout=1.0, poll_interval=0.02)
    print("ready", flush=True)
    raise SystemExit(supervisor.run())
    """
)


def _spawn_supervisor(tmp_path: Path, *names: str) -> tuple[subprocess.Popen[str], Path]:
    pids = tmp_path / "pids"
    proc = subprocess.Popen(
        [PY, "-c", SUPERVISOR_SCRIPT, str(pids), *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, like a terminal's foreground job
        cwd=Path(__file__).resolve().parents[2],
    )
    _wait_for(lambda: pids.exists() and len(pids.read_text().splitlines()) == len(names), message="children up")
    return proc, pids


def _child_pids(pids: Path) -> dict[str, int]:
    return {name: int(pid) for name, pid in (line.split() for line in pids.read_text().splitlines())}


def test_sigterm_stops_every_child_and_kills_stragglers(tmp_path: Path) -> None:
    proc, pids = _spawn_supervisor(tmp_path, "polite", "stubborn")
    children = _child_pids(pids)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 10
    for pid in children.values():
        _wait_for(lambda pid=pid: not _alive(pid), timeout=5, message=f"pid {pid} gone")
    assert "SIGTERM received: stopping polite, stubborn" in err
    assert "stubborn did not stop in 1 s; killing it" in err
    assert "polite did not stop" not in err
    assert "starting it again" not in err


def test_ctrl_c_in_the_terminal_is_one_clean_stop_not_a_crash(tmp_path: Path) -> None:
    proc, pids = _spawn_supervisor(tmp_path, "events", "notify")
    children = _child_pids(pids)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "SIGINT received: stopping events, notify" in err
    assert "starting it again" not in err and "killing" not in err
    for pid in children.values():
        _wait_for(lambda pid=pid: not _alive(pid), timeout=5, message=f"pid {pid} gone")


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    proc, pids = _spawn_supervisor(tmp_path, "orphan")
    [pid] = _child_pids(pids).values()
    proc.kill()
    proc.communicate(timeout=10)
    _wait_for(lambda: not _alive(pid), timeout=5, message="the orphan to get SIGTERM (PR_SET_PDEATHSIG)")


def test_a_passed_socket_is_inherited_by_every_start_of_the_child(tmp_path: Path) -> None:
    """The front door's listening socket, bound once by `kranj up`: each start of the door
    (a restart too) serves on it; the other children do not get it."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    fd = listener.fileno()
    door = ChildSpec(
        "door",
        [PY, "-c", f"import socket; s = socket.socket(fileno={fd}); c, _ = s.accept(); c.sendall(b'hej'); c.close()"],
        pass_fds=(fd,),
    )
    other = ChildSpec("other", [PY, "-c", "import time; time.sleep(60)"])
    lines: list[str] = []
    supervisor = Supervisor([door, other], backoff_initial=0.05, poll_interval=0.01, stop_timeout=5, log=lines.append)
    thread, result = _start_in_thread(supervisor)
    try:
        for _ in range(2):  # the child exits after each answer and is started again on the same socket
            with socket.create_connection(listener.getsockname(), timeout=10) as client:
                client.settimeout(10)
                assert client.recv(3) == b"hej"
        _wait_for(lambda: supervisor.pids()["other"] is not None, message="the other child")
        other_pid = supervisor.pids()["other"]
        assert other_pid is not None
        assert str(fd) not in os.listdir(f"/proc/{other_pid}/fd") or not os.readlink(
            f"/proc/{other_pid}/fd/{fd}"
        ).startswith("socket:")
    finally:
        supervisor.request_stop()
        thread.join(timeout=20)
        listener.close()
    assert result == [0]
    assert supervisor.starts()["door"] >= 2
