"""A resident's own copy of their data (GDPR Art. 15), asked for on their manage page.

1. `request_export`: the resident presses the button on their manage page (reached by the
   signed link of a message that went to them). notify records an `ExportRequest` and, in
   the same transaction, asks every other service with `notify.export.requested` — only for
   the contacts this subscription has *confirmed* (a phone someone typed in but never
   confirmed finds nothing of its owner's).
2. `take_answer`: each service answers `<service>.export.answered` with its part; notify
   keeps it. Once all have answered, the resident gets a personal message at the confirmed
   address with a signed link to the document (`/manage/izvoz/<token>`), valid
   `EXPORT_DAYS` days.
3. The download (services/notify/manage.py) puts notify's own part (found the same way,
   read at that moment) beside the others' as one JSON document.
A service that is down answers when it is back (its queue keeps the request); the request
is deleted after `EXPORT_DAYS` (services/notify/privacy.py `retain`) and on erasure.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bus import add_to_outbox
from shared.contracts.privacy import EXPORT_ANSWERED, EXPORT_REQUESTED, ExportAnswered, ExportRequested
from shared.db import Database
from shared.errors import Bilingual, Refused
from shared.links import SignedIds
from shared.models import utcnow
from shared.privacy import Person
from shared.settings import Settings

from . import consent, notices, privacy
from .models import ExportRequest, NoticeDraft, Subscriber
from .privacy import EXPORT_DAYS

log = logging.getLogger("kranj.notify.exports")

SERVICES = tuple(EXPORT_ANSWERED)  # events, booking, surveys: the parts notify waits for
SALT = "kranj.notify.export-link.v1"
SOURCE = "/kranj/notify"


class ExportRefused(Refused):
    """Why the manage page cannot start an export now (409; the page shows the Slovenian text)."""


def export_token(settings: Settings, request_id: str) -> str:
    return SignedIds(settings, SALT).sign(request_id)


def export_url(settings: Settings, request_id: str) -> str:
    return f"{settings.public_base('notify')}/manage/izvoz/{export_token(settings, request_id)}"


def read_export_token(settings: Settings, token: str) -> str | None:
    return SignedIds(settings, SALT).read(token)


async def request_export(db: Database, subscriber_id: str, *, now: Any = None) -> ExportRequest:
    now = now or utcnow()
    async with db.session() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        if subscriber is None:
            raise ExportRefused(Bilingual("Te prijave ni več.", "This subscription no longer exists."))
        active = (await consent.active_channels(session, [subscriber_id])).get(subscriber_id, set())
        email = subscriber.email if "email" in active else None
        phone = subscriber.phone if "sms" in active else None
        if not email and not phone:
            raise ExportRefused(
                Bilingual(
                    "Izvoz pošljemo le na potrjen e-naslov ali telefon; ta prijava še nima nobenega potrjenega.",
                    "We send the export only to a confirmed email address or phone; this subscription has none yet.",
                )
            )
        recent = (
            await session.exec(
                select(ExportRequest.id).where(
                    ExportRequest.subscriber_id == subscriber_id,
                    col(ExportRequest.requested_at) > now - timedelta(days=1),
                )
            )
        ).first()
        if recent is not None:
            raise ExportRefused(
                Bilingual(
                    "Zahtevo ste danes že oddali; povezavo vam pošljemo, ko bodo podatki zbrani.",
                    "You asked already today; we will send you the link once the data is collected.",
                )
            )
        request = ExportRequest(
            subscriber_id=subscriber_id, email=email, phone=phone, language=subscriber.language, requested_at=now
        )
        session.add(request)
        asked = ExportRequested(request_id=request.id, emails=[email] if email else [], phones=[phone] if phone else [])
        add_to_outbox(session, EXPORT_REQUESTED, asked, source=SOURCE, subject=request.id)
        await session.commit()
        await session.refresh(request)
    log.info("export requested", extra={"request_id": request.id})
    return request


async def take_answer(session: AsyncSession, settings: Settings, data: ExportAnswered) -> str:
    """One service's part (in the consumer's transaction); returns what it did, for the log."""
    # The parts arrive at once from three services, each in its own transaction: the row is
    # locked (PostgreSQL; SQLite's transactions are serialised anyway), or one part would
    # overwrite another and the document would never be complete.
    request = (
        await session.exec(select(ExportRequest).where(ExportRequest.id == data.request_id).with_for_update())
    ).first()
    if request is None:
        return "no such request (lapsed or erased)"
    if data.service not in SERVICES or request.completed_at is not None:
        return "ignored"
    request.parts = {**request.parts, data.service: data.document}  # a new dict: the JSON column changes
    session.add(request)
    if set(request.parts) < set(SERVICES):
        return f"waiting for {sorted(set(SERVICES) - set(request.parts))}"
    request.completed_at = utcnow()
    english = request.language == "en"
    notice = NoticeDraft(
        source=SOURCE,
        source_id=f"export:{request.id}",
        title="Your data at Kranj ZA vse" if english else "Vaši podatki v Kranj ZA vse",
        body=(
            "You asked for everything Kranj ZA vse holds about you: subscriptions, registrations, room "
            f"bookings and survey answers that name you. Download it within {EXPORT_DAYS} days at the link below. "
            "If you did not ask for it, you can ignore this message."
            if english
            else "Zahtevali ste vse, kar Kranj ZA vse hrani o vas: prijave na obvestila, prijave na dogodke, "
            f"rezervacije prostorov in odgovore v anketah, ki vas omenjajo. Prenesete jih lahko v {EXPORT_DAYS} "
            "dneh na spodnji povezavi. Če tega niste zahtevali vi, sporočilo prezrite."
        ),
        topic="general",
        channels=[c for c, v in (("email", request.email), ("sms", request.phone)) if v][:1],
        url=export_url(settings, request.id),
        language=request.language,
    )
    await notices.record_personal(
        session,
        notice,
        email=request.email if "email" in notice.channels else None,
        phone=request.phone if "sms" in notice.channels else None,
        language=request.language,
    )
    return "complete: the link is on its way"


async def document(db: Database, request: ExportRequest) -> dict[str, Any]:
    """The whole document: notify's part read now, the others' as they answered."""
    person = await privacy.find(db, Person.of(email=request.email, phone=request.phone))
    return {
        "requested_at": request.requested_at.isoformat(),
        "completed_at": request.completed_at.isoformat() if request.completed_at else None,
        "notify": await privacy.export(db, person),
        **{name: request.parts.get(name, {}) for name in SERVICES},
    }


async def completed(db: Database, request_id: str) -> ExportRequest | None:
    """The request behind a download link, if it is complete and has not lapsed."""
    async with db.session() as session:
        request = await session.get(ExportRequest, request_id)
    if request is None or request.completed_at is None:
        return None
    if request.completed_at < utcnow() - timedelta(days=EXPORT_DAYS):
        return None
    return request
