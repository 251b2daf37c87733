"""Message contracts of the platform: the envelope and one module per domain."""

from .bus import MESSAGE_REJECTED, MessageRejected
from .envelope import (
    CONTENT_TYPE,
    CloudEvent,
    MessageType,
    Rejection,
    describe_validation_error,
    parse_data,
    parse_envelope,
)
from .events import EVENT_PUBLISHED, EventPublished
from .ks import ALL_KS, KS_NAMES, KS_SLUGS, ks_name
from .notify import CHANNELS, LANGUAGES, NOTICE_REQUESTED, TOPICS, NoticeRequested

__all__ = [
    "ALL_KS",
    "CHANNELS",
    "CONTENT_TYPE",
    "EVENT_PUBLISHED",
    "KS_NAMES",
    "KS_SLUGS",
    "LANGUAGES",
    "MESSAGE_REJECTED",
    "NOTICE_REQUESTED",
    "TOPICS",
    "CloudEvent",
    "EventPublished",
    "MessageRejected",
    "MessageType",
    "NoticeRequested",
    "Rejection",
    "describe_validation_error",
    "ks_name",
    "parse_data",
    "parse_envelope",
]
