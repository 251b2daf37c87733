"""The number of SMS in flight follows the gateway (issue 20, section 3): through the real
delivery worker and the real HTTP SMS gateway, on SQLite and PostgreSQL.

- A gateway that answers after 100 ms (a provider across the internet): the window grows
  far past the old fixed 20, and every resident gets the SMS once.
- A gateway that answers 429 to a burst: the window shrinks, the refused SMS wait for their
  retry (nothing lost), the others are sent.
- A batch's texts are prepared apart from their requests, a few dozen at a time: a text that
  cannot be made (a bug in rendering) fails for now, to be tried again, and loses nothing
  else of its batch; a number that may not get SMS is skipped and never reaches the gateway."""

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


async def test_a_text_that_cannot_be_made_fails_for_now_and_the_rest_go_out(
    tmp_path, database_url, db, sms_gateway, monkeypatch
):
    good = Notice(source="/komunala-kranj/outages", source_id="n1", title="Izklop vode", body="Jutri ne bo vode.")
    broken = Notice(source="/komunala-kranj/outages", source_id="n2", title="Zapora ceste", body="Cesta bo zaprta.")
    async with db.session() as s:
        s.add_all([good, broken])
        await s.commit()
        s.add_all(Delivery(notice_id=good.id, channel="sms", address=f"+3864012{i:04d}") for i in range(120))
        s.add_all(Delivery(notice_id=broken.id, channel="sms", address=f"+3864013{i:04d}") for i in range(5))
        s.add(Delivery(notice_id=good.id, channel="sms", address="+38642000000"))  # a landline: skipped
        await s.commit()
    real = Renderer.sms_renderer

    def sms_renderer(self, notice, language):
        if notice.id == broken.id:
            raise RuntimeError("a template that cannot be rendered")
        return real(self, notice, language)

    monkeypatch.setattr(Renderer, "sms_renderer", sms_renderer)
    window = AdaptiveWindow(start=16)
    threshold = window.threshold
    w = worker(tmp_path, database_url, db, sms_gateway, window)
    try:
        assert await w.run_once("sms") == 126
    finally:
        await w.sms.close()

    assert await statuses(db) == {"sent": 120, "failed-temporary": 5, "skipped": 1}
    # Our own failure says nothing about the gateway: the window never halved for it.
    assert window.threshold == threshold and window.size >= 16
    query = sa.select(
        DELIVERIES.c.notice_id, DELIVERIES.c.status, DELIVERIES.c.last_error, DELIVERIES.c.next_attempt_at
    )
    rows = await db.run(lambda conn, _info: conn.execute(query).all())
    failed = [r for r in rows if r.status == "failed-temporary"]
    assert {r.notice_id for r in failed} == {broken.id}
    assert all(r.last_error == "RuntimeError: a template that cannot be rendered" for r in failed)
    assert all(r.next_attempt_at is not None for r in failed)  # tried again later
    assert [r.last_error for r in rows if r.status == "skipped"] == [
        "SMS only to mobile numbers (not landline, premium-rate or toll-free)"
    ]
    assert len(sms_gateway.accepted) == 120
    assert {r.json["to"] for r in sms_gateway.accepted} == {f"+3864012{i:04d}" for i in range(120)}
