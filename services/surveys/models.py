from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.models import new_id, ts_column, utcnow


class Survey(SQLModel, table=True):
    __tablename__ = "surveys"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    ks: str = Field(max_length=40, index=True)
    title: str = Field(max_length=200)
    status: str = Field(default="draft", max_length=20, index=True)  # draft | open | closed
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
