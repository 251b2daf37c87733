from __future__ import annotations

from sqlmodel import Field, SQLModel


class Room(SQLModel, table=True):
    """A community room of a KS (seeded by the first migration; staff keep it current)."""

    __tablename__ = "rooms"

    id: str = Field(primary_key=True, max_length=64)
    ks: str = Field(max_length=40, index=True)
    name: str = Field(max_length=200)
    address: str = Field(max_length=300)
    capacity: int = Field(ge=1)
