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


async def test_on_sqlite_run_waits_for_a_lock_held_by_a_session_of_this_process_off_the_loop(tmp_path) -> None:
    """On SQLite a transaction of `run` goes on the event loop's own thread when the write
    lock is free, so nothing hands the GIL to and fro while the loop sends. When an aiosqlite
    session of the same process holds the lock, and needs this very loop to finish, `run`
    must not wait for it there (it would wait for ever): it waits on its own thread, the loop
    goes on, and the work is done once, after the session commits, with one call of the
    hooks. A lock taken by another process is waited for the same way."""
    import threading

    url = f"sqlite+aiosqlite:///{tmp_path / 'run.db'}"
    await upgrade_async("events", url)
    db = Database(url)
    seen: list[dict[str, object]] = []
    db.on_commit(lambda info: seen.append(dict(info)))
    threads: list[bool] = []  # per transaction of run(): on the loop's thread?

    def write(i: int):  # noqa: ANN202
        def work(conn: sa.Connection, info: dict[str, object]) -> None:
            threads.append(threading.get_ident() == loop_thread)
            conn.execute(sa.insert(OUTBOX), [row(i)])
            info["row"] = i

        return work

    loop_thread = threading.get_ident()
    try:
        await db.run(write(1))  # the lock is free: on the loop's thread
        assert threads == [True] and seen == [{"row": 1}]

        async with db.session() as session:
            session.add(OutboxMessage(**row(2)))  # type: ignore[arg-type]
            await session.flush()  # this connection now holds the write lock, until it commits
            waiting = asyncio.create_task(db.run(write(3)))
            for _ in range(20):  # the loop goes on while run() waits
                await asyncio.sleep(0.01)
            assert not waiting.done()
            await session.commit()
        await asyncio.wait_for(waiting, timeout=10)
        assert threads == [True, False], "the second transaction should have waited on a thread of its own"
        assert seen == [{"row": 1}, {}, {"row": 3}]  # {}: the session's own commit

        with sqlite3.connect(tmp_path / "run.db", timeout=0) as other:  # another process's lock, briefly
            other.execute("BEGIN IMMEDIATE")
            waiting = asyncio.create_task(db.run(write(4)))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            other.rollback()
        await asyncio.wait_for(waiting, timeout=10)
        await db.run(write(5))  # free again: back on the loop's thread
        assert threads == [True, False, False, True]
        ids = await db.run(
            lambda conn, _info: conn.execute(sa.select(OUTBOX.c.id).order_by(OUTBOX.c.id)).scalars().all()
        )
        assert ids == [f"m-{i}" for i in (1, 2, 3, 4, 5)]
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


async def test_deferred_rows_are_written_first_in_one_insert_and_dropped_on_rollback(database_url: str) -> None:
    """shared.db.defer_insert: like pending ORM objects, the rows are in the database before
    the session's next statement, before an ORM flush of a row that refers to them, and at
    commit; one INSERT per table however many rows; a rollback drops them."""
    from services.notify.models import Delivery, Notice, NoticeDraft, NoticeKs
    from shared.db import defer_insert

    notices, notice_ks = Notice.__table__, NoticeKs.__table__  # type: ignore[attr-defined]
    await upgrade_async("notify", database_url)
    db = Database(database_url)
    inserts: list[str] = []
    sa.event.listen(
        db.engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: (
            inserts.append(statement) if statement.startswith("INSERT INTO notice") else None
        ),
    )

    def defer(session, title: str, ks: list[str]) -> NoticeDraft:  # noqa: ANN001
        draft = NoticeDraft(source="/t", source_id=title, title=title, body="b", ks=ks)
        defer_insert(session, notices, draft.row())
        for one in ks:
            defer_insert(session, notice_ks, {"notice_id": draft.id, "ks": one})
        return draft

    count_notices = sa.select(sa.func.count()).select_from(notices)
    try:
        # At commit, with nothing else done: 30 notices in one INSERT, their KS rows in another.
        async with db.session() as session:
            for i in range(30):
                defer(session, f"n{i}", ["center", "planina"])
            await session.commit()
        assert len(inserts) == 2, inserts
        async with db.session() as session:
            assert (await session.exec(count_notices)).one() == (30,)  # type: ignore[call-overload]
            assert (await session.exec(sa.select(sa.func.count()).select_from(notice_ks))).one() == (60,)  # type: ignore[call-overload]

        # Before the next statement of the session (a query sees them) ...
        async with db.session() as session:
            first = defer(session, "seen", ["huje"])
            assert (await session.exec(sa.select(notices.c.title).where(notices.c.id == first.id))).one() == ("seen",)  # type: ignore[call-overload]
            # ... and before an ORM flush of a delivery that refers to one (foreign key).
            second = defer(session, "parent", ["huje"])
            session.add(Delivery(notice_id=second.id, subscriber_id=None, channel="email", address="a@example.si",
                                 status="queued", next_attempt_at=utcnow()))  # fmt: skip
            await session.flush()
            await session.commit()
        async with db.session() as session:
            assert (await session.exec(count_notices)).one() == (32,)  # type: ignore[call-overload]

        # A rollback drops what was deferred; the next transaction of the session starts clean.
        async with db.session() as session:
            defer(session, "dropped", ["huje"])
            await session.rollback()
            defer(session, "kept", ["huje"])
            await session.commit()
        async with db.session() as session:
            titles = set((await session.exec(sa.select(notices.c.title))).scalars().all())  # type: ignore[call-overload]
            assert "kept" in titles and "dropped" not in titles

        # A session that would never write them refuses them.
        from sqlmodel.ext.asyncio.session import AsyncSession

        async with AsyncSession(db.engine) as plain:
            with pytest.raises(TypeError, match="Database.session"):
                defer(plain, "lost", ["huje"])
    finally:
        await db.dispose()


