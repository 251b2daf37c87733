"""notify: what it holds about a person, found, exported and erased (the frame: shared/privacy.py).

The subscription goes with everything hanging on it (KS, topics, consent records, codes);
deliveries stay as the record that a notice went out, naming no one; notices that were
personal (a registration, a booking) keep their wording without the person; a KS contact
who asks goes; the file outboxes lose the person's messages; SQLite keeps no deleted bytes."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, delete, select

from shared.db import Database
from shared.models import utcnow
from shared.privacy import (
    Person,
    contact_filter,
    forget_bus_records,
    identities_in_outbox,
    identities_of,
    mask_outbox,
    mask_text_columns,
)
from shared.settings import Settings

from . import consent
from .models import (
    ChannelConsent,
    Confirmation,
    Delivery,
    ExportRequest,
    KsContact,
    Notice,
    Subscriber,
    SubscriberKs,
    SubscriberTopic,
)

FREE_TEXT = (Notice.title, Notice.body, Notice.venue, Delivery.last_error)
EXPORT_DAYS = 7  # services/notify/exports.py (which imports this module)
# Consents carried over by notify_0008 were never sent a confirmation: their clock has not
# started, so retention leaves them to staff (docs/privacy.md).
CARRIED_OVER = "recorded before notify_0008"


def _addresses(person: Person) -> list[str]:
    return sorted(person.emails | person.phones)


async def find(db: Database, person: Person) -> Person:
    async with db.session() as session:
        if (mine := contact_filter(person, Subscriber.email, Subscriber.phone)) is not None:
            rows = (await session.exec(select(Subscriber).where(mine))).all()
            person = person.with_(emails=[r.email for r in rows], phones=[r.phone for r in rows])
        if (theirs := contact_filter(person, KsContact.email, KsContact.phone)) is not None:
            person = person.with_(**identities_of((await session.exec(select(KsContact).where(theirs))).all()))
        return await identities_in_outbox(session, person)


async def export(db: Database, person: Person) -> dict[str, Any]:
    """Everything notify holds about the person (GDPR access), as JSON-able data."""
    async with db.session() as session:
        subscribers: list[Subscriber] = []
        if (mine := contact_filter(person, Subscriber.email, Subscriber.phone)) is not None:
            subscribers = list((await session.exec(select(Subscriber).where(mine))).all())
        ids = [s.id for s in subscribers]
        ks_rows = (await session.exec(select(SubscriberKs).where(col(SubscriberKs.subscriber_id).in_(ids)))).all()
        topic_rows = (
            await session.exec(select(SubscriberTopic).where(col(SubscriberTopic.subscriber_id).in_(ids)))
        ).all()
        consents = await consent.records(session, ids)
        deliveries = (
            await session.exec(
                select(Delivery, Notice.title)
                .join(Notice, col(Notice.id) == col(Delivery.notice_id))
                .where(sa.or_(col(Delivery.subscriber_id).in_(ids), col(Delivery.address).in_(_addresses(person))))
                .order_by(col(Delivery.created_at))
            )
        ).all()
        contacts = []
        if (theirs := contact_filter(person, KsContact.email, KsContact.phone)) is not None:
            contacts = list((await session.exec(select(KsContact).where(theirs))).all())
    return {
        "subscriptions": [
            {
                **s.model_dump(mode="json"),
                "ks": sorted(r.ks for r in ks_rows if r.subscriber_id == s.id),
                "topics": sorted(r.topic for r in topic_rows if r.subscriber_id == s.id),
                "consents": [consent.as_json(c) for c in consents if c.subscriber_id == s.id],
            }
            for s in subscribers
        ],
        "deliveries": [
            {
                "notice_title": title,
                **d.model_dump(mode="json", include={"channel", "address", "status", "created_at", "sent_at"}),
            }
            for d, title in deliveries
        ],
        "ks_contact_for": [c.model_dump(mode="json", include={"ks", "name", "email", "phone"}) for c in contacts],
    }


async def erase(db: Database, person: Person, settings: Settings | None = None) -> dict[str, int]:
    async with db.session() as session:
        ids: list[str] = []
        if (mine := contact_filter(person, Subscriber.email, Subscriber.phone)) is not None:
            ids = list((await session.exec(select(Subscriber.id).where(mine))).all())
        scrubbed = await session.exec(
            sa.update(Delivery)
            .where(sa.or_(col(Delivery.subscriber_id).in_(ids), col(Delivery.address).in_(_addresses(person))))
            .values(address=None, subscriber_id=None)
        )
        if (theirs := contact_filter(person, KsContact.email, KsContact.phone)) is not None:
            await session.exec(delete(KsContact).where(theirs))
        await _delete_subscribers(session, ids)
        exports = await session.exec(
            delete(ExportRequest).where(
                sa.or_(
                    col(ExportRequest.subscriber_id).in_(ids),
                    col(ExportRequest.email).in_(sorted(person.emails)),
                    col(ExportRequest.phone).in_(sorted(person.phones)),
                )
            )
        )
        masked = await mask_text_columns(session, person, FREE_TEXT)
        outbox = await mask_outbox(session, person)
        await session.commit()
    files = 0
    if settings is not None:
        files = await asyncio.to_thread(erase_from_file_outboxes, settings.outbox_dir, person)
    await db.flush_deleted_data()
    return {
        "subscribers": len(ids),
        "deliveries": int(scrubbed.rowcount or 0),
        "export_requests": int(exports.rowcount or 0),
        "texts_masked": masked,
        "outbox_messages": outbox,
        "outbox_files": files,
    }


async def _delete_subscribers(session: Any, ids: list[str]) -> None:
    if ids:
        for table in (SubscriberKs, SubscriberTopic, Confirmation, ChannelConsent):
            await session.exec(delete(table).where(col(table.subscriber_id).in_(ids)))
        await session.exec(delete(Subscriber).where(col(Subscriber.id).in_(ids)))


async def retain(db: Database, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """A sign-up nobody confirmed goes `KRANJ_UNCONFIRMED_SIGNUP_DAYS` after it was made, and
    so does a contact added to a subscription but never confirmed (the phone of an email
    subscriber who never entered the code); notify's sent outbox messages (delivery facts,
    no contact data) go after `KRANJ_RECORD_RETENTION_DAYS`. Delivery records lose their
    addresses by the daily contact retention (services/notify/retention.py)."""
    now = now or utcnow()
    stale = now - timedelta(days=settings.unconfirmed_signup_days)
    async with db.session() as session:
        pending = list(
            (
                await session.exec(
                    select(Subscriber.id).where(
                        Subscriber.status == "pending",
                        col(Subscriber.created_at) < stale,
                        ~sa.exists().where(
                            col(ChannelConsent.subscriber_id) == Subscriber.id,
                            col(ChannelConsent.proof) == CARRIED_OVER,
                        ),
                    )
                )
            ).all()
        )
        if pending:
            await session.exec(
                sa.update(Delivery)
                .where(col(Delivery.subscriber_id).in_(pending))
                .values(address=None, subscriber_id=None)
            )
        await _delete_subscribers(session, pending)
        unconfirmed = (
            await session.exec(
                select(ChannelConsent, Subscriber)
                .join(Subscriber, col(Subscriber.id) == col(ChannelConsent.subscriber_id))
                .where(
                    ChannelConsent.status == "pending",
                    col(ChannelConsent.requested_at) < stale,
                    sa.or_(col(ChannelConsent.proof).is_(None), col(ChannelConsent.proof) != CARRIED_OVER),
                )
            )
        ).all()
        contacts = 0
        for consent_row, subscriber in unconfirmed:
            subscriber.channels = [c for c in subscriber.channels if c != consent_row.channel]
            if consent_row.channel == "sms":
                subscriber.phone = None
            elif consent_row.channel == "email" and subscriber.phone:
                subscriber.email = None
            session.add(subscriber)
            await session.delete(consent_row)
            contacts += 1
        bus = await forget_bus_records(session, now - timedelta(days=settings.record_retention_days))
        # An export's link lives EXPORT_DAYS days (services/notify/exports.py); a day more for
        # a request that completed late.
        lapsed = await session.exec(
            delete(ExportRequest).where(col(ExportRequest.requested_at) < now - timedelta(days=EXPORT_DAYS + 1))
        )
        await session.commit()
    exports = int(lapsed.rowcount or 0)
    if pending or contacts or exports or bus["outbox_messages"]:  # the inbox's records name no one
        await db.flush_deleted_data()
    return {
        "unconfirmed_signups": len(pending),
        "unconfirmed_contacts": contacts,
        **bus,
        "export_requests": exports,
    }


def erase_from_file_outboxes(outbox_dir: Path, person: Person) -> int:
    """Drop the person's messages from `<outbox>/email/*.eml` and `<outbox>/sms.jsonl`: those
    sent to them, and those that name them (a KS contact told of their room request)."""
    removed = 0
    pattern = person.bytes_pattern()
    if pattern is None:
        return 0
    for path in (outbox_dir / "email").glob("*.eml"):
        raw = path.read_bytes()
        message = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        to = str(message.get("To", "")).strip().lower()
        if to in person.emails or pattern.search(raw) or _decoded_names(raw, person):
            path.unlink()
            removed += 1
    sms_file = outbox_dir / "sms.jsonl"
    if sms_file.exists():
        kept, dropped = [], 0
        for line in sms_file.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                record = json.loads(line)
            except ValueError:
                record = {}
            if (
                record.get("to") in person.phones
                or person.named_in(str(record.get("text", "")))
                or pattern.search(line.encode())
            ):
                dropped += 1
            else:
                kept.append(line)
        if dropped:
            tmp = sms_file.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(kept), encoding="utf-8")
            os.replace(tmp, sms_file)
            removed += dropped
    return removed


def _decoded_names(raw: bytes, person: Person) -> bool:
    """An email's text parts decoded (quoted-printable, base64), searched for the person."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    for part in message.walk():
        if part.get_content_maintype() == "text":
            try:
                if person.named_in(part.get_content()):
                    return True
            except (LookupError, ValueError):
                continue
    return False
