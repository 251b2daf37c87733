"""The inbox's question for a batch — which of these messages has this consumer handled
before? — on SQLite and PostgreSQL: the right answer whatever pairs of source and id the
inbox and the batch hold, and on SQLite a lookup in the primary key per pair, not a walk
over every message the consumer has ever handled (the row-value query it replaced read
them all: 5 ms a batch at 40,000 rows, more each day, as nothing is ever pruned from it)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from shared.contracts.envelope import CloudEvent
from shared.db import Database
from shared.inbox import already_processed
from shared.migrations import upgrade_async
from shared.models import ProcessedMessage, table_of

pytestmark = pytest.mark.integration


def event(source: str, message_id: str) -> tuple[CloudEvent, None, None, None]:
    envelope = CloudEvent(specversion="1.0", id=message_id, source=source, type="si.kranj.test.v1")
    return envelope, None, None, None


async def test_a_batch_learns_exactly_which_of_its_messages_were_handled(database_url) -> None:
    await upgrade_async("notify", database_url)
    db = Database(database_url)
    at = datetime.now(UTC)
    handled = [
        ("notify.on-notice-requested", "/komunala", "a"),
        ("notify.on-notice-requested", "/komunala", "b"),
        ("notify.on-notice-requested", "/gasilci", "c"),
        ("notify.on-event-published", "/gasilci", "d"),  # another consumer's
    ]
    # Enough of the consumer's own rows that walking them would show in the plan's choice.
    handled += [("notify.on-notice-requested", "/komunala", f"old-{i}") for i in range(500)]
    rows = [{"consumer": c, "source": s, "message_id": m, "type": "t", "processed_at": at} for c, s, m in handled]
    try:
        await db.run(lambda conn, _info: conn.execute(sa.insert(table_of(ProcessedMessage)), rows))
        batch = [
            event("/komunala", "a"),  # handled
            event("/gasilci", "b"),  # an id handled, but from another source: new
            event("/gasilci", "c"),  # handled
            event("/komunala", "c"),  # a source and an id both known, never together: new
            event("/gasilci", "d"),  # handled by another consumer: new to this one
            event("/vrtec", "e"),  # new
        ]
        query = already_processed("notify.on-notice-requested", batch)
        found = set(await db.run(lambda conn, _info: [tuple(r) for r in conn.execute(query).all()]))
        assert [(e.source, e.id) in found for e, *_ in batch] == [True, False, True, False, False, False]

        if db.is_sqlite:
            sql = str(query.compile(dialect=sa.dialects.sqlite.dialect(), compile_kwargs={"literal_binds": True}))
            plan = await db.run(
                lambda conn, _info: [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()]
            )
            assert any("(consumer=? AND source=? AND message_id=?)" in step for step in plan), plan
    finally:
        await db.dispose()
