"""`python -m bench --claims`: what claiming costs per delivery as a fan-out grows (issue 20 §4).

A notice to N/2 residents on email and SMS leaves N due deliveries. notify's real delivery
worker (services.notify.delivery, batches of 100 as in production, on SQLite) claims them
all, a batch of each channel in turn; between its claims each batch is marked sent, as the
sender would (not counted). Printed: this process's CPU per claimed delivery at each size.
A claim that reads only its batch costs the same per delivery at any size; one that reads
every due row for each batch costs more the bigger the fan-out (it did: 26 us at 2,000,
140 us at 100,000 rows, before migration notify_0013).

    .venv/bin/python -m bench --claims   # prints, writes nothing
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = (2_000, 20_000, 100_000)
BATCH = 100


def mark_sent(statement: Any, ids: list[str], conn: Any, _info: dict[str, Any]) -> None:
    conn.execute(statement, {"ids": ids})


async def claim_all(n: int, tmp: Path) -> float:
    """Microseconds of this process's CPU per delivery claimed, over a fan-out of `n` rows."""
    import sqlalchemy as sa

    from services.notify.delivery import DeliveryWorker
    from services.notify.models import Delivery, Notice
    from services.notify.render import Renderer
    from services.notify.transports import email_transport, sms_transport
    from shared.db import Database
    from shared.migrations import upgrade_async
    from shared.models import table_of, utcnow
    from shared.settings import Settings

    url = f"sqlite+aiosqlite:///{(tmp / f'claims-{n}.db').resolve()}"
    await upgrade_async("notify", url)
    settings = Settings(
        data_dir=tmp, notify_database_url=url, quiet_hours="off", secret_key="bench-secret-key-0123456789abcdef"
    )
    db = Database(url)
    deliveries = table_of(Delivery)
    try:
        async with db.session() as session:
            notice = Notice(source="/bench/claims", source_id=str(n), title="Izklop vode", body="Jutri ne bo vode.")
            session.add(notice)
            await session.commit()
            now = utcnow()
            for first in range(0, n, 5_000):
                rows: list[dict[str, Any]] = [
                    {"id": f"d{i:07d}", "notice_id": notice.id, "subscriber_id": f"s{i // 2:07d}",
                     "channel": "sms" if i % 2 else "email", "address": f"r{i}@example.si", "language": "sl",
                     "status": "queued", "attempts": 0, "next_attempt_at": now, "created_at": now}
                    for i in range(first, min(n, first + 5_000))
                ]  # fmt: skip
                await session.exec(sa.insert(deliveries), params=rows)
            await session.commit()
        worker = DeliveryWorker(
            settings, db, Renderer(settings), email_transport(settings), sms_transport(settings), batch=BATCH
        )
        await worker.heartbeat()
        sent = (
            sa.update(deliveries)
            .where(deliveries.c.id.in_(sa.bindparam("ids", expanding=True)))
            .values(status="sent", claimed_by=None)
        )
        spent, claimed = 0.0, 0
        while True:
            progress = 0
            for channel in ("email", "sms"):
                started = time.process_time()
                batch = await worker._claim(channel)
                spent += time.process_time() - started
                if batch:
                    await db.run(functools.partial(mark_sent, sent, [d.id for d in batch]))
                    claimed, progress = claimed + len(batch), progress + len(batch)
            if not progress:
                break
        assert claimed == n, f"{claimed} of {n} deliveries claimed"
        return spent / n * 1e6
    finally:
        await db.dispose()


async def run() -> dict[int, float]:
    tmp = Path(tempfile.mkdtemp(prefix="kranj-bench-claims-"))
    try:
        return {n: round(await claim_all(n, tmp), 1) for n in SIZES}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    results = asyncio.run(run())
    print(f"CPU per claimed delivery, batches of {BATCH}, notify's delivery worker on SQLite:")
    for n, us in results.items():
        print(f"  {n:>7,} due deliveries: {us:6.1f} us")
