"""Async SQLModel sessions: SQLite (WAL) by default, PostgreSQL when the URL says so."""

from __future__ import annotations

import asyncio
import errno
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession


def engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    return {"pool_size": 10, "max_overflow": 10, "pool_pre_ping": True}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA secure_delete=ON")  # deleted personal data is overwritten, not left in free pages
    cursor.close()


T = TypeVar("T")
_SQLITE_BUSY = 5  # the primary result code of "database is locked" (sqlite3_errcode & 0xFF)


class _WriteLockTaken(Exception):
    """Another connection holds SQLite's write lock (Database._run_inline)."""


class Database:
    """One service's database: an engine and a session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(url, **engine_options(url))
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            # aiosqlite's implicit BEGIN is deferred; take the write lock up front so
            # concurrent writers queue on busy_timeout instead of failing to upgrade.
            sa.event.listen(self.engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            sa.event.listen(
                self.engine.sync_engine,
                "connect",
                lambda dbapi_conn, _rec: setattr(dbapi_conn, "isolation_level", None),
            )
        # A session class of this database's own, so commit hooks stay per database.
        self._session_class = type("ServiceSession", (DeferringSession,), {})
        self._commit_hooks: list[Callable[[dict[str, Any]], None]] = []
        sa.event.listen(self._session_class, "after_commit", self._after_commit)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, sync_session_class=self._session_class, expire_on_commit=False
        )
        # SQLite has one writer and every transaction here takes the write lock: the busy
        # paths of one process (consumers, outbox relay, notify's senders) queue on this lock
        # instead of SQLite's busy handler, which sleeps 1-100 ms between tries (make bench).
        self._serial = asyncio.Lock() if self.is_sqlite else None
        # Hot paths (Database.run) on SQLite: a plain sqlite3 engine on one thread of its own.
        # Through aiosqlite every statement is a hop to its thread and back (~0.4 ms of CPU
        # each, make bench); here a whole transaction is one hop.
        self._sync_engine: sa.Engine | None = None
        self._sync_thread: ThreadPoolExecutor | None = None
        # ... and first of all on the event loop's thread, when the write lock is free (`_run_inline`).
        self._inline_engine: sa.Engine | None = None

    def on_commit(self, hook: Callable[[dict[str, Any]], None]) -> None:
        """Call `hook(session.info)` after every commit (e.g. to wake the outbox relay)."""
        self._commit_hooks.append(hook)

    def _after_commit(self, session: Session) -> None:
        for hook in self._commit_hooks:
            hook(session.info)

    @asynccontextmanager
    async def serial(self) -> AsyncIterator[None]:
        """Around one transaction of a busy path: on SQLite, one at a time in this process;
        on PostgreSQL, nothing. Never open a second `serial()` inside one (it would wait forever)."""
        if self._serial is None:
            yield
            return
        async with self._serial:
            yield

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    async def run(self, work: Callable[[sa.Connection, dict[str, Any]], T]) -> T:
        """`work(conn, info)` in one transaction of its own, with SQLAlchemy Core; it commits
        when `work` returns, then the commit hooks get `info`. For hot paths that write many
        rows in a few statements: small transactions (a batch of claims or outcomes, ~1 ms),
        for on SQLite the event loop waits for them. On SQLite (under serial()) the whole
        transaction runs on the loop's thread when the write lock is free at once, else on a
        thread of its own that waits for the lock; on PostgreSQL on the async engine, each
        statement awaited."""
        info: dict[str, Any] = {}
        if self.is_sqlite:
            async with self.serial():
                try:
                    result = self._run_inline(work, info)
                except _WriteLockTaken:
                    info.clear()
                    result = await asyncio.get_running_loop().run_in_executor(
                        self._sqlite_thread(), self._run_sync, work, info
                    )
        else:
            async with self.engine.begin() as conn:
                result = await conn.run_sync(work, info)
        for hook in self._commit_hooks:
            hook(info)
        return result

    def _run_inline(self, work: Callable[[sa.Connection, dict[str, Any]], T], info: dict[str, Any]) -> T:
        """`work` in a transaction on the event loop's own thread, when the write lock is free
        at once: no hop to another thread, and no handing the GIL back and forth with it while
        the loop sends (that cost recording an SMS's outcome more than the recording itself:
        make bench, issue 20 §3). Its connection never waits for the lock (busy_timeout 0): a
        lock held by an aiosqlite session of this process would wait for this very loop to
        finish it. Taken, or lost on the way: _WriteLockTaken, after a rollback, and `run`
        does the work again on its thread, which waits for the lock."""
        if self._inline_engine is None:
            self._inline_engine = self._sqlite_engine(wait_for_lock=False)
        try:
            with self._inline_engine.begin() as conn:
                return work(conn, info)
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY:
                raise _WriteLockTaken from exc
            raise

    def _sqlite_engine(self, *, wait_for_lock: bool) -> sa.Engine:
        """A plain sqlite3 engine of one connection on this database, each transaction taking
        the write lock at its BEGIN; one that does not wait for the lock fails at once."""
        url = self.engine.url.set(drivername="sqlite")
        engine = sa.create_engine(url, pool_size=1, max_overflow=0, **engine_options(self.url))
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        if not wait_for_lock:
            sa.event.listen(engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA busy_timeout=0"))
        sa.event.listen(engine, "connect", lambda dbapi_conn, _rec: setattr(dbapi_conn, "isolation_level", None))
        sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine

    def _sqlite_thread(self) -> ThreadPoolExecutor:
        if self._sync_thread is None:
            self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="kranj-sqlite")
        return self._sync_thread

    def _run_sync(self, work: Callable[[sa.Connection, dict[str, Any]], T], info: dict[str, Any]) -> T:
        if self._sync_engine is None:
            self._sync_engine = self._sqlite_engine(wait_for_lock=True)
        with self._sync_engine.begin() as conn:
            return work(conn, info)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def flush_deleted_data(self) -> None:
        """After erasing personal data on SQLite: move the WAL into the database file and
        truncate it, so neither file keeps the deleted bytes (secure_delete zeroes pages)."""
        if not self.is_sqlite:
            return
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection  # aiosqlite, outside any transaction
            await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]

    async def dispose(self) -> None:
        if self._inline_engine is not None:
            self._inline_engine.dispose()
            self._inline_engine = None
        if self._sync_thread is not None:
            engine, thread = self._sync_engine, self._sync_thread
            if engine is not None:
                await asyncio.get_running_loop().run_in_executor(thread, engine.dispose)
            thread.shutdown(wait=True)
            self._sync_engine, self._sync_thread = None, None
        await self.engine.dispose()


def executemany(conn: sa.Connection, statement: sa.Insert | sa.Update, rows: list[dict[str, Any]]) -> None:
    """`conn.execute(statement, rows)` for the hot paths' many-row statements (Database.run).

    On SQLite, SQLAlchemy builds and converts each row's parameters in Python: ~18 us a row
    where sqlite3's own executemany of the same UPDATE takes ~6 (recording a delivery's
    outcome, make bench, issue 20 §3/§4). Here the statement is compiled once and each row
    becomes a tuple, each value converted by its column type's own bind processor (the same
    stored values: tests/integration/test_db_run.py); then one `exec_driver_sql`, in the same
    transaction. `statement` should be built once (a module constant or cached): its
    compiled form is cached by identity. Every row holds the same keys. On PostgreSQL: as
    `conn.execute`."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(statement, rows)
        return
    sql, plan = _sqlite_plan(statement, tuple(rows[0]), conn.dialect)
    columns = [_column(rows, name, given, process) for name, given, process in plan]
    conn.exec_driver_sql(sql, list(zip(*columns, strict=True)))


