"""Use cases of notify's subscribers: staff-entered and imported residents, volunteers from other
services' forms, the resident's own changes ("manage my notices"), leaving, an inbound SMS STOP and
the KS contacts told of booking requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contact import ContactFields
from shared.contracts import ALL_KS, KS_NAMES
from shared.contracts.ks import KsOrAll
from shared.contracts.notify import Language, Topic
from shared.db import Database
from shared.errors import Bilingual, Refused
from shared.models import utcnow

from . import consent
from .models import Delivery, KsContact, Subscriber, SubscriberKs, SubscriberTopic

CONSENT_TEXT = {
    "staff": "Vpisal(-a) uslužbenec KS na željo krajana; krajan soglaša s prejemanjem obvestil KS.",
    "paper": "Krajan je podpisal papirno prijavnico za obvestila KS.",
    "import": "Uvoženo s papirnih prijavnic KS; krajan je soglašal s prejemanjem obvestil.",
    "web": "Krajan se je prijavil na spletni strani in potrdil prijavo.",
}


ALREADY_SUBSCRIBED = Bilingual("Ta e-naslov ali telefonska številka je že prijavljena.", "Already subscribed.")


class Conflict(Refused):
    """The contact is already subscribed (409; `str(exc)` is the JSON detail, "sl / en")."""


class SubscriberIn(ContactFields):
    """A resident's subscription, as staff, a CSV row or the sign-up form give it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr | None = None
    phone: str | None = Field(default=None, description="E.164, e.g. +38640123456 (Slovenian formats accepted)")
    ks: list[KsOrAll] = Field(min_length=1, description='KS slugs, or ["*"] for the whole city')
    topics: list[Topic] = Field(
        default_factory=lambda: cast("list[Topic]", ["general", "utilities", "events", "safety"]), min_length=1
    )
    channels: list[Literal["email", "sms"]] | None = Field(
        default=None, description="Default: every channel a contact was given for"
    )
    language: Language = "sl"
    digest: bool = Field(default=False, description="A weekly digest email per KS instead of one email per notice")

    @model_validator(mode="after")
    def _contact(self) -> SubscriberIn:
        if ALL_KS in self.ks:
            self.ks = [ALL_KS]
        self.ks = list(dict.fromkeys(self.ks))
        self.topics = list(dict.fromkeys(self.topics))
        if self.channels is None:
            self.channels = cast(
                "list[Literal['email', 'sms']]", [c for c, v in (("email", self.email), ("sms", self.phone)) if v]
            )
        self.channels = list(dict.fromkeys(self.channels))
        if "email" in self.channels and not self.email:
            raise ValueError("channel email needs an email address")
        if "sms" in self.channels and not self.phone:
            raise ValueError("channel sms needs a phone number")
        if not self.channels:
            raise ValueError("choose at least one channel")
        return self


class SubscriberOut(BaseModel):
    id: str
    email: str | None
    phone: str | None
    ks: list[str]
    topics: list[str]
    channels: list[str]
    language: str
    status: str
    consent_source: str
    consent_at: datetime
    digest: bool = False


