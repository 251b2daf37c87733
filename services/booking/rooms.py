"""Use cases of the rooms: listing them in the order of the KS list, changing a room's
details and rules, closing it for a while (which cancels what it held then), and importing
rooms from a KS office's spreadsheet (CSV). Each change tells the others the room as it is now
(`booking.room.updated`, in the same transaction); `announce_rooms` tells every room (once a
day and at start: a new copy of the catalogue, such as the events service's, catches up)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth import Staff, change_refusal, require_change
from shared.contracts import KS_SLUGS
from shared.db import Database
from shared.errors import Bilingual
from shared.models import utcnow
from shared.settings import Settings

from .domain import Interval
from .errors import Conflict, NotFound
from .messages import announce, announce_room
from .models import HOLDING, Booking, Closure, Room
from .schemas import RoomOut, RoomRulesIn

KS_ORDER = {slug: i for i, slug in enumerate(KS_SLUGS)}


def to_out(room: Room) -> RoomOut:
    return RoomOut.model_validate(room, from_attributes=True)


def _order(room: Room) -> tuple[int, str]:
    return (KS_ORDER.get(room.ks, len(KS_ORDER)), room.name)


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


async def update_room(db: Database, room_id: str, changes: RoomRulesIn, staff: Staff | None = None) -> Room:
    async with db.session() as session:
        room = await session.get(Room, room_id)
        if room is None:
            raise NotFound(room_id)
        if staff is not None:
            require_change(staff, room.ks)
        for key, value in changes.model_dump(exclude_unset=True).items():
            if value is not None:
                setattr(room, key, value)
        if room.max_duration_minutes < room.min_duration_minutes:
            raise Conflict(
                Bilingual("Najdaljše trajanje je krajše od najkrajšega.", "max_duration is below min_duration.")
            )
        session.add(room)
        announce_room(session, room, await _open_closures(session, room.id))
        await session.commit()
    return room


async def bookings_in_period(
    db: Database, room_id: str, window: Interval, *, now: datetime | None = None
) -> list[Booking]:
    """What closing the room for `window` would cancel: its bookings and requests that still
    hold their slot, overlap the window and are not over yet (in the order of their start)."""
    async with db.session() as session:
        return await _holding_in(session, room_id, window, now or utcnow())


async def _holding_in(session: AsyncSession, room_id: str, window: Interval, now: datetime) -> list[Booking]:
    rows = await session.exec(
        select(Booking)
        .where(
            Booking.room_id == room_id,
            col(Booking.status).in_(HOLDING),
            Booking.starts_at < window.end,
            Booking.ends_at > window.start,
            Booking.ends_at > now,
        )
        .order_by(col(Booking.starts_at))
    )
    # a request past its expiry holds nothing any more (the expiry sweep ends it)
    return [b for b in rows.all() if not (b.status == "requested" and b.expires_at and b.expires_at <= now)]


@dataclass
class Closed:
    closure: Closure
    cancelled: list[Booking]  # what the closure cancelled (each requester is told)


def closure_reason(reason: str) -> str:
    """The reason a booking cancelled by a closure carries (its requester reads it)."""
    return f"Prostor je v tem času zaprt: {reason}"[:1000]


async def add_closure(
    db: Database,
    settings: Settings,
    room_id: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    staff: Staff | None = None,
    *,
    now: datetime | None = None,
) -> Closed:
    """Close a room for a while: residents cannot book it then, and the bookings and requests
    it held in that time (not yet over) are cancelled by staff with the closure's reason,
    each announced (`booking.booking.cancelled`: notify tells the requester). One transaction,
    serialised per room like every booking's check and insert (bookings.py)."""
    now = now or utcnow()
    async with db.session() as session:
        query = select(Room).where(Room.id == room_id)
        if not db.is_sqlite:
            query = query.with_for_update()  # no booking slips in while the room closes
        room = (await session.exec(query)).first()
        if room is None:
            raise NotFound(room_id)
        if staff is not None:
            require_change(staff, room.ks)
        closure = Closure(room_id=room_id, starts_at=starts_at, ends_at=ends_at, reason=reason)
        session.add(closure)
        cancelled = await _holding_in(session, room_id, Interval(starts_at, ends_at), now)
        for booking in cancelled:
            booking.status = "cancelled"
            booking.reason = closure_reason(reason)
            booking.decided_by = staff.subject if staff else "closure"
            booking.decided_at = now
            session.add(booking)
            announce(session, settings, room, booking, cancelled_by="staff")
        await session.flush()
        announce_room(session, room, await _open_closures(session, room.id))
        await session.commit()
    return Closed(closure, cancelled)


