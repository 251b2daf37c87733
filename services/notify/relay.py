"""Personal messages to contacts nobody confirmed: the platform is no relay for anyone's words.

Anyone may ask for a room or register for an event, and give any email address or phone
number; notify then writes to that contact in the KS's name. So (docs/security.md, finding 2):

- A contact is *confirmed* when it belongs to an active subscriber whose consent for that
  very channel is active (services.notify.consent: the email by its link, the phone by its
  SMS code; staff, paper lists and imports are staff's word), or when the
  message comes from a staff action (`staff_vouched` on a booking: staff or the events
  service made it, or staff approved it; a registration staff took by phone). Such a
  contact is told in full.
- Any other contact gets only fixed wording (`templates/messages/*/booking_fixed.txt`,
  `registration_fixed.txt`), rendered from platform data alone: room, KS, time, the event
  as staff published it, the action link. No name, purpose or other text the requester wrote.
- At most `unconfirmed_per_contact_daily` such messages a day per contact and
  `unconfirmed_daily_cap` across the platform; beyond them the delivery is recorded as
  skipped, logged without contact data and counted (`kranj_unconfirmed_messages_total`).
- A booking series (one request, many dates, one `series_id`) is told once per status and
  day, whatever the number of its dates (`first_of_series`).

Counts live in `relay_counts` (migration notify_0007), keyed by day and an HMAC of the
contact: no contact data there. Upserted in the consumer's transaction, so a message that
is retried counts once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from prometheus_client import Counter
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared import clock
from shared.settings import Settings

from .models import ChannelConsent, RelayCount, Subscriber

log = logging.getLogger("kranj.notify.relay")

UNCONFIRMED = Counter(
    "kranj_unconfirmed_messages_total",
    "Personal messages to contacts nobody confirmed, by channel and outcome "
    "(fixed = sent in fixed wording; contact-cap / platform-cap = not sent, over the daily cap).",
    ["channel", "outcome"],
)
SERIES_MERGED = Counter(
    "kranj_series_messages_merged_total",
    "Booking messages of a series not told again (its first message of the status and day was).",
)

CAP_REASON = {
    "contact-cap": "not sent: daily cap of messages to this unconfirmed contact (KRANJ_UNCONFIRMED_PER_CONTACT_DAILY)",
    "platform-cap": "not sent: daily cap of messages to unconfirmed contacts (KRANJ_UNCONFIRMED_DAILY_CAP)",
}
_UPSERT = sa.text(
    "INSERT INTO relay_counts (day, key, count) VALUES (:day, :key, 1) "
    "ON CONFLICT (day, key) DO UPDATE SET count = relay_counts.count + 1 RETURNING count"
)


@dataclass
class Plan:
    """How one personal message goes out on each channel that has a contact."""

    full: list[str] = field(default_factory=list)  # confirmed contact or staff action: in full
    fixed: list[str] = field(default_factory=list)  # nobody confirmed it: fixed wording
    withheld: dict[str, str] = field(default_factory=dict)  # channel -> why it is not sent


def _today() -> str:
    return clock.local_now().date().isoformat()


def _key(settings: Settings, prefix: str, value: str) -> str:
    digest = hmac.new(settings.signing_key().encode(), f"relay:{prefix}:{value}".encode(), hashlib.sha256)
    return f"{prefix}:{digest.hexdigest()[:64]}"


async def _bump(session: AsyncSession, key: str) -> int:
    """Add one to today's count of `key`; the count after it (in the caller's transaction)."""
    result = await session.exec(_UPSERT.bindparams(day=_today(), key=key))  # type: ignore[call-overload]
    return int(result.scalar_one())


async def confirmed_channels(session: AsyncSession, *, email: str | None, phone: str | None) -> set[str]:
    """The channels (`email`, `sms`) whose contact belongs to an active subscriber whose own
    consent for that channel is active (services.notify.consent): the email confirmed by its
    link, the phone by its SMS code, or staff's word for either."""
    found: set[str] = set()
    for channel, column, address in (
        ("email", sa.func.lower(Subscriber.email), email),
        ("sms", Subscriber.phone, phone),
    ):
        if not address:
            continue
        row = (
            await session.exec(
                select(ChannelConsent.channel)
                .join(Subscriber, col(Subscriber.id) == col(ChannelConsent.subscriber_id))
                .where(
                    column == (address.lower() if channel == "email" else address),
                    Subscriber.status == "active",
                    ChannelConsent.channel == channel,
                    ChannelConsent.status == "active",
                )
            )
        ).first()
        if row is not None:
            found.add(channel)
    return found