async def add_subscriber(
    db: Database,
    data: SubscriberIn,
    *,
    consent_source: str = "staff",
    consent_text: str | None = None,
    entered_by: str | None = None,
) -> SubscriberOut:
    """Staff-entered and imported residents are active at once; their consent is recorded per
    channel as staff-entered, naming who entered it (`entered_by`: the staff member's token
    subject, "import by <who>")."""
    subscriber = Subscriber(
        email=data.email,
        phone=data.phone,
        language=data.language,
        channels=list(data.channels or []),
        digest=data.digest,
        status="active",
        consent_source=consent_source,
        consent_text=consent_text or CONSENT_TEXT.get(consent_source, consent_source),
    )
    async with db.session() as session:
        clash = await session.exec(
            select(Subscriber.id).where(
                sa.or_(
                    sa.and_(col(Subscriber.email).is_not(None), col(Subscriber.email) == data.email),
                    sa.and_(col(Subscriber.phone).is_not(None), col(Subscriber.phone) == data.phone),
                )
            )
        )
        if clash.first() is not None:
            raise Conflict(ALREADY_SUBSCRIBED)
        session.add(subscriber)
        await session.flush()
        session.add_all(SubscriberKs(subscriber_id=subscriber.id, ks=ks) for ks in data.ks)
        session.add_all(SubscriberTopic(subscriber_id=subscriber.id, topic=t) for t in data.topics)
        for channel in subscriber.channels:
            await consent.set_state(
                session,
                subscriber.id,
                channel,
                status="active",
                how=consent_source,
                wording=subscriber.consent_text,
                proof=entered_by or "staff: not named",
                at=subscriber.consent_at,
            )
        try:
            await session.commit()
        except IntegrityError:
            raise Conflict(ALREADY_SUBSCRIBED) from None
    return SubscriberOut(
        **subscriber.model_dump(exclude={"channels", "consent_text", "created_at", "updated_at"}),
        channels=subscriber.channels,
        ks=data.ks,
        topics=data.topics,
    )


async def unsubscribe_channel(db: Database, subscriber_id: str, channel: str) -> bool:
    """Stop one channel (RFC 8058 one-click); with no channel left, the subscription ends."""
    async with db.session() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return False
        channels = [c for c in subscriber.channels if c != channel]
        subscriber.channels = channels
        if not channels:
            subscriber.status = "unsubscribed"
        subscriber.updated_at = utcnow()
        session.add(subscriber)
        await consent.withdraw(session, subscriber_id, [channel])
        await session.exec(
            update(Delivery)
            .where(
                col(Delivery.subscriber_id) == subscriber_id,
                col(Delivery.channel) == channel,
                col(Delivery.status).in_(["queued", "held", "failed-temporary"]),
            )
            .values(status="skipped", last_error="unsubscribed", next_attempt_at=None)
        )
        await session.commit()
    return True


async def add_volunteer(
    session: AsyncSession,
    *,
    email: str | None,
    phone: str | None,
    ks: str,
    topic: str,
    channels: list[str],
    language: str,
    consent_source: str,
    consent_text: str,
    consent_at: datetime,
) -> tuple[Subscriber, list[str]]:
    """A resident who ticked "keep me informed" elsewhere (a survey form) to hear about `topic`
    in `ks`. Their contact came from a form anyone may fill in, so nothing is switched on: a new
    subscriber is `pending`, and every channel whose consent is not active yet waits for the
    person's confirmation (the caller sends it); an opt-out stands until they confirm.
    Returns the subscriber and the channels to confirm."""
    email = email.lower() if email else None
    clash = (
        await session.exec(
            select(Subscriber).where(
                sa.or_(
                    sa.and_(col(Subscriber.email).is_not(None), col(Subscriber.email) == email),
                    sa.and_(col(Subscriber.phone).is_not(None), col(Subscriber.phone) == phone),
                )
            )
        )
    ).first()
    wanted = [c for c in dict.fromkeys(channels) if (c == "email" and email) or (c == "sms" and phone)]
    if clash is None:
        subscriber = Subscriber(
            email=email,
            phone=phone,
            language=language,
            channels=wanted,
            status="pending",
            consent_source=consent_source,
            consent_text=consent_text,
            consent_at=consent_at,
        )
        session.add(subscriber)
        await session.flush()
    else:
        subscriber = clash
        # Only the contact the record already holds can be confirmed on it.
        wanted = [c for c in wanted if (subscriber.email if c == "email" else subscriber.phone)]
        subscriber.channels = list(dict.fromkeys([*subscriber.channels, *wanted]))
        subscriber.updated_at = utcnow()
        session.add(subscriber)
    to_confirm = []
    for channel in wanted:
        row = await consent.request(session, subscriber.id, channel, how=consent_source, wording=consent_text)
        if row.status != "active":
            to_confirm.append(channel)
    if await session.get(SubscriberKs, (subscriber.id, ks)) is None:
        session.add(SubscriberKs(subscriber_id=subscriber.id, ks=ks))
    if await session.get(SubscriberTopic, (subscriber.id, topic)) is None:
        session.add(SubscriberTopic(subscriber_id=subscriber.id, topic=topic))
    return subscriber, to_confirm


