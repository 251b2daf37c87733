"""Who a notice reaches, read in keyset pages (`services.notify.notices._followers`), on
SQLite and PostgreSQL: every follower once, across page boundaries, whatever the mix of
KS, whole-city, topics and left subscriptions, including pages where nobody is active."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from services.notify.models import Subscriber, SubscriberKs, SubscriberTopic
from services.notify.notices import _followers
from shared.db import Database
from shared.migrations import upgrade_async
from shared.models import utcnow

pytestmark = pytest.mark.integration


async def test_followers_are_read_once_each_across_pages(database_url: str) -> None:
    await upgrade_async("notify", database_url)
    db = Database(database_url)
    now = utcnow()
    subscribers, ks_rows, topic_rows, expected = [], [], [], set()
    for i in range(40):
        sid = f"s-{i:03d}"
        ks = "*" if i % 10 == 3 else ("primskovo" if i % 3 else "center")
        topics = ["utilities", "general"] if i % 4 else ["events"]
        # s-010 … s-019 have all left: a whole page of ids with no active subscriber
        status = "unsubscribed" if 10 <= i < 20 or i == 33 else "active"
        subscribers.append(
            {
                "id": sid, "email": f"{sid}@example.si", "phone": None, "language": "sl", "channels": ["email"],
                "digest": i == 7, "status": status, "consent_source": "staff", "consent_text": "t",
                "consent_at": now, "created_at": now, "updated_at": now,
            }  # fmt: skip
        )
        ks_rows.append({"subscriber_id": sid, "ks": ks})
        if i % 5 == 0:  # a second KS row must not make a second delivery
            ks_rows.append({"subscriber_id": sid, "ks": "center" if ks != "center" else "primskovo"})
        topic_rows += [{"subscriber_id": sid, "topic": t} for t in topics]
        in_ks = ks in ("primskovo", "*") or i % 5 == 0
        if status == "active" and in_ks and "utilities" in topics:
            expected.add(sid)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(sa.insert(Subscriber.__table__), subscribers)  # type: ignore[attr-defined]
            await conn.execute(sa.insert(SubscriberKs.__table__), ks_rows)  # type: ignore[attr-defined]
            await conn.execute(sa.insert(SubscriberTopic.__table__), topic_rows)  # type: ignore[attr-defined]
        assert len(expected) > 12  # more than a few pages of 4
        for page_size in (1, 4, 10, 1000):
            async with db.session() as session:
                got = [row async for row in _followers(session, ["primskovo"], "utilities", page_size=page_size)]
            ids = [row[0] for row in got]
            assert len(ids) == len(set(ids)), f"a follower came twice with pages of {page_size}"
            assert set(ids) == expected, f"pages of {page_size}"
            assert next(row for row in got if row[0] == "s-007")[5] is True  # the digest choice comes along
        async with db.session() as session:
            city = {row[0] async for row in _followers(session, ["*"], "utilities", page_size=3)}
        everyone = {s["id"] for s in subscribers if s["status"] == "active"}
        assert city == {sid for sid in everyone if any(t["subscriber_id"] == sid and t["topic"] == "utilities" for t in topic_rows)}
    finally:
        await db.dispose()
