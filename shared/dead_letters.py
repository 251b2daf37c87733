"""Dead letters: the headers with which the bus parks a message in `kranj.dead`.

`Bus.dead_letter` (shared/inbox.py, `dead_letter`) copies a message that can never succeed
to the dead-letter exchange `kranj.dlx` with these headers, then announces it as
`bus.message.rejected`; `kranj dlq` reads them back through `DeadLetter`, and replays with `replay_headers`. A message dead-lettered by the quorum
queue itself (`x-delivery-limit`) carries RabbitMQ's own `x-death` instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika

from . import clock

HEADER_REASON = "x-kranj-reason"
HEADER_QUEUE = "x-kranj-queue"
HEADER_ROUTING_KEY = "x-kranj-routing-key"
HEADER_DEAD_AT = "x-kranj-dead-lettered-at"
HEADER_SENDER = "x-kranj-sender"  # the AMQP user_id the broker validated; "" = anonymous


def dead_letter_headers(raw: aio_pika.IncomingMessage, reason: str, *, queue: str) -> dict[str, Any]:
    """The message's own headers and ours (ours win: never the sender's header of that name)."""
    headers = dict(raw.headers or {})
    headers.update(
        {
            HEADER_REASON: reason,
            HEADER_QUEUE: queue,
            HEADER_ROUTING_KEY: raw.routing_key or "",
            HEADER_DEAD_AT: clock.now().isoformat(),
            HEADER_SENDER: raw.user_id or "",
        }
    )
    return headers


def best_effort_meta(body: bytes) -> dict[str, str]:
    """id, source and type from a body that may be anything at all."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # "[[[[…" thousands deep
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: str(raw[k])[:500] for k in ("id", "source", "type") if isinstance(raw.get(k), (str, int))}


# --------------------------------------------------------------------------------------
# Reading them back (kranj dlq)
# --------------------------------------------------------------------------------------
_DEATH_HEADERS_PREFIXES = ("x-kranj-", "x-first-death-", "x-last-death-")
_DEATH_HEADERS = ("x-death", "x-delivery-count")


def header_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return str(value)


@dataclass
class DeadLetter:
    """What ops need to know about one message in `kranj.dead`."""

    position: int
    message_id: str | None
    dead_lettered_at: str | None
    queue: str | None
    routing_key: str | None
    reason: str
    ce_id: str | None = None
    ce_type: str | None = None
    ce_source: str | None = None
    body_bytes: int = 0

    @classmethod
    def from_message(cls, position: int, message: Any) -> DeadLetter:
        headers = dict(message.headers or {})
        deaths = headers.get("x-death") or []
        death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
        keys = death.get("routing-keys") or []
        queue = (
            header_text(headers.get(HEADER_QUEUE)) or header_text(headers.get("x-first-death-queue")) or header_text(death.get("queue"))
        )
        routing_key = header_text(headers.get(HEADER_ROUTING_KEY)) or (header_text(keys[0]) if keys else None)
        routing_key = routing_key or message.routing_key or None
        reason = header_text(headers.get(HEADER_REASON))
        if not reason:
            broker_reason = header_text(headers.get("x-first-death-reason")) or header_text(death.get("reason"))
            if broker_reason:
                count = death.get("count")
                times = f" ({count} times)" if isinstance(count, int) and count > 1 else ""
                reason = f"dead-lettered by the broker: {broker_reason}{times}"
            else:
                reason = "unknown (no x-kranj-reason or x-death header)"
        dead_at = header_text(headers.get(HEADER_DEAD_AT)) or header_text(death.get("time")) or header_text(message.timestamp)
        item = cls(
            position=position,
            message_id=message.message_id,
            dead_lettered_at=dead_at,
            queue=queue,
            routing_key=routing_key,
            reason=reason,
            body_bytes=len(message.body or b""),
        )
        meta = best_effort_meta(message.body or b"")
        item.ce_id, item.ce_type, item.ce_source = meta.get("id"), meta.get("type"), meta.get("source")
        return item

    def matches(self, wanted: Iterable[str]) -> bool:
        wanted = set(wanted)
        return bool(wanted & {self.ce_id, self.message_id})

    def public(self) -> dict[str, Any]:
        return asdict(self)

    def selected(self, types: Iterable[str] = (), reason: str | None = None) -> bool:
        """`types`: CloudEvent types (`si.kranj.notify.notice.requested.v1`) or routing keys
        (`notify.notice.requested`), any of them; `reason`: a piece of the reason, any case."""
        types = [t for t in types if t]
        if types and not any(t in (self.ce_type, self.routing_key) for t in types):
            return False
        return not reason or reason.casefold() in self.reason.casefold()


def replay_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """The original headers without the dead-lettering ones (x-kranj-*, x-death, ...)."""
    return {
        k: v
        for k, v in (headers or {}).items()
        if k not in _DEATH_HEADERS and not k.startswith(_DEATH_HEADERS_PREFIXES)
    }


def original_sender(message: Any) -> str:
    """Who published a dead letter: our x-kranj-sender header, or (dead-lettered by the
    broker, properties kept) its user_id; "" when anonymous."""
    headers = message.headers or {}
    if HEADER_SENDER in headers:
        value = headers[HEADER_SENDER]
        return value.decode() if isinstance(value, bytes) else str(value or "")
    return message.user_id or ""
