"""Tables every service has: the transactional outbox and the processed-messages inbox.

Each service's own Alembic history creates them (see `shared.migrations`); they are
never shared between services' databases.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from . import clock


def utcnow() -> datetime:
    """The platform clock (`shared.clock.now`), kept under its old name for the models."""
    return clock.now()


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on SQLite and PostgreSQL alike."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite stores no offset
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a table model, for Core statements (SQLModel does not declare
    `__table__` to type checkers)."""
    return model.__table__  # type: ignore[attr-defined]


def ts_column(*, nullable: bool = False, index: bool = False) -> sa.Column:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


class OutboxMessage(SQLModel, table=True):
    """A message written in the same transaction as the business change it announces."""

    __tablename__ = "outbox"

    id: str = Field(primary_key=True, max_length=64, description="The CloudEvent id.")
    routing_key: str = Field(max_length=200)
    type: str = Field(max_length=200)
    body: str = Field(sa_type=sa.Text, description="The CloudEvent as JSON.")
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column(index=True))
    sent_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True, index=True))
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    last_error: str | None = Field(default=None, sa_type=sa.Text)


class ProcessedMessage(SQLModel, table=True):
    """One row per (consumer, source, id) handled: a redelivered message is a no-op."""

    __tablename__ = "processed_messages"

    consumer: str = Field(primary_key=True, max_length=200)
    source: str = Field(primary_key=True, max_length=500)
    message_id: str = Field(primary_key=True, max_length=200)
    type: str = Field(max_length=200)
    processed_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


def new_id() -> str:
    return str(uuid.uuid4())
