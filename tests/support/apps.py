"""The services as a test runs them in its own process: each app with its whole lifespan
(migrations, bus, background jobs) and an httpx client on its ASGI app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from shared.settings import SERVICES, Settings


@contextlib.asynccontextmanager
async def running(
    settings: Settings, names: tuple[str, ...] = SERVICES
) -> AsyncIterator[tuple[dict[str, httpx.AsyncClient], dict[str, Any]]]:
    """`async with running(settings) as (clients, apps):` — `clients["events"]` etc. talk to
    the apps at `http://<name>.test`; the apps stop in reverse order on the way out."""
    import importlib

    apps = {name: importlib.import_module(f"services.{name}.app").create_app(settings) for name in names}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.test")
            )
        yield clients, apps
