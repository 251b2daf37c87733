"""Who a notice reaches (`services.notify.notices._followers`), on SQLite and PostgreSQL: the
active followers of the KS (or of the whole city) and the topic, page after page, each once,
each with only the channels whose consent is active — and on SQLite, pages that cost what
they hold, not what the city holds. Without statistics SQLite took the status indexes and
the topic's whole list of followers for every page of 1,000: 32 ms a page in a city of
50,000 residents, growing with the city; now each page walks the keys in order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from services.notify.models import ChannelConsent, Subscriber, SubscriberKs, SubscriberTopic
from services.notify.notices import _followers
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import table_of

pytestmark = pytest.mark.integration


def residents() -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    now = datetime.now(UTC)
    subs, kss, topics, consents = [], [], [], []

    def add(sid: str, ks: list[str], topic: list[str], status: str = "active", active: tuple[str, ...] = ("email", "sms")):
        subs.append(
            {
                "id": sid, "email": f"{sid}@example.si", "phone": f"+38640{len(subs):06d}", "language": "sl",
                "channels": ["email", "sms"], "digest": False, "status": status, "consent_source": "import",
                "consent_text": "test", "consent_at": now, "created_at": now, "updated_at": now,
            }  # fmt: skip
        )
        kss.extend({"subscriber_id": sid, "ks": k} for k in ks)
        topics.extend({"subscriber_id": sid, "topic": t} for t in topic)
        consents.extend(
            {
                "subscriber_id": sid, "channel": c, "status": "active" if c in active else "withdrawn",
                "how": "import", "proof": "test", "wording_version": "test", "wording": "test",
                "requested_at": now, "at": now,
            }  # fmt: skip
            for c in ("email", "sms")
        )

    for i in range(7):  # followers of Primskovo on utilities: more than two pages of 3
        add(f"p-{i}", ["primskovo"], ["utilities", "general"])
    add("p-both", ["primskovo", "*"], ["utilities"])  # Primskovo and the whole city: once
    add("p-email", ["primskovo"], ["utilities"], active=("email",))  # SMS consent withdrawn
    add("p-gone", ["primskovo"], ["utilities"], status="unsubscribed")
    add("p-other-topic", ["primskovo"], ["general"])
    add("city", ["*"], ["utilities"])  # the whole city
    for i in range(5):
        add(f"s-{i}", ["strazisce"], ["utilities"])
    return subs, kss, topics, consents


async def test_followers_come_once_each_with_their_consented_channels_and_cheaply(database_url) -> None:
    await upgrade_async("notify", database_url)
    db = Database(database_url)
    subs, kss, topics, consents = residents()

    def load(conn: sa.Connection, _info: object) -> None:
        conn.execute(sa.insert(table_of(Subscriber)), subs)
        conn.execute(sa.insert(table_of(SubscriberKs)), kss)
        conn.execute(sa.insert(table_of(SubscriberTopic)), topics)
        conn.execute(sa.insert(table_of(ChannelConsent)), consents)

    statements: list[str] = []

    def seen(_conn, _cursor, statement: str, parameters: object, context, _many: bool) -> None:
        if statement.lstrip().startswith("SELECT"):
            statements.append(
                str(context.compiled.statement.compile(dialect=_conn.dialect, compile_kwargs={"literal_binds": True}))
            )

    try:
        await db.run(load)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
        try:
            async with db.session() as session:
                primskovo = [row async for row in _followers(session, ["primskovo"], "utilities", page_size=3)]
                city = [row async for row in _followers(session, ["*"], "utilities", page_size=3)]
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)

        everyone = {f"p-{i}" for i in range(7)} | {"p-both", "p-email", "city"}
        assert [row[0] for row in primskovo] == sorted(everyone)  # in order, each once
        channels = {row[0]: row[4] for row in primskovo}
        assert channels["p-email"] == ["email"]
        assert all(channels[sid] == ["email", "sms"] for sid in everyone - {"p-email"})
        assert [row[0] for row in city] == sorted(everyone | {f"s-{i}" for i in range(5)})

        if db.is_sqlite:
            plans = []
            for sql in statements:
                plan = await db.run(
                    lambda conn, _info, s=sql: [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s).all()]
                )
                plans.append((sql, plan))
            tables = {"subscriber_ks", "subscribers", "channel_consents"}
            assert {t for sql, _ in plans for t in tables if f"FROM {t}" in sql} == tables, statements
            for sql, plan in plans:
                steps = " | ".join(plan)
                assert "ix_subscribers_status" not in steps and "ix_channel_consents_status" not in steps, (sql, plan)
                assert "LIST SUBQUERY" not in steps and "TEMP B-TREE" not in steps, (sql, plan)
                if "FROM subscriber_ks" in sql:
                    assert "sqlite_autoindex_subscriber_ks_1 (subscriber_id>?)" in steps, (sql, plan)
    finally:
        await db.dispose()
