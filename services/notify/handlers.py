"""FastStream subscribers of notify: decode -> service -> done (thin).

The shared Consumer (shared.bus) parses the envelope, validates `data`, deduplicates on
(source, id) and commits; these functions only add the business rows to its session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bus import QUEUES, Bus, Handles
from shared.contracts import EVENT_PUBLISHED, NOTICE_REQUESTED, CloudEvent, EventPublished, NoticeRequested
from shared.settings import Settings

from . import service

log = logging.getLogger("kranj.notify")


def register(bus: Bus, settings: Settings, on_new_deliveries: Callable[[], None]) -> None:
    async def on_notice_requested(session: AsyncSession, envelope: CloudEvent, data: NoticeRequested) -> None:
        count = await service.record_notice(session, settings, service.notice_from_request(envelope, data))
        log.info("notice recorded", extra={"ce_id": envelope.id, "deliveries": count})

    async def on_event_published(session: AsyncSession, envelope: CloudEvent, data: EventPublished) -> None:
        count = await service.record_notice(session, settings, service.notice_from_event(envelope, data))
        log.info("event announced", extra={"ce_id": envelope.id, "event_id": data.event_id, "deliveries": count})

    bus.consume(
        QUEUES["notify.on-notice-requested"],
        Handles(NOTICE_REQUESTED, on_notice_requested),
        after_commit=on_new_deliveries,
    )
    bus.consume(
        QUEUES["notify.on-event-published"],
        Handles(EVENT_PUBLISHED, on_event_published),
        after_commit=on_new_deliveries,
    )
