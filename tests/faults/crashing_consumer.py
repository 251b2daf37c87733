"""A real consumer process for the poison-message test: shared.bus's Consumer on a test
queue bound to `notify.notice.requested`, whose handler kills the whole process
(`os._exit`, like a segfault or the OOM killer) whenever a notice is titled "POISON".
Other messages are handled normally: their ids are appended to `<data dir>/handled.txt`.

    python tests/faults/crashing_consumer.py AMQP_URL DATA_DIR
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from shared.bus import Bus, Handles, QueueSpec
from shared.contracts import NOTICE_REQUESTED
from shared.db import Database
from shared.migrations import upgrade_async
from shared.settings import Settings

QUEUE = QueueSpec(
    "events.test-crashing", "events", (NOTICE_REQUESTED.routing_key,), "A test consumer that dies on poison."
)


async def main(amqp_url: str, data_dir: Path) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'events.db'}"
    if not (data_dir / "events.db").exists():  # restarted after a crash: the schema is there
        await upgrade_async("events", url)
    settings = Settings(amqp_url=amqp_url, data_dir=data_dir, events_database_url=url, prefetch=1, graceful_timeout=2)
    db = Database(url)
    bus = Bus(settings, "events", db)

    async def handle(session, envelope, data) -> None:  # type: ignore[no-untyped-def]
        if data.title == "POISON":
            os._exit(3)  # no cleanup, no nack: the broker sees the connection die
        with (data_dir / "handled.txt").open("a") as fh:
            fh.write(envelope.id + "\n")

    bus.consume(QUEUE, Handles(NOTICE_REQUESTED, handle))
    await bus.start(relay=False)
    (data_dir / "starts.txt").open("a").write(f"{os.getpid()}\n")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