# --------------------------------------------------------------------------------------
# "Manage my notices" (signed link in every message) and inbound SMS STOP
# --------------------------------------------------------------------------------------
OPEN_STATES = ("queued", "held", "failed-temporary")
REJOIN_TEXT = "Krajan je prek podpisane povezave za urejanje obvestil znova izbral obvestila."


async def get_subscription(db: Database, subscriber_id: str) -> SubscriberOut | None:
    async with db.session() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return None
        return await _out(session, subscriber)


async def _out(session: AsyncSession, subscriber: Subscriber) -> SubscriberOut:
    ks = (await session.exec(select(SubscriberKs.ks).where(SubscriberKs.subscriber_id == subscriber.id))).all()
    topics = (
        await session.exec(select(SubscriberTopic.topic).where(SubscriberTopic.subscriber_id == subscriber.id))
    ).all()
    return SubscriberOut(
        **subscriber.model_dump(exclude={"channels", "consent_text", "created_at", "updated_at"}),
        channels=list(subscriber.channels),
        ks=sorted(ks),
        topics=[t for t in TOPICS_ORDER if t in topics],
    )


TOPICS_ORDER = ("general", "utilities", "events", "rooms", "surveys", "safety")


async def _skip_open(session: AsyncSession, reason: str, *conditions: Any) -> int:
    result = await session.exec(
        update(Delivery)
        .where(col(Delivery.status).in_(OPEN_STATES), *conditions)
        .values(status="skipped", last_error=reason, next_attempt_at=None)
    )
    return int(result.rowcount or 0)


async def change_subscription(
    db: Database,
    subscriber_id: str,
    *,
    ks: list[str],
    topics: list[str],
    channels: list[str],
    language: str,
    digest: bool | None = None,
) -> SubscriberOut | None:
    """What a resident chose on their manage page. Raises ValueError (Slovenian, readable)
    for a choice that cannot be kept; a left subscription is taken up again."""
    ks = [ALL_KS] if ALL_KS in ks else list(dict.fromkeys(k for k in ks if k in KS_NAMES))
    topics = [t for t in TOPICS_ORDER if t in topics]
    problems = []
    if not ks:
        problems.append("Izberite vsaj eno krajevno skupnost (ali cel Kranj).")
    if not topics:
        problems.append("Izberite vsaj eno temo.")
    if language not in ("sl", "en"):
        problems.append("Jezik je lahko slovenščina ali angleščina.")
    async with db.session() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return None
        available = [c for c, v in (("email", subscriber.email), ("sms", subscriber.phone)) if v]
        chosen = [c for c in available if c in channels]
        if not chosen:
            problems.append("Izberite vsaj en kanal (e-pošta ali SMS). Če ne želite ničesar več, se odjavite spodaj.")
        if problems:
            raise ValueError(" ".join(problems))
        dropped = [c for c in subscriber.channels if c not in chosen]
        if dropped:
            await _skip_open(
                session,
                "the resident stopped this channel",
                Delivery.subscriber_id == subscriber_id,
                col(Delivery.channel).in_(dropped),
            )
        if language != subscriber.language:  # what is still waiting goes out in the new language
            await session.exec(
                update(Delivery)
                .where(col(Delivery.subscriber_id) == subscriber_id, col(Delivery.status).in_(OPEN_STATES))
                .values(language=language)
            )
        if dropped:
            await consent.withdraw(session, subscriber_id, dropped)
        # Taken up again through the signed link of a message that reached this resident: a
        # channel they had confirmed before (withdrawn) is theirs again; one nobody confirmed
        # (pending) stays so until its own link or code.
        for channel in chosen:
            row = await consent.get(session, subscriber_id, channel)
            if row is not None and row.status == "withdrawn":
                await consent.set_state(
                    session, subscriber_id, channel, status="active", how="manage-link", wording=REJOIN_TEXT,
                    proof=row.proof,
                )  # fmt: skip
        subscriber.channels, subscriber.language = chosen, language
        if digest is not None:  # the weekly digest instead of one email per notice (services.notify.digest)
            subscriber.digest = digest
        if subscriber.status == "unsubscribed":
            subscriber.status = "active"
            subscriber.consent_source, subscriber.consent_text, subscriber.consent_at = "web", REJOIN_TEXT, utcnow()
        subscriber.updated_at = utcnow()
        session.add(subscriber)
        await session.exec(delete(SubscriberKs).where(col(SubscriberKs.subscriber_id) == subscriber_id))
        await session.exec(delete(SubscriberTopic).where(col(SubscriberTopic.subscriber_id) == subscriber_id))
        session.add_all(SubscriberKs(subscriber_id=subscriber_id, ks=k) for k in ks)
        session.add_all(SubscriberTopic(subscriber_id=subscriber_id, topic=t) for t in topics)
        await session.flush()
        out = await _out(session, subscriber)
        await session.commit()
    return out


