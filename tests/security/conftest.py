"""Fixtures of the attacker's tests (issue 15): the real services over their HTTP API, on
the real databases (`database_url`: SQLite and PostgreSQL) and a real broker vhost each.

- `platform(**overrides)`: booking, events and notify on one broker vhost and notify on
  `database_url`, with the SMTP sink and SMS gateway; `async with platform() as p:` gives
  their clients (`p.booking`, `p.events`, `p.notify`) and notify's deliveries to a contact.
- `services(...)`: an async context manager factory; `async with services("booking") as s:`
  runs the service's whole lifespan (migrations, bus, background jobs) and yields a `Running`
  with an httpx client on its ASGI app; `s.staff(role, ks)` gives the headers of a fresh
  API token of that role and KS from the identity store.
Helpers (times relative to `shared.clock.now()`, `ADMIN`) are in `security.helpers`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select
from support.settings import make_settings, wait_until

from services.notify.models import Delivery
from shared.settings import Settings
from shared.web import ServiceApp


@dataclass
class Running:
    name: str
    settings: Settings
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def ctx(self) -> ServiceApp:
        return self.app.state.ctx  # type: ignore[no-any-return]

    async def staff(self, role: str, ks: list[str], label: str = "test") -> dict[str, str]:
        """Headers with a new API token of `role` for `ks` (the identity store all services share)."""
        _id, token = await self.ctx.accounts.create_token(role=role, ks=ks, label=label)
        return {"Authorization": f"Bearer {token}"}


def _create(name: str, settings: Settings, **kwargs: Any) -> FastAPI:
    if name == "booking":
        from services.booking.app import create_app
    elif name == "events":
        from services.events.app import create_app  # type: ignore[assignment]
    elif name == "surveys":
        from services.surveys.app import create_app  # type: ignore[assignment]
    else:
        raise ValueError(name)
    return create_app(settings, **kwargs)  # type: ignore[no-any-return]


@pytest.fixture
def services(
    tmp_path: Path, amqp_url: str, database_url: str
) -> Callable[..., contextlib.AbstractAsyncContextManager[Running]]:
    """`services(name, **create_app_kwargs)`: the service `name` on `database_url` (the other
    services' databases, unused, stay SQLite files), its bus on this test's vhost."""

    @contextlib.asynccontextmanager
    async def run(name: str, **kwargs: Any) -> AsyncIterator[Running]:
        settings = make_settings(tmp_path, amqp_url, **{f"{name}_database_url": database_url})
        app = _create(name, settings, **kwargs)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}.test") as client:
                yield Running(name, settings, app, client)

    return run


# --------------------------------------------------------------------------------------
# `platform`: booking, events and notify together (the relay attacks, finding 2)
# --------------------------------------------------------------------------------------
class Platform:
    """booking, events and notify on one broker vhost, notify on `database_url`."""

    def __init__(self, clients: dict[str, httpx.AsyncClient], apps: dict[str, Any]) -> None:
        self.clients, self.apps = clients, apps

    @property
    def booking(self) -> httpx.AsyncClient:
        return self.clients["booking"]

    @property
    def events(self) -> httpx.AsyncClient:
        return self.clients["events"]

    @property
    def notify(self) -> httpx.AsyncClient:
        return self.clients["notify"]

    async def deliveries(self, address: str) -> list[tuple[str, str, str | None]]:
        """(channel, status, last_error) of notify's deliveries to `address`."""
        async with self.apps["notify"].state.ctx.db.session() as s:
            rows = (
                await s.exec(
                    select(Delivery.channel, Delivery.status, Delivery.last_error).where(Delivery.address == address)
                )
            ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def settled(self, address: str, count: int) -> list[tuple[str, str, str | None]]:
        """Wait until `count` deliveries to `address` are recorded and none waits to be sent."""

        async def done():
            rows = await self.deliveries(address)
            return rows if len(rows) >= count and all(s not in ("queued", "sending") for _, s, _ in rows) else None

        return await wait_until(done, timeout=30, message=f"{count} deliveries to the contact settled")


@pytest.fixture
def platform(tmp_path, amqp_url, database_url, smtp_server, sms_gateway):
    @contextlib.asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Platform]:
        from services.booking.app import create_app as create_booking
        from services.events.app import create_app as create_events
        from services.notify.app import create_app as create_notify

        settings = make_settings(
            tmp_path,
            amqp_url,
            notify_database_url=database_url,
            **smtp_server.settings(),
            **sms_gateway.settings(),
            **overrides,
        )
        apps = {
            "notify": create_notify(settings),
            "booking": create_booking(settings),
            "events": create_events(settings),
        }
        async with contextlib.AsyncExitStack() as stack:
            clients = {}
            for name, app in apps.items():
                await stack.enter_async_context(app.router.lifespan_context(app))
                clients[name] = await stack.enter_async_context(
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}.test")
                )
            yield Platform(clients, apps)

    return run
