"""Use cases of the booking service (rooms for now; bookings come with their own rules)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlmodel import select

from shared.contracts import KS_SLUGS
from shared.db import Database

from .models import Room

SOURCE = "/kranj/booking"
_KS_ORDER = {slug: i for i, slug in enumerate(KS_SLUGS)}


class NotFound(Exception):
    pass


class RoomOut(BaseModel):
    id: str = Field(description="Stable room id, e.g. `ks-primskovo`.")
    ks: str = Field(description="KS slug the room belongs to.")
    name: str
    address: str
    capacity: int = Field(description="Seats.")


def to_out(room: Room) -> RoomOut:
    return RoomOut.model_validate(room, from_attributes=True)


def _order(room: Room) -> tuple[int, str]:
    return (_KS_ORDER.get(room.ks, len(_KS_ORDER)), room.name)


async def list_rooms(db: Database, ks: str | None = None) -> list[Room]:
    """Rooms in the order of the KS list (not the alphabet of slugs: Čirče comes after Center)."""
    async with db.session() as session:
        query = select(Room)
        if ks:
            query = query.where(Room.ks == ks)
        rows = list((await session.exec(query)).all())
    return sorted(rows, key=_order)


async def get_room(db: Database, room_id: str) -> Room:
    async with db.session() as session:
        room = await session.get(Room, room_id)
    if room is None:
        raise NotFound(room_id)
    return room
