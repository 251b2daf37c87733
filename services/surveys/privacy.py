"""surveys: what it holds about a person, found, exported and erased (the frame: shared/privacy.py).

Answers are anonymous: no column holds a contact. But free text may (a resident writes "I'm
Tina, call me on 041 777 888"), and the outbox keeps the volunteers' messages to notify.
Both are masked; the answers stay for the results."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from shared.db import Database
from shared.models import utcnow
from shared.privacy import Person, forget_bus_records, identities_in_outbox, mask_outbox, mask_text_columns
from shared.settings import Settings

from .models import Answer, Response

FREE_TEXT = (Answer.text, Response.entered_by)


async def find(db: Database, person: Person) -> Person:
    async with db.session() as session:
        return await identities_in_outbox(session, person)


async def export(db: Database, person: Person) -> dict[str, Any]:
    """Free-text answers that name the person (an answer itself is not linked to anyone)."""
    texts: list[dict[str, Any]] = []
    if not person.empty:
        async with db.session() as session:
            rows = (await session.exec(select(Answer).where(col(Answer.text).is_not(None)))).all()
        texts = [
            {"survey_id": a.survey_id, "question_id": a.question_id, "text": a.text}
            for a in rows
            if person.named_in(a.text)
        ]
    return {"answers_naming_them": texts}


async def erase(db: Database, person: Person, settings: Settings | None = None) -> dict[str, int]:
    async with db.session() as session:
        masked = await mask_text_columns(session, person, FREE_TEXT)
        outbox = await mask_outbox(session, person)
        await session.commit()
    await db.flush_deleted_data()
    return {"texts_masked": masked, "outbox_messages": outbox}


async def retain(db: Database, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """The volunteers' messages to notify (sent outbox rows) go `KRANJ_RECORD_RETENTION_DAYS`
    after sending; answers hold no contact to keep or drop."""
    cutoff = (now or utcnow()) - timedelta(days=settings.record_retention_days)
    async with db.session() as session:
        bus = await forget_bus_records(session, cutoff)
        await session.commit()
    if bus["outbox_messages"]:  # the inbox's records name no one
        await db.flush_deleted_data()
    return bus