def _column(rows: list[dict[str, Any]], name: str, given: Any, process: Callable[[Any], Any] | None) -> list[Any]:
    """Parameter `name`'s value in each row (a row without it raises KeyError, as execute
    does), or `given`, the value bound in the statement, converted. A value that is the same
    object as the row before's (the one `now` of a whole batch) is converted once."""
    values = [row[name] for row in rows] if given is _FROM_ROW else [given] * len(rows)
    if process is None:
        return values
    converted: list[Any] = []
    last: Any = _FROM_ROW
    out: Any = None
    for value in values:
        if value is not last:
            last, out = value, (None if value is None else process(value))
        converted.append(out)
    return converted


_FROM_ROW = object()  # in a plan: the value comes from each row


@functools.lru_cache(maxsize=64)
def _sqlite_plan(
    statement: sa.Insert | sa.Update, keys: tuple[str, ...], dialect: sa.Dialect
) -> tuple[str, tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]]:
    """The SQL of `statement` for rows with `keys`, and per positional parameter its name,
    where its value comes from (each row, or the value bound in the statement), and its
    converter."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if compiled.positiontup is None:
        raise TypeError("executemany needs a positional paramstyle (sqlite3: qmark)")
    plan = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        if name not in keys and bind.required:
            raise KeyError(f"executemany: no value for parameter {name!r}")
        given = _FROM_ROW if name in keys else bind.effective_value
        plan.append((name, given, bind.type.dialect_impl(dialect).bind_processor(dialect)))
    return compiled.string, tuple(plan)


_DEFERRED = "kranj.deferred_rows"


class DeferringSession(Session):
    """The sessions of Database.session(): rows handed to defer_insert() are written before
    anything else the session does (below)."""


sa.event.listen(DeferringSession, "before_flush", lambda session, *_: _write_deferred(session))
sa.event.listen(DeferringSession, "do_orm_execute", lambda state: _write_deferred(state.session))
sa.event.listen(DeferringSession, "before_commit", lambda session: _write_deferred(session))
sa.event.listen(DeferringSession, "after_soft_rollback", lambda session, _tx: session.info.pop(_DEFERRED, None))


def defer_insert(session: AsyncSession | Session, table: sa.Table, row: dict[str, Any]) -> None:
    """Insert `row` into `table` later in this transaction, with the other deferred rows of
    that table in one statement: for handlers of a group commit (shared.inbox.Consumer) that
    each write a small row, where building and flushing an ORM object per row costs more
    than the rest of the message (make bench, ingest). Like the ORM's pending objects, the
    rows are written before the session's next statement, flush or commit; a rollback drops
    them. `row` holds every column without a server default (Core, no ORM defaults)."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    if not isinstance(sync, DeferringSession):  # nothing would ever write the rows
        raise TypeError(f"defer_insert needs a session of Database.session(), not {type(sync).__name__}")
    if not sync.in_transaction():
        sync.begin()  # no I/O yet; a rollback now has a transaction to end, and drops the rows
    sync.info.setdefault(_DEFERRED, {}).setdefault(table, []).append(row)


def _write_deferred(session: Session) -> None:
    pending: dict[sa.Table, list[dict[str, Any]]] | None = session.info.pop(_DEFERRED, None)
    if pending:
        connection = session.connection()  # Core on the session's connection: no event again
        for table, rows in pending.items():  # tables in the order first deferred (parents first)
            connection.execute(sa.insert(table), rows)


# Connection-level failures: the database is down, restarting, unreachable or out of
# connections. A request that meets one gets 503 (shared/web), not a 500 with a trace.
_UNAVAILABLE_SQLSTATES = ("08", "57P")  # connection exceptions; admin/crash shutdown, cannot connect now
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.EHOSTDOWN}


def database_unavailable(exc: BaseException) -> bool:
    """Is `exc` (or what caused it) the database being unreachable, rather than a bug?"""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, (sa.exc.TimeoutError, ConnectionError, TimeoutError)):
            return True  # the pool waited in vain, or the server refused/reset the connection
        if isinstance(current, OSError) and current.errno in _UNREACHABLE_ERRNOS:
            return True
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        name = type(current).__name__
        if name in ("ConnectionDoesNotExistError", "CannotConnectNowError") or (
            isinstance(current, sa.exc.OperationalError) and "database is locked" in str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False
