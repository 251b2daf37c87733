"""Run one service in the foreground: what `kranj run <service>` and each container do."""

from __future__ import annotations

import asyncio
import importlib
import sys

import aiormq
import uvicorn

from . import logs
from .settings import SERVICES, Settings, load_or_exit


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


def run_service(name: str, settings: Settings | None = None) -> None:
    if name not in SERVICES:
        sys.exit(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    settings = settings or load_or_exit(f"kranj {name}")
    logs.configure(name, fmt=settings.log_format, level=settings.log_level)
    problem = asyncio.run(broker_problem(settings.amqp_url))
    if problem:
        print(f"kranj {name}: RabbitMQ is not reachable at {redact_url(settings.amqp_url)} ({problem})", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"services.{name}.app")
    app = module.create_app(settings)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.port(name),
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.graceful_timeout),
        proxy_headers=True,
    )
