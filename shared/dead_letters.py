"""Dead letters: the headers with which the bus parks a message in `kranj.dead`.

`Bus.dead_letter` (shared/inbox.py, `dead_letter`) copies a message that can never succeed
to the dead-letter exchange `kranj.dlx` with these headers, then announces it as
`bus.message.rejected`; `kranj dlq` reads them back. A message dead-lettered by the quorum
queue itself (`x-delivery-limit`) carries RabbitMQ's own `x-death` instead.
"""

from __future__ import annotations

import json
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
