"""The local front door in front of the running services, and what a keyboard user does
with a page (shared by the one-site and the resident-journey browser tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from support.browser import serve_app
from support.settings import wait_until


@contextlib.asynccontextmanager
async def serve_door(door: Any, port: int = 0) -> AsyncIterator[str]:
    """The local front door `door` served as `kranj up` serves it (kranj.gateway.uvicorn_config)
    on `port` (0: any free one); yields its address."""
    import uvicorn

    from kranj.gateway import bind, uvicorn_config

    sock = bind("127.0.0.1", port)
    server = uvicorn.Server(uvicorn_config(door, graceful_timeout=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), timeout=30, message="the front door to start")
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
        sock.close()


@contextlib.asynccontextmanager
async def front_door(apps: dict[str, Any], port: int = 0) -> AsyncIterator[str]:
    """The services of `apps` on their own ports and the local front door (as `kranj up`
    serves it) in front of them on `port` (0: any free one); yields the door's address.
    With only some of the services, the door routes theirs, and what every service serves
    alike (the staff login: SHARED_OWNER) goes to the first of them."""
    from kranj.gateway import FrontDoor
    from kranj.routes import SHARED_OWNER, route_table

    async with contextlib.AsyncExitStack() as stack:
        direct = {name: await stack.enter_async_context(serve_app(app)) for name, app in apps.items()}
        upstreams = {SHARED_OWNER: next(iter(direct.values())), **direct}
        yield await stack.enter_async_context(serve_door(FrontDoor(route_table(apps), upstreams), port))


async def active(page: Any) -> dict[str, Any]:
    """What has the keyboard focus: id, tag, class, href and value."""
    return await page.evaluate(
        "() => { const e = document.activeElement; return {id: e.id, tag: e.tagName.toLowerCase(),"
        " cls: e.className, href: e.getAttribute('href'), value: e.value || ''}; }"
    )


async def tab_to(page: Any, element_id: str, *, back: bool = False, limit: int = 80) -> None:
    """Tab (Shift+Tab with `back`) until the element with `element_id` has the focus."""
    for _ in range(limit):
        if (await active(page))["id"] == element_id:
            return
        await page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"#{element_id} never got the focus by keyboard")


async def tab_to_link(page: Any, href: str, *, back: bool = False, limit: int = 80) -> None:
    """Tab (Shift+Tab with `back`) until the link to `href` has the focus."""
    for _ in range(limit):
        await page.keyboard.press("Shift+Tab" if back else "Tab")
        if (await active(page))["href"] == href:
            return
    raise AssertionError(f"the link {href} never got the focus by keyboard")


async def press_and_load(page: Any, key: str = "Enter", locator: Any = None) -> None:
    """Press `key` (on `locator`, else where the focus is) and wait for the page it submits to."""
    async with page.expect_navigation():
        await (locator.press(key) if locator is not None else page.keyboard.press(key))
