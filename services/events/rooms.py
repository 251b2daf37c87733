"""events' copy of the room catalogue: the KS rooms as booking announces them
(`booking.room.updated`), kept in `ks_rooms` so the event editor offers a KS's rooms from a
list (with a link to each room's free times on booking's public page). Events never reads
booking's database; the copy fills from the bus (booking announces every room when it starts
and once a day, and each room whenever it changes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import KS_SLUGS, CloudEvent
from shared.contracts.booking import RoomUpdated
from shared.db import Database
from shared.models import utcnow
from shared.settings import Settings

from . import domain
from .models import KsRoom

KS_ORDER = {slug: i for i, slug in enumerate(KS_SLUGS)}


async def on_room_updated(session: AsyncSession, envelope: CloudEvent, data: RoomUpdated) -> str:
    """Keep the room as the message tells it, unless a later message was kept already (in the
    consumer's transaction). Returns what it did, for the log."""
    at = envelope.time or utcnow()
    room = await session.get(KsRoom, data.room_id)
    if room is not None and room.announced_at > at:
        return "older"
    if room is None:
        room = KsRoom(id=data.room_id, ks=data.ks, name=data.name, announced_at=at)
    room.ks, room.name, room.address = data.ks, data.name, data.address
    room.capacity, room.active, room.requires_approval = data.capacity, data.active, data.requires_approval
    room.closures = [
        {"starts_at": c.starts_at.isoformat(), "ends_at": c.ends_at.isoformat(), "reason": c.reason}
        for c in data.closures
    ]
    room.announced_at = at
    session.add(room)
    return "kept"


@dataclass(frozen=True)
class Closed:
    starts_at: datetime
    ends_at: datetime
    reason: str


@dataclass(frozen=True)
class RoomChoice:
    """A room the editor offers: its id, KS, name, seats, closures to come and its public page."""

    id: str
    ks: str
    name: str
    capacity: int
    requires_approval: bool
    closed: tuple[Closed, ...]
    page_url: str


def _choice(settings: Settings, room: KsRoom, now: datetime) -> RoomChoice:
    closed = []
    for c in room.closures or []:
        starts, ends = domain.parse_exdates([c["starts_at"], c["ends_at"]])
        if ends > now:
            closed.append(Closed(starts, ends, str(c.get("reason") or "")))
    return RoomChoice(
        id=room.id,
        ks=room.ks,
        name=room.name,
        capacity=room.capacity,
        requires_approval=room.requires_approval,
        closed=tuple(sorted(closed, key=lambda c: c.starts_at)),
        page_url=f"{settings.public_base('booking')}/rooms/{room.id}",
    )


async def rooms_of(db: Database, settings: Settings, kss: list[str]) -> list[RoomChoice]:
    """The rooms in use of these KS (all KS for `["*"]`), in the order of the KS list, then by name."""
    async with db.session() as session:
        query = select(KsRoom).where(col(KsRoom.active).is_(True))
        if "*" not in kss:
            query = query.where(col(KsRoom.ks).in_(kss))
        rows = list((await session.exec(query)).all())
    now = utcnow()
    rows.sort(key=lambda r: (KS_ORDER.get(r.ks, len(KS_ORDER)), r.name))
    return [_choice(settings, r, now) for r in rows]


async def room_named(db: Database, settings: Settings, room_id: str) -> RoomChoice | None:
    """One room of the copy (also one no longer in use), or None."""
    async with db.session() as session:
        room = await session.get(KsRoom, room_id)
    return _choice(settings, room, utcnow()) if room is not None else None