async def plan(
    session: AsyncSession, settings: Settings, *, email: str | None, phone: str | None, vouched: bool
) -> Plan:
    """Who is told in full, who in fixed wording, and who not at all (over a daily cap)."""
    result = Plan()
    contacts = [(channel, address) for channel, address in (("email", email), ("sms", phone)) if address]
    confirmed = set() if vouched else await confirmed_channels(session, email=email, phone=phone)
    for channel, address in contacts:
        if vouched or channel in confirmed:
            result.full.append(channel)
            continue
        outcome = "fixed"
        if await _bump(session, _key(settings, "c", f"{channel}:{address.lower()}")) > (
            settings.unconfirmed_per_contact_daily
        ):
            outcome = "contact-cap"
        elif await _bump(session, "platform") > settings.unconfirmed_daily_cap:
            outcome = "platform-cap"
        UNCONFIRMED.labels(channel, outcome).inc()
        if outcome == "fixed":
            result.fixed.append(channel)
        else:
            result.withheld[channel] = CAP_REASON[outcome]
            log.warning(
                "personal message to an unconfirmed contact not sent", extra={"channel": channel, "cap": outcome}
            )
    return result


async def first_of_series(session: AsyncSession, settings: Settings, source: str, series_id: str, status: str) -> bool:
    """True for the first message of a series with this status today; False for its other dates."""
    first = await _bump(session, _key(settings, "s", f"{source}|{series_id}|{status}")) == 1
    if not first:
        SERIES_MERGED.inc()
    return first


async def forget_old_counts(session: AsyncSession, keep_days: int = 2) -> None:
    """Counts of past days serve nothing (the caps are per day)."""
    oldest = (clock.local_now().date() - timedelta(days=keep_days)).isoformat()
    await session.exec(sa.delete(RelayCount).where(col(RelayCount.day) < oldest))


# What fixed wording may say: platform data only (a whitelist, so a new field of the message
# is not said until someone decides it may be). The templates see nothing else.
BOOKING_FACTS = (
    "booking_id", "series_id", "room_id", "room_name", "room_address", "ks", "starts_at", "ends_at", "status",
    "cancelled_by", "expires_at", "access_instructions", "status_url", "cancel_url", "event_id",
)  # fmt: skip
REGISTRATION_FACTS = (
    "registration_id", "event_id", "ks", "title", "starts_at", "ends_at", "venue", "url", "ics_url", "cancel_url", "status",
    "waitlist_position", "change", "changes",
)  # fmt: skip


def booking_facts(data: object) -> dict[str, object]:
    """A booking message without the requester's words: no name, purpose, contact. A reason
    is kept only when staff or the platform wrote it (rejected, expired, cancelled by staff)."""
    facts = {name: getattr(data, name) for name in BOOKING_FACTS}
    status, cancelled_by = facts["status"], facts["cancelled_by"]
    staff_words = status in ("rejected", "expired") or (status == "cancelled" and cancelled_by == "staff")
    facts["reason"] = getattr(data, "reason", None) if staff_words else None
    return facts


def registration_facts(data: object) -> dict[str, object]:
    """A registration message without the registrant's name or contact: the event as staff published it."""
    return {name: getattr(data, name) for name in REGISTRATION_FACTS}