OUTCOME = (  # a delivery's outcome, as services/notify/sending.py records it: built once
    sa.update(OUTBOX)
    .where(OUTBOX.c.id == sa.bindparam("b_id"))
    .values(sent_at=sa.bindparam("v_sent"), attempts=sa.bindparam("v_attempts"), last_error=sa.bindparam("v_error"))
)
MARKED = sa.update(OUTBOX).where(OUTBOX.c.id == sa.bindparam("b_id")).values(last_error=None, attempts=7)


async def test_executemany_stores_exactly_what_execute_stores(database_url: str, tmp_path) -> None:
    """`shared.db.executemany` (sqlite3's own executemany on SQLite, `execute` on PostgreSQL)
    against SQLAlchemy's `execute` of the same statements and rows: the same stored values,
    datetimes (UTC, microseconds, from another zone; one object in several rows), NULLs,
    numbers, text with quotes and non-ASCII, and values bound in the statement itself."""
    from datetime import UTC, datetime, timedelta, timezone

    from shared.db import executemany

    await upgrade_async("events", database_url)
    db = Database(database_url)
    later = datetime(2026, 12, 7, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    made = datetime(2026, 12, 6, 23, 59, 59, 999999, tzinfo=UTC)
    try:

        def rows(prefix: str) -> list[dict[str, object]]:
            return [
                {
                    **row(i),
                    "id": f"{prefix}-{i}",
                    "body": f'{{"š": "{i}\'"}}',
                    # one object for several rows in turn (converted once), and others between
                    "created_at": made if i % 3 else made + timedelta(seconds=i),
                    "next_attempt_at": made,
                }
                for i in range(6)
            ]

        outcomes = [
            {"b_id": f"{{p}}-{i}", "v_sent": later + timedelta(microseconds=i), "v_attempts": i, "v_error": None}
            if i % 2
            else {"b_id": f"{{p}}-{i}", "v_sent": None, "v_attempts": i, "v_error": f"SMTP 451: 'try later' č{i}"}
            for i in range(6)
        ]

        def write(conn: sa.Connection, _info: dict[str, object], prefix: str, fast: bool) -> None:
            run = (lambda st, rs: executemany(conn, st, rs)) if fast else conn.execute
            run(sa.insert(OUTBOX), rows(prefix))
            run(OUTCOME, [{**o, "b_id": str(o["b_id"]).format(p=prefix)} for o in outcomes[:4]])
            run(MARKED, [{"b_id": f"{prefix}-{i}"} for i in (4, 5)])

        await db.run(lambda conn, info: write(conn, info, "slow", False))
        await db.run(lambda conn, info: write(conn, info, "fast", True))

        def stored(conn: sa.Connection, _info: dict[str, object], prefix: str) -> list[tuple[object, ...]]:
            query = sa.select(OUTBOX).where(OUTBOX.c.id.like(f"{prefix}-%")).order_by(OUTBOX.c.id)
            return [tuple(r[1:]) for r in conn.execute(query).all()]

        slow = await db.run(lambda conn, info: stored(conn, info, "slow"))
        fast = await db.run(lambda conn, info: stored(conn, info, "fast"))
        assert len(slow) == 6 and fast == slow
        assert slow[1][OUTBOX.c.keys().index("sent_at") - 1] == later + timedelta(microseconds=1)
        if db.is_sqlite:  # the raw stored text too, not only what SQLAlchemy reads back
            path = database_url.split("///", 1)[1]
            with sqlite3.connect(path) as raw:
                texts = {
                    prefix: raw.execute(
                        "SELECT sent_at, attempts, last_error, body, created_at FROM outbox WHERE id LIKE ? ORDER BY id",
                        (f"{prefix}-%",),
                    ).fetchall()
                    for prefix in ("slow", "fast")
                }
            assert texts["fast"] == texts["slow"]

        # A row without one of the first row's keys is refused, as execute refuses it (not NULL).
        def uneven(conn: sa.Connection, _info: dict[str, object]) -> None:
            executemany(conn, MARKED, [{"b_id": "fast-0"}, {"id": "fast-1"}])

        with pytest.raises((KeyError, sa.exc.StatementError)):
            await db.run(uneven)
    finally:
        await db.dispose()