async def upcoming_closures(db: Database, room_id: str, now: datetime) -> list[Closure]:
    """The room's closures that are not over yet, soonest first."""
    async with db.session() as session:
        rows = await session.exec(
            select(Closure).where(Closure.room_id == room_id, Closure.ends_at > now).order_by(col(Closure.starts_at))
        )
        return list(rows.all())


async def _open_closures(session: AsyncSession, room_id: str) -> list[Closure]:
    """The room's closures that have not ended yet."""
    query = select(Closure).where(Closure.room_id == room_id, Closure.ends_at > utcnow())
    return list((await session.exec(query)).all())


async def announce_rooms(db: Database) -> int:
    """`booking.room.updated` for every room (the catalogue once more); how many."""
    async with db.session() as session:
        rooms = list((await session.exec(select(Room))).all())
        for room in rooms:
            announce_room(session, room, await _open_closures(session, room.id))
        await session.commit()
    return len(rooms)


async def closures_in(session: AsyncSession, room_id: str, window: Interval) -> list[tuple[Interval, str]]:
    """The room's closures overlapping `window`, each with its reason."""
    rows = (
        await session.exec(
            select(Closure).where(
                Closure.room_id == room_id, Closure.starts_at < window.end, Closure.ends_at > window.start
            )
        )
    ).all()
    return [(Interval(c.starts_at, c.ends_at), c.reason) for c in rows]


# --------------------------------------------------------------------------------------
# Importing rooms (a spreadsheet from the KS offices)
# --------------------------------------------------------------------------------------
ROOM_CSV_COLUMNS = ("id", "ks", "name", "address", "capacity", "accessibility", "equipment", "access_instructions")


@dataclass
class RoomImport:
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)


def parse_rooms_csv(content: bytes) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """UTF-8 (with or without BOM, else Windows-1250), comma or semicolon; header columns
    `id`, `ks`, `name`, `address`, `capacity` and optionally `accessibility`, `equipment`,
    `access_instructions`. Returns good rows with their line numbers and readable errors."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("cp1250")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ROOM_CSV_COLUMNS[:5] if c not in header]
    if missing:
        return [], [f"vrstica 1: manjkajo stolpci {', '.join(missing)} / missing columns"]
    rows, errors = [], []
    for record in reader:
        line = reader.line_num
        values = {(k or "").strip().lower(): (v or "").strip() for k, v in record.items()}
        problems = []
        if not re.fullmatch(r"[a-z0-9-]{2,64}", values.get("id", "")):
            problems.append("id: male črke, številke in vezaji (2–64)")
        if values.get("ks") not in KS_SLUGS:
            problems.append(f"ks: neznana KS {values.get('ks')!r}")
        if not values.get("name") or not values.get("address"):
            problems.append("name in address sta obvezna")
        try:
            capacity = int(values.get("capacity", ""))
            if not 1 <= capacity <= 1000:
                raise ValueError
        except ValueError:
            problems.append(f"capacity: celo število 1–1000, ne {values.get('capacity')!r}")
            capacity = 0
        if problems:
            errors.append(f"vrstica {line}: " + "; ".join(problems))
            continue
        rows.append(
            (
                line,
                {
                    "id": values["id"],
                    "ks": values["ks"],
                    "name": values["name"][:200],
                    "address": values["address"][:300],
                    "capacity": capacity,
                    **{k: values[k][:5000] for k in ROOM_CSV_COLUMNS[5:] if values.get(k)},
                },
            )
        )
    return rows, errors


async def import_rooms(db: Database, staff: Staff, content: bytes) -> RoomImport:
    """Create or update rooms from a CSV; a bad row is reported by line number and the good
    rows still load. New rooms get the default rules. A row may touch a room only where the
    staff member acts for BOTH the KS the room belongs to now and the KS the row names: no
    moving another KS's room into one's own (and so reading its bookings)."""
    rows, errors = parse_rooms_csv(content)
    result = RoomImport(errors=errors)
    async with db.session() as session:
        for line, values in rows:
            room = await session.get(Room, values["id"])
            refusal = change_refusal(staff, room.ks if room is not None else None, values["ks"])
            if refusal is not None:
                result.errors.append(f"vrstica {line}: {refusal}")
                continue
            if room is None:
                room = Room(**values, opening_hours=_DEFAULT_OPENING, office_hours={}, requires_approval=True)
                result.created += 1
            else:
                for key, value in values.items():
                    setattr(room, key, value)
                result.updated += 1
            session.add(room)
            announce_room(session, room, await _open_closures(session, room.id))
        await session.commit()
    result.errors.sort(key=_line_number)
    return result


def _line_number(error: str) -> int:
    found = re.match(r"vrstica (\d+):", error)
    return int(found.group(1)) if found else 0


_DEFAULT_OPENING = {day: [["08:00", "22:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")} | {
    "sun": [["09:00", "21:00"]]
}