async def leave(db: Database, subscriber_id: str) -> bool:
    """The resident leaves entirely: status `unsubscribed`, nothing still waiting is sent."""
    async with db.session() as session:
        subscriber = await session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return False
        subscriber.status = "unsubscribed"
        subscriber.updated_at = utcnow()
        session.add(subscriber)
        await consent.withdraw(session, subscriber_id, consent.CHANNELS)
        await _skip_open(session, "unsubscribed", Delivery.subscriber_id == subscriber_id)
        await session.commit()
    return True


STOP_WORDS = frozenset({"stop", "odjava"})


def is_stop(text: str) -> bool:
    """`" Stop! "`, `"ODJAVA."`, `"odjava"` -> True; anything else (`"stop it"`) -> False."""
    word = "".join(ch for ch in text.casefold() if ch.isalnum() or ch.isspace()).strip()
    return word in STOP_WORDS


async def stop_sms(db: Database, phone: str) -> dict[str, Any]:
    """An inbound STOP/ODJAVA from `phone`: no more SMS to that number (the channel leaves
    the subscription, which ends when no channel is left) and queued SMS to it are skipped."""
    async with db.session() as session:
        subscriber = (await session.exec(select(Subscriber).where(Subscriber.phone == phone))).first()
        status = None
        if subscriber is not None:
            subscriber.channels = [c for c in subscriber.channels if c != "sms"]
            if not subscriber.channels:
                subscriber.status = "unsubscribed"
            subscriber.updated_at = utcnow()
            session.add(subscriber)
            await consent.withdraw(session, subscriber.id, ["sms"])
            status = subscriber.status
        skipped = await _skip_open(
            session, "the resident answered STOP", Delivery.channel == "sms", Delivery.address == phone
        )
        await session.commit()
    return {
        "action": "stopped",
        "subscriber_found": subscriber is not None,
        "subscription_status": status,
        "channels": list(subscriber.channels) if subscriber is not None else [],
        "skipped_deliveries": skipped,
    }


async def set_ks_contacts(db: Database, ks: str, contacts: list[dict[str, Any]]) -> None:
    """Replace who at `ks` is told of new booking requests."""
    async with db.session() as session:
        await session.exec(delete(KsContact).where(col(KsContact.ks) == ks))
        session.add_all(KsContact(ks=ks, name=c["name"], email=c.get("email"), phone=c.get("phone")) for c in contacts)
        await session.commit()


async def ks_contacts(db: Database, ks: str) -> list[dict[str, Any]]:
    async with db.session() as session:
        rows = (await session.exec(select(KsContact).where(KsContact.ks == ks).order_by(col(KsContact.name)))).all()
    return [r.model_dump(include={"name", "email", "phone"}) for r in rows]
