"""Serve one service's app in the foreground: the broker check, the logs, uvicorn.

`python -m services.<name>` calls `serve` with its own `create_app`; `kranj run <name>`
(kranj/runner.py) finds the service by name and calls it too.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import aiormq
import uvicorn

from . import logs
from .settings import Settings, load_or_exit

# How long a service keeps an idle keep-alive connection open. Whatever pools connections
# to a service (the front door, kranj/gateway.py) gives them up well before this: with
# uvicorn's default of 5 s, exactly httpx's own pool expiry, the door now and then sent a
# request on a connection the service was closing that same moment (ReadError, a 502 for
# the resident: seen in CI on GET /rooms).
KEEP_ALIVE_SECONDS = 75


async def broker_problem(url: str, timeout: float = 5.0) -> str | None:
    """None when RabbitMQ at `url` accepts a connection, else a one-line reason."""
    try:
        connection = await asyncio.wait_for(aiormq.connect(url), timeout=timeout)
    except TimeoutError:
        return f"no answer within {timeout:.0f} s"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"{type(exc).__name__}: {exc}".strip().rstrip(":") or type(exc).__name__
    await connection.close()
    return None


def redact_url(url: str) -> str:
    """amqp://user:secret@host/ -> amqp://user:***@host/"""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def serve(name: str, create_app: Callable[[Settings], Any], settings: Settings | None = None) -> None:
    """Check the broker, then run `create_app(settings)` with uvicorn until it is stopped."""
    settings = settings or load_or_exit(f"kranj {name}")
    logs.configure(name, fmt=settings.log_format, level=settings.log_level)
    problem = asyncio.run(broker_problem(settings.amqp_url))
    if problem:
        print(f"kranj {name}: RabbitMQ is not reachable at {redact_url(settings.amqp_url)} ({problem})", file=sys.stderr)
        sys.exit(2)
    app = create_app(settings)
    # This process is the service: once started, its heap is moved out of the collector's
    # reach (shared.web's lifespan, `freeze_heap`). Not for apps that tests build in-process.
    app.state.freeze_heap = True
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.port(name),
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.graceful_timeout),
        proxy_headers=True,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
