"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright, axe-core, and serving an app for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from shared.serve import KEEP_ALIVE_SECONDS
from support.settings import free_port, wait_until

# ======================================================================================
# Real Chromium (Debian's /usr/bin/chromium) driven by Playwright, and axe-core
# ======================================================================================
CHROMIUM = os.environ.get("KRANJ_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


async def axe_serious_violations(page: Any) -> list[str]:
    """Run axe-core (WCAG 2.1 A/AA rules) on `page`; the serious and critical violations,
    one readable line each (empty list = the page passes)."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(
        page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    )
    found = []
    for violation in results.response.get("violations", []):
        if violation.get("impact") in ("serious", "critical"):
            targets = [", ".join(node.get("target", [])) for node in violation.get("nodes", [])][:3]
            found.append(f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets}")
    return found


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app (with its lifespan) on a free port of 127.0.0.1 inside this
    event loop, for a real browser; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,  # as shared/serve.py serves a service
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=30, message="the app to start serving")
        if task.done():
            task.result()  # raise its startup error
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
