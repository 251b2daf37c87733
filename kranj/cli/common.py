"""What every command of `kranj` uses: output and exit helpers, the broker connection, database URLs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import typer

from shared.serve import redact_url
from shared.settings import SERVICES, Settings

DATABASES: tuple[str, ...] = (*SERVICES, "accounts")  # "accounts": the identity store, shared by all


class Service(str, Enum):
    events = "events"
    booking = "booking"
    surveys = "surveys"
    notify = "notify"


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------
def out(message: str = "") -> None:
    typer.echo(message)


def err(message: str) -> None:
    typer.echo(message, err=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err(message)
    return typer.Exit(code)


def broker_unreachable_line(settings: Settings, problem: str) -> str:
    return (
        f"kranj: RabbitMQ is not reachable at {redact_url(settings.amqp_url)} ({problem}) — "
        "start it (e.g. rabbitmq-server -detached) or set KRANJ_AMQP_URL"
    )


@contextmanager
def quiet_broker_logs() -> Iterator[None]:
    """aiormq logs every failed connection attempt; the command says it once, in one line."""
    loggers = [logging.getLogger(name) for name in ("aiormq", "aio_pika")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)  # children at NOTSET inherit this
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)


def safe_db_url(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return redact_url(url)


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    import sqlalchemy as sa

    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def database_missing(url: str) -> bool:
    path = sqlite_path(url)
    return path is not None and not path.exists()


async def connect(settings: Settings):
    import aio_pika

    try:
        with quiet_broker_logs():
            return await aio_pika.connect(settings.amqp_url, timeout=10)
    except Exception as exc:  # noqa: BLE001
        reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        raise fail(broker_unreachable_line(settings, reason)) from None

