from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import new_id, ts_column, utcnow


class Event(SQLModel, table=True):
    __tablename__ = "events"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    ks: str = Field(max_length=40, index=True)
    title: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    starts_at: datetime = Field(sa_column=ts_column(index=True))
    ends_at: datetime = Field(sa_column=ts_column())
    venue: str = Field(max_length=300)
    capacity: int | None = None
    status: str = Field(default="draft", max_length=20, index=True)  # draft | published | cancelled
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    published_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
