"""The local signing key (no KRANJ_SECRET_KEY): `kranj up` starts four services at once on a
fresh data directory, and each reads `secret.key`. A reader must never see an empty or
partial key, and every process must end up with the same one (issue 15, minor)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from shared.settings import Settings

PROCESSES = 8
ROUNDS = 20


def _read_key(data_dir: str, barrier: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    settings = Settings(_env_file=None, data_dir=Path(data_dir), secret_key=None)
    barrier.wait()  # all of them at once, as `kranj up` starts them
    try:
        out.put(("ok", settings.signing_key()))
    except BaseException as exc:  # noqa: BLE001 - report it to the parent
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def test_processes_starting_together_on_a_fresh_dir_share_one_complete_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        data_dir = tmp_path / f"round-{round_}" / "var"  # does not exist yet: each process makes it
        barrier = ctx.Barrier(PROCESSES)
        out = ctx.Queue()
        procs = [ctx.Process(target=_read_key, args=(str(data_dir), barrier, out)) for _ in range(PROCESSES)]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
            assert proc.exitcode == 0
        errors = [value for kind, value in results if kind == "error"]
        assert not errors, errors
        keys = {value for _, value in results}
        assert len(keys) == 1, f"round {round_}: {len(keys)} different keys"
        [key] = keys
        assert len(key) >= 60  # secrets.token_urlsafe(48): 64 characters
        path = data_dir / "secret.key"
        assert path.read_text().strip() == key
        assert path.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in data_dir.iterdir()] == ["secret.key"], "no temporary files left behind"


def test_the_key_is_kept_across_starts_and_a_stale_empty_file_is_replaced(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, secret_key=None)
    first = settings.signing_key()
    assert settings.signing_key() == first
    path = tmp_path / "secret.key"
    path.write_text("")  # what the old, non-atomic code could leave after a crash
    old = path.stat().st_mtime - 60
    os.utime(path, (old, old))
    fresh = settings.signing_key()
    assert fresh and fresh != first
    assert settings.signing_key() == fresh
