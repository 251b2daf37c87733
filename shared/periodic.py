"""The one periodic loop: a background task that runs a job now and then every N seconds.

Every service's timed work (lapsed room requests, event reminders, surveys that close,
the weekly digest, contact retention) is a job for `every`: a failure is logged with the
job's name and tried again at the next tick, never ending the loop; a graceful stop
(cancellation) ends it at once. The result goes to `ServiceApp.background`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("kranj.periodic")

Seconds = float | Callable[[], float]


def every(seconds: Seconds, job: Callable[[], Awaitable[Any]], *, name: str) -> Callable[[], Awaitable[None]]:
    """A background task that awaits `job()` now and then every `seconds` (a number, or a
    function read before each sleep, for settings that change in tests)."""

    async def loop() -> None:
        while True:
            try:
                done = await job()
                if done:
                    log.info("%s: %s", name, done)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; trying again in the next round", name)
            await asyncio.sleep(seconds() if callable(seconds) else seconds)

    loop.__name__ = loop.__qualname__ = name.replace(" ", "_")
    return loop
