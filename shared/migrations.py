"""Alembic helpers shared by every service's migrations and by the identity store's
(`accounts`: staff accounts, sessions and API tokens, in `shared/accounts_migrations`).

Migrations may start at the same moment in several processes (replicas, four services
checking the shared identity store): a PostgreSQL advisory lock, or a lock file next to a
SQLite database, lets one run at a time; the others then find the schema current."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from .db import engine_options

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
ACCOUNTS = "accounts"
ACCOUNTS_MIGRATIONS = Path(__file__).resolve().parent / "accounts_migrations"


def alembic_config(service: str, url: str) -> Config:
    """`service` is a service name, or "accounts" for the identity store."""
    script_location = ACCOUNTS_MIGRATIONS if service == ACCOUNTS else SERVICES_DIR / service / "migrations"
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(script_location / "versions"))
    cfg.attributes["database_url"] = url
    # Its own version table, so the identity store may share a database with a service.
    cfg.attributes["version_table"] = "accounts_alembic_version" if service == ACCOUNTS else "alembic_version"
    cfg.attributes["lock_key"] = zlib.crc32(f"kranj-migrate-{service}".encode())
    return cfg


def upgrade(service: str, url: str, revision: str = "head") -> None:
    """Bring one service's database to `revision` (blocking; call it from a thread)."""
    with _sqlite_lock(url):
        command.upgrade(alembic_config(service, url), revision)


@contextlib.contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    """One migration at a time on a SQLite file, across processes and threads."""
    if not url.startswith("sqlite"):
        yield
        return
    _ensure_sqlite_dir(url)
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate-lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def upgrade_async(service: str, url: str) -> None:
    await asyncio.to_thread(upgrade, service, url)


def _ensure_sqlite_dir(url: str) -> None:
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def run_env() -> None:
    """Body of every service's `migrations/env.py` (online mode, async engines)."""
    url = context.config.attributes.get("database_url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the migrations")

    attributes = context.config.attributes

    def do_run(connection: sa.Connection) -> None:
        if connection.dialect.name == "postgresql" and attributes.get("lock_key") is not None:
            # Held until the migrations' transaction commits: replicas migrate one at a time.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(attributes['lock_key'])})")
        context.configure(
            connection=connection,
            target_metadata=None,
            render_as_batch=True,
            version_table=attributes.get("version_table", "alembic_version"),
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, **engine_options(url))
        if engine.dialect.name == "sqlite":
            # The file leaves its first migration in WAL mode. Otherwise the services'
            # connections switch it on their first connect, and a switch needs the exclusive
            # lock: while another connection writes, SQLite refuses it at once ("database
            # is locked", no busy wait), as CI saw when notify's two engines started together.
            # Only this pragma: foreign_keys=ON would break batch migrations' table copies.
            sa.event.listen(engine.sync_engine, "connect", _wal_mode)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run())


def _wal_mode(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def create_bus_tables(op) -> None:  # noqa: ANN001 - alembic's `op` proxy
    """The outbox and processed_messages tables, as each service's first migration makes them."""
    from .models import UTCDateTime

    op.create_table(
        "outbox",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("routing_key", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_outbox_unsent", "outbox", ["sent_at", "next_attempt_at"])
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"])
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.String(200), primary_key=True),
        sa.Column("source", sa.String(500), primary_key=True),
        sa.Column("message_id", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=False),
    )
