"""Messages about the bus itself."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .envelope import MessageType


class MessageRejected(BaseModel):
    """A message could not be processed and was dead-lettered into `kranj.dead`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str | None = None
    source: str | None = None
    type: str | None = None
    reason: str
    queue: str | None = None


MESSAGE_REJECTED = MessageType(
    "bus.message.rejected",
    1,
    MessageRejected,
    "Fact: a message was dead-lettered; tells its publisher which one and why.",
)
