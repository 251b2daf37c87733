"""The real PostgreSQL for tests: a fresh database per test (`fresh_pg_database`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import urllib.parse
from collections.abc import Iterator

import pytest

from support.settings import run_in_thread

PG_HOST = os.environ.get("KRANJ_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("KRANJ_TEST_PG_PORT", "5432"))
PG_USERS = tuple(os.environ.get("KRANJ_TEST_PG_USERS", "root,postgres").split(","))
PG_DB_PREFIX = "kranj_t_"

# ======================================================================================
# Databases
# ======================================================================================
_pg_admin: str | None = None


def _pg_admin_dsn() -> str:
    """The first of postgresql://root@…/postgres, postgresql://postgres@…/postgres that works."""
    global _pg_admin
    if _pg_admin is not None:
        return _pg_admin
    import asyncpg

    problems = []
    for user in PG_USERS:
        dsn = f"postgresql://{user}@{PG_HOST}:{PG_PORT}/postgres"

        async def probe(dsn: str = dsn) -> None:
            conn = await asyncpg.connect(dsn, timeout=5)
            await conn.close()

        try:
            run_in_thread(asyncio.run, probe())
        except Exception as exc:  # noqa: BLE001 - collect, report all
            problems.append(f"{dsn}: {type(exc).__name__}: {exc}")
            continue
        _pg_admin = dsn
        return dsn
    pytest.fail(
        "PostgreSQL is required by the test suite and is not usable: " + "; ".join(problems),
        pytrace=False,
    )


def _pg_execute(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(_pg_admin_dsn(), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_in_thread(asyncio.run, run())


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new database `kranj_t_<random>`; yields its `postgresql+asyncpg://` URL and drops it
    (WITH (FORCE), so leftover connections do not block the drop)."""
    admin = _pg_admin_dsn()
    name = f"{PG_DB_PREFIX}{secrets.token_hex(6)}"
    _pg_execute(f'CREATE DATABASE "{name}"')
    user = urllib.parse.urlsplit(admin).username
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
