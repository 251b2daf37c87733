"""Each channel's consent on its own (issue 17; table `channel_consents`, migration notify_0008).

- A notice (and a personal message in full, services.notify.relay) goes to a channel only
  while that channel's consent is `active`. Before that, the only thing the channel receives
  is its confirmation: the email its link, the phone its SMS code.
- How a consent became active is recorded with when and the wording agreed to (its text and
  `wording_version`, a hash of the text): `web` (double opt-in; `proof` is an HMAC of the
  confirming request's IP address, docs/privacy.md), `staff` / `paper` / `import` (active at
  once; `proof` names the staff member or "import by <who>"), `manage-link` (taken up again
  through the signed link of a message that reached that channel), `survey-…` (a survey
  answer, confirmed like a web sign-up).
- An opt-out (one-click, the manage page, SMS STOP) makes it `withdrawn`; it stands until the
  person confirms the channel again — a survey answer only starts a confirmation.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.models import utcnow
from shared.settings import Settings

from .models import ChannelConsent

CHANNELS = ("email", "sms")


def wording_version(wording: str) -> str:
    """A stable name of the exact wording agreed to: the same text, the same version."""
    return "sha256:" + hashlib.sha256(wording.encode()).hexdigest()[:16]


def ip_proof(settings: Settings, ip: str | None) -> str | None:
    """Where a web consent came from, pseudonymised: an HMAC-SHA256 of the IP address keyed
    with the platform's secret key (docs/privacy.md). It proves a given address if it is
    brought, and names no one by itself."""
    if not ip:
        return None
    digest = hmac.new(settings.signing_key().encode(), f"consent-ip:{ip}".encode(), hashlib.sha256).hexdigest()
    return "ip:" + digest[:32]


async def get(session: AsyncSession, subscriber_id: str, channel: str) -> ChannelConsent | None:
    return await session.get(ChannelConsent, (subscriber_id, channel))


async def set_state(
    session: AsyncSession,
    subscriber_id: str,
    channel: str,
    *,
    status: str,
    how: str,
    wording: str,
    proof: str | None = None,
    at: datetime | None = None,
) -> ChannelConsent:
    """Write one channel's consent (a new record replaces the channel's previous one)."""
    now = at or utcnow()
    row = await get(session, subscriber_id, channel)
    if row is None:
        row = ChannelConsent(subscriber_id=subscriber_id, channel=channel, how=how, wording="", wording_version="")
    row.status, row.how, row.proof = status, how, proof
    row.wording, row.wording_version = wording, wording_version(wording)
    if status == "pending" or row.requested_at is None:
        row.requested_at = now
    row.at = None if status == "pending" else now
    session.add(row)
    return row


async def request(session: AsyncSession, subscriber_id: str, channel: str, *, how: str, wording: str) -> ChannelConsent:
    """A confirmation is on its way: a new channel becomes `pending`; an active one stays as it
    is, and a withdrawn one stays withdrawn (the opt-out stands until the person confirms)."""
    row = await get(session, subscriber_id, channel)
    if row is not None and row.status == "active":
        return row
    if row is not None and row.status == "withdrawn":  # asked again: what they will confirm, if they do
        row.how, row.wording, row.wording_version = how, wording, wording_version(wording)
        row.requested_at = utcnow()
        session.add(row)
        return row
    return await set_state(session, subscriber_id, channel, status="pending", how=how, wording=wording)


async def confirm(
    session: AsyncSession,
    subscriber_id: str,
    channel: str,
    *,
    proof: str | None,
    issued_at: datetime | None = None,
    how: str | None = None,
) -> bool:
    """The person confirmed `channel` (its link or its code): active from now. A confirmation
    issued before the person withdrew does not undo the opt-out (False)."""
    row = await get(session, subscriber_id, channel)
    if row is None:
        return False
    if row.status == "active":
        return True
    if row.status == "withdrawn" and (issued_at is None or row.at is None or row.at > issued_at):
        return False  # an opt-out stands against a confirmation sent before it
    row.status, row.at, row.proof = "active", utcnow(), proof
    if how is not None:
        row.how = how
    session.add(row)
    return True


async def withdraw(session: AsyncSession, subscriber_id: str, channels: Iterable[str]) -> None:
    """An opt-out: the channels' consents are withdrawn (kept as the record that they were)."""
    rows = (
        await session.exec(
            select(ChannelConsent).where(
                ChannelConsent.subscriber_id == subscriber_id, col(ChannelConsent.channel).in_(list(channels))
            )
        )
    ).all()
    for row in rows:
        if row.status != "withdrawn":
            row.status, row.at = "withdrawn", utcnow()
            session.add(row)


async def active_channels(session: AsyncSession, subscriber_ids: list[str]) -> dict[str, set[str]]:
    """Per subscriber, the channels whose consent is active."""
    found: dict[str, set[str]] = {}
    if not subscriber_ids:
        return found
    # By primary key, the status checked here: asked in the query, SQLite walked every
    # active consent of the city for each page of a fan-out (the status index).
    rows = (
        await session.exec(
            select(ChannelConsent.subscriber_id, ChannelConsent.channel, ChannelConsent.status).where(
                col(ChannelConsent.subscriber_id).in_(subscriber_ids)
            )
        )
    ).all()
    for subscriber_id, channel, status in rows:
        if status == "active":
            found.setdefault(subscriber_id, set()).add(channel)
    return found


async def records(session: AsyncSession, subscriber_ids: list[str]) -> list[ChannelConsent]:
    if not subscriber_ids:
        return []
    rows = await session.exec(
        select(ChannelConsent)
        .where(col(ChannelConsent.subscriber_id).in_(subscriber_ids))
        .order_by(col(ChannelConsent.subscriber_id), col(ChannelConsent.channel))
    )
    return list(rows.all())


def as_json(row: ChannelConsent) -> dict[str, object]:
    return row.model_dump(mode="json", exclude={"subscriber_id"})
