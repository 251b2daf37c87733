"""`Database.run`: the hot paths' Core transactions (notify's claims and outcomes, the outbox
relay) commit as one, roll back as one, call the commit hooks only after a commit, and see
what the ORM sessions of the same process wrote — on SQLite (a plain sqlite3 engine on a
thread of its own) and on PostgreSQL (the async engine)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
import sqlalchemy as sa

from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import OutboxMessage, utcnow

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]


def row(i: int) -> dict[str, object]:
    now = utcnow()
    return {
        "id": f"m-{i}",
        "routing_key": "t.t.t",
        "type": "si.kranj.t.t.t.v1",
        "body": "{}",
        "created_at": now,
        "attempts": 0,
        "next_attempt_at": now,
    }


async def test_run_commits_rolls_back_and_calls_hooks_after_commit(database_url: str) -> None:
    await upgrade_async("events", database_url)
    db = Database(database_url)
    seen: list[dict[str, object]] = []
    db.on_commit(lambda info: seen.append(dict(info)))
    try:

        def write(conn: sa.Connection, info: dict[str, object]) -> int:
            conn.execute(sa.insert(OUTBOX), [row(i) for i in range(5)])
            info["outbox_written"] = True
            return 5

        assert await db.run(write) == 5
        assert seen == [{"outbox_written": True}]

        def half_then_fail(conn: sa.Connection, info: dict[str, object]) -> None:
            conn.execute(sa.insert(OUTBOX), [row(i) for i in range(5, 8)])
            info["outbox_written"] = True
            raise RuntimeError("broken mid-transaction")

        with pytest.raises(RuntimeError, match="broken mid-transaction"):
            await db.run(half_then_fail)
        assert seen == [{"outbox_written": True}], "a hook ran for a transaction that did not commit"

        # What run() wrote, the ORM session reads; what the session writes, run() reads.
        async with db.session() as session:
            ids = (await session.exec(sa.select(OUTBOX.c.id).order_by(OUTBOX.c.id))).scalars().all()  # type: ignore[call-overload]
            assert ids == [f"m-{i}" for i in range(5)]
            session.add(OutboxMessage(**row(99)))  # type: ignore[arg-type]
            await session.commit()
        count = await db.run(lambda conn, _info: conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar())
        assert count == 6

        # Concurrent callers each get their own transaction, none lost (SQLite: one at a time).
        def bump(i: int):  # noqa: ANN202
            return lambda conn, _info: conn.execute(sa.insert(OUTBOX), [row(100 + i)])

        await asyncio.gather(*(db.run(bump(i)) for i in range(20)))
        count = await db.run(lambda conn, _info: conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar())
        assert count == 26
    finally:
        await db.dispose()


async def test_a_migrated_sqlite_file_is_in_wal_mode_before_any_service_connects(tmp_path) -> None:
    """Switching a file to WAL needs SQLite's exclusive lock, and SQLite refuses it at once,
    without waiting, while another connection writes. The migrations therefore leave the file
    in WAL mode, so a service's connections (two engines in notify, several pooled) never
    switch it while a sibling writes (CI once failed on "database is locked")."""
    path = tmp_path / "fresh.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async("events", url)

    plain = sqlite3.connect(path, isolation_level=None)  # no pragmas of ours: sees the file as it is
    db = Database(url)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        plain.execute("BEGIN IMMEDIATE")  # a writer holds the lock for half a second ...
        plain.execute(
            "INSERT INTO outbox (id, routing_key, type, body, created_at, attempts, next_attempt_at)"
            " VALUES ('w', 'r', 't', '{}', '2026-01-01', 0, '2026-01-01')"
        )
        asyncio.get_running_loop().call_later(0.5, plain.execute, "COMMIT")
        # ... and a service's first connection waits for it instead of failing on connect.
        await asyncio.wait_for(db.ping(), 20)
        count = await db.run(lambda conn, _info: conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar())
        assert count == 1
    finally:
        await db.dispose()
        plain.close()
