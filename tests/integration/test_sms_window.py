"""The number of SMS in flight follows the gateway (issue 20, section 3): through the real
delivery worker and the real HTTP SMS gateway, on SQLite and PostgreSQL.

- A gateway that answers after 100 ms (a provider across the internet): the window grows
  far past the old fixed 20, and every resident gets the SMS once.
- A gateway that answers 429 to a burst: the window shrinks, the refused SMS wait for their
  retry (nothing lost), the others are sent."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from support.settings import make_settings

from services.notify.delivery import DeliveryWorker
from services.notify.models import Delivery, Notice
from services.notify.render import Renderer
from services.notify.transports import email_transport, sms_transport
from services.notify.window import AdaptiveWindow
from shared.db import Database
from shared.migrations import upgrade_async

pytestmark = pytest.mark.integration
DELIVERIES = Delivery.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def db(database_url: str):
    await upgrade_async("notify", database_url)
    database = Database(database_url)
    yield database
    await database.dispose()


async def sms_to(db: Database, count: int) -> None:
    notice = Notice(source="/komunala-kranj/outages", source_id="n1", title="Izklop vode", body="Jutri ne bo vode.")
    async with db.session() as s:
        s.add(notice)
        await s.commit()
        s.add_all(Delivery(notice_id=notice.id, channel="sms", address=f"+3864012{i:04d}") for i in range(count))
        await s.commit()


def worker(tmp_path, database_url, db, sms_gateway, window: AdaptiveWindow) -> DeliveryWorker:
    settings = make_settings(tmp_path, "amqp://unused/", notify_database_url=database_url, sms_per_second=10_000,
                             **sms_gateway.settings())  # fmt: skip
    renderer = Renderer(settings)
    return DeliveryWorker(settings, db, renderer, email_transport(settings), sms_transport(settings),
                          batch=400, sms_window=window)  # fmt: skip


async def statuses(db: Database) -> dict[str, int]:
    query = sa.select(DELIVERIES.c.status, sa.func.count()).group_by(DELIVERIES.c.status)
    return dict(await db.run(lambda conn, _info: [tuple(r) for r in conn.execute(query).all()]))


async def test_a_slow_gateway_gets_many_sms_in_flight(tmp_path, database_url, db, sms_gateway):
    sms_gateway.delay = 0.1
    await sms_to(db, 300)
    window = AdaptiveWindow(start=8)
    w = worker(tmp_path, database_url, db, sms_gateway, window)
    try:
        assert await w.run_once("sms") == 300
    finally:
        await w.sms.close()
    assert await statuses(db) == {"sent": 300}
    assert len(sms_gateway.accepted) == 300
    assert len({r.json["to"] for r in sms_gateway.accepted}) == 300  # each once
    assert window.peak > 40, f"the window stayed at {window.peak} in flight against a 100 ms gateway"


async def test_a_burst_of_429_shrinks_the_window_and_loses_nothing(tmp_path, database_url, db, sms_gateway):
    await sms_to(db, 100)
    sms_gateway.statuses.extend([429] * 30)
    window = AdaptiveWindow(start=32)
    w = worker(tmp_path, database_url, db, sms_gateway, window)
    try:
        assert await w.run_once("sms") == 100
    finally:
        await w.sms.close()
    assert window.size < 32
    assert await statuses(db) == {"sent": 70, "failed-temporary": 30}  # the 30 wait for their retry
