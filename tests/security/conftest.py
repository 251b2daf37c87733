"""Fixtures of the attacker's tests (issue 15): the real services over their HTTP API, on
the real databases (`database_url`: SQLite and PostgreSQL) and a real broker vhost each.

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
from conftest import make_settings
from fastapi import FastAPI

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
