"""`kranj status`: services, queues, dead letters, unsent outbox rows."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any, cast

import typer

from shared.serve import redact_url
from shared.settings import SERVICES, Settings

from .common import (
    database_missing,
    out,
    quiet_broker_logs,
)


# --------------------------------------------------------------------------------------
# kranj status
# --------------------------------------------------------------------------------------
async def _health(settings: Settings) -> dict[str, str]:
    import httpx

    async def one(client: httpx.AsyncClient, name: str) -> tuple[str, str]:
        url = settings.local_url(name) + "/readyz"
        try:
            response = await client.get(url)
        except httpx.ConnectError:
            return name, "not running"
        except httpx.TimeoutException:
            return name, "unavailable (no answer within 2 s)"
        except httpx.HTTPError as exc:
            return name, f"unavailable ({type(exc).__name__})"
        if response.status_code == 200:
            return name, "ok"
        detail = ""
        try:
            body = response.json()
            if isinstance(body, dict):
                detail = str(body.get("detail") or body.get("status") or "")[:120]
        except ValueError:
            pass
        return name, f"unavailable (HTTP {response.status_code}{': ' + detail if detail else ''})"

    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        return dict(await asyncio.gather(*(one(client, name) for name in SERVICES)))


async def _queue_depths(settings: Settings) -> tuple[str | None, dict[str, tuple[int, int] | None]]:
    """(broker problem, {queue: (messages, consumers) or None when not declared})."""
    import aio_pika
    import aiormq

    from shared.bus import iter_topology_queue_names

    try:
        with quiet_broker_logs():
            connection = await aio_pika.connect(settings.amqp_url, timeout=5)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}".strip().rstrip(":"), {}
    depths: dict[str, tuple[int, int] | None] = {}
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        for name in iter_topology_queue_names():
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                depths[name] = None
                channel = await connection.channel(publisher_confirms=False)
                continue
            ok = queue.declaration_result
            depths[name] = (ok.message_count or 0, ok.consumer_count or 0)
    return None, depths


async def _unsent_outbox(settings: Settings, name: str) -> str:
    import sqlalchemy as sa

    from shared.db import Database

    url = settings.database_url(name)
    if database_missing(url):
        return "not migrated"
    database = Database(url)
    try:
        async with database.engine.connect() as conn:
            unsent = (await conn.execute(sa.text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))).scalar_one()
    except sa.exc.DBAPIError as exc:
        text = str(exc.orig if exc.orig is not None else exc).lower()
        if "no such table" in text or "does not exist" in text and "relation" in text:
            return "not migrated"
        return f"database unavailable ({type(exc.orig or exc).__name__})"
    except (OSError, TimeoutError) as exc:
        return f"database unavailable ({type(exc).__name__})"
    finally:
        await database.dispose()
    return f"{unsent} unsent"


async def gather_status(settings: Settings) -> dict[str, Any]:
    health, (broker, depths), *outbox = await asyncio.gather(
        _health(settings), _queue_depths(settings), *(_unsent_outbox(settings, s) for s in SERVICES)
    )
    return {
        "services": health,
        "broker": broker,
        "queues": depths,
        "outbox": dict(zip(SERVICES, outbox, strict=True)),
        "warnings": dead_letter_warnings(cast("dict[str, tuple[int, int] | None]", depths)) if broker is None else [],
    }


def dead_letter_warnings(depths: dict[str, tuple[int, int] | None]) -> list[str]:
    """What ops must know about the bound of kranj.dead (docs/operations.md, "Dead letters"):
    it is nearly full (from DEAD_WARN_RATIO of its bound, the oldest are dropped at the
    bound), or it has dropped dead letters (they are in kranj.dead.overflow)."""
    from shared.bus import DEAD_OVERFLOW_NAME, DEAD_QUEUE_NAME, DEAD_WARN_RATIO, dead_bound

    warnings = []
    bound = dead_bound()
    dead = (depths.get(DEAD_QUEUE_NAME) or (0, 0))[0]
    if dead >= DEAD_WARN_RATIO * bound:
        warnings.append(
            f"kranj.dead holds {dead} of at most {bound} dead letters ({100 * dead // bound} %): at the bound "
            "the oldest are dropped. Read them (`kranj dlq list`), fix the cause, then replay or drop them."
        )
    dropped = (depths.get(DEAD_OVERFLOW_NAME) or (0, 0))[0]
    if dropped:
        warnings.append(
            f"{dropped} dead letters were dropped from kranj.dead (full); the latest are kept in "
            f"{DEAD_OVERFLOW_NAME}. Read them in the management UI, then purge {DEAD_OVERFLOW_NAME}."
        )
    return warnings


def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Services, queue depths, dead letters and unsent outbox rows on one screen.

    Exit code 0 when every service is ready, the broker is reachable and kranj.dead is below
    80 % of its bound with nothing dropped; 1 otherwise (each dead-letter problem is a
    WARNING line).
    """
    from shared.bus import DEAD_QUEUE_NAME, dead_bound

    settings = Settings()
    report = asyncio.run(gather_status(settings))
    healthy = (
        report["broker"] is None and all(v == "ok" for v in report["services"].values()) and not report["warnings"]
    )
    if as_json:
        out(json.dumps({**report, "healthy": healthy}, ensure_ascii=False, indent=2))
        raise typer.Exit(0 if healthy else 1)
    out(f"Kranj ZA vse — {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S')}")
    out()
    out("Services")
    for name in SERVICES:
        out(f"  {name:<8} {settings.local_url(name):<24} {report['services'][name]}")
    out()
    out(f"Queues at {redact_url(settings.amqp_url)}")
    if report["broker"]:
        out(f"  RabbitMQ is not reachable ({report['broker']})")
    else:
        width = max(len(q) for q in report["queues"]) + 2
        out(f"  {'queue':<{width}}{'messages':>9}{'consumers':>11}")
        for name, depth in report["queues"].items():
            if depth is None:
                out(f"  {name:<{width}}{'not declared yet':>20}")
            else:
                out(f"  {name:<{width}}{depth[0]:>9}{depth[1]:>11}")
    out()
    dead = report["queues"].get(DEAD_QUEUE_NAME)
    if report["broker"]:
        out("Dead letters: unknown (broker not reachable)")
    elif dead is None:
        out("Dead letters: 0 (kranj.dead not declared yet)")
    else:
        hint = " — see `kranj dlq list`" if dead[0] else ""
        out(f"Dead letters: {dead[0]} of at most {dead_bound()}{hint}")
    for warning in report["warnings"]:
        out(f"WARNING: {warning}")
    out()
    out("Outbox")
    for name in SERVICES:
        out(f"  {name:<8} {report['outbox'][name]}")
    raise typer.Exit(0 if healthy else 1)

