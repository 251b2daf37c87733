"""FastStream subscribers of notify: decode -> service -> done (thin).

The shared Consumer (shared/inbox.py) parses the envelope, validates `data`, deduplicates on
(source, id) and commits; these functions only add the business rows to its session.
Producers never say how to tell residents: every word is notify's (templates/messages).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.bus import QUEUES, Bus, Handles
from shared.contracts import EVENT_PUBLISHED, NOTICE_REQUESTED, CloudEvent, EventPublished, NoticeRequested
from shared.contracts.booking import BOOKING_MESSAGE_TYPES, BookingChanged
from shared.contracts.events import (
    EVENT_CANCELLED,
    EVENT_UPDATED,
    REGISTRATION_MESSAGE_TYPES,
    EventChanged,
    RegistrationNotice,
)
from shared.contracts.privacy import EXPORT_ANSWERED, EXPORT_REQUESTED, ExportAnswered
from shared.contracts.surveys import (
    RESPONDENT_VOLUNTEERED,
    RESULTS_PUBLISHED,
    SURVEY_CLOSED,
    SURVEY_CLOSING_SOON,
    SURVEY_OPENED,
    RespondentVolunteered,
    ResultsPublished,
    SurveyClosed,
    SurveyClosingSoon,
    SurveyOpened,
)
from shared.invitations import invitee_for
from shared.settings import Settings

from . import exports, links, notices, relay, subscribers
from .confirmation import start_confirmation
from .models import KsContact, NoticeDraft
from .render import Renderer, from_label

log = logging.getLogger("kranj.notify")


def _booking_notice(
    envelope: CloudEvent, data: BookingChanged, source_id: str, title: str, body: str, channels: list[str]
) -> NoticeDraft:
    return NoticeDraft(
        source=envelope.source,
        source_id=source_id,
        title=title,
        body=body,
        ks=[data.ks],
        topic="rooms",
        channels=channels,
        url=str(data.status_url) if data.status_url else None,
        language=data.requester.language,
    )


def register(bus: Bus, settings: Settings, renderer: Renderer) -> None:
    async def on_export_answered(session: AsyncSession, envelope: CloudEvent, data: ExportAnswered) -> None:
        outcome = await exports.take_answer(session, settings, data)
        log.info("export part", extra={"ce_id": envelope.id, "service": data.service, "outcome": outcome})

    bus.consume(
        QUEUES["notify.on-export-answered"],
        *(Handles(message_type, on_export_answered) for message_type in EXPORT_ANSWERED.values()),
    )
    bus.publisher(EXPORT_REQUESTED)

    async def on_notice_requested(session: AsyncSession, envelope: CloudEvent, data: NoticeRequested) -> None:
        count = await notices.record_notice(session, settings, notices.notice_from_request(envelope, data))
        log.info("notice recorded", extra={"ce_id": envelope.id, "deliveries": count})

    async def on_event_published(session: AsyncSession, envelope: CloudEvent, data: EventPublished) -> None:
        count = await notices.record_notice(session, settings, notices.notice_from_event(envelope, data))
        log.info("event announced", extra={"ce_id": envelope.id, "event_id": data.event_id, "deliveries": count})

    async def on_booking_changed(session: AsyncSession, envelope: CloudEvent, data: BookingChanged) -> None:
        # A series (one request, many dates) is told once per status and day, not once per date.
        if data.series_id and not await relay.first_of_series(
            session, settings, envelope.source, data.series_id, data.status
        ):
            log.info("series already told", extra={"ce_id": envelope.id, "status": data.status})
            return
        language = data.requester.language
        if data.cancel_url and data.status in ("requested", "confirmed"):  # the SMS keeps a short one
            data = data.model_copy(update={"cancel_url": await links.shorten(session, settings, str(data.cancel_url))})
        plan = await relay.plan(
            session, settings, email=data.requester.email, phone=data.requester.phone, vouched=data.staff_vouched
        )
        told = f"series:{data.series_id}" if data.series_id else data.booking_id
        count = 0
        if plan.full:  # a confirmed contact, or staff's own booking: in full
            title, body = renderer.personal("booking", language, b=data)
            count += await notices.record_personal(
                session,
                _booking_notice(envelope, data, f"{told}:{data.status}", title, body, plan.full),
                email=data.requester.email,
                phone=data.requester.phone,
                language=language,
            )
        if plan.fixed or plan.withheld:  # nobody confirmed the contact: fixed wording, capped
            title, body = renderer.personal(
                "booking_fixed", language, b=relay.booking_facts(data), from_label=from_label([data.ks])
            )
            count += await notices.record_personal(
                session,
                _booking_notice(
                    envelope, data, f"{told}:{data.status}:fixed", title, body, [*plan.fixed, *plan.withheld]
                ),
                email=data.requester.email,
                phone=data.requester.phone,
                language=language,
                withheld=plan.withheld,
            )
        log.info(
            "booking requester told",
            extra={"ce_id": envelope.id, "status": data.status, "deliveries": count, "fixed": len(plan.fixed)},
        )
        if data.status == "requested":
            await tell_ks_staff(session, envelope, data)

    async def tell_ks_staff(session: AsyncSession, envelope: CloudEvent, data: BookingChanged) -> None:
        """Each contact of the room's KS (PUT /api/v1/ks/{ks}/contacts) learns that a request waits."""
        contacts = (await session.exec(select(KsContact).where(KsContact.ks == data.ks))).all()
        for contact in contacts:
            title, body = renderer.personal("booking_staff", "sl", b=data, contact_name=contact.name)
            notice = NoticeDraft(
                source=envelope.source,
                source_id=f"{data.booking_id}:requested:staff",
                title=title,
                body=body,
                ks=[data.ks],
                topic="rooms",
                channels=["email", "sms"],
                url=str(data.review_url) if data.review_url else None,
                language="sl",
            )
            await notices.record_personal(session, notice, email=contact.email, phone=contact.phone, language="sl")
        log.info("KS staff told of a booking request", extra={"ce_id": envelope.id, "contacts": len(contacts)})

    def on_registration(kind: str):  # noqa: ANN202 - one handler per registration message type
        async def handle(session: AsyncSession, envelope: CloudEvent, data: RegistrationNotice) -> None:
            language = data.registrant.language
            if data.cancel_url and kind != "cancelled" and data.change != "cancelled":
                # The action link every personal SMS keeps (services.notify.links): short and signed.
                short = await links.shorten(session, settings, str(data.cancel_url))
                data = data.model_copy(update={"cancel_url": short})
            email, phone = data.registrant.email, data.registrant.phone
            # Staff took the registration (a phone call to the KS office, or in person): their word.
            plan = await relay.plan(session, settings, email=email, phone=phone, vouched=data.channel != "web")
            count = 0
            for template, channels, context in (
                ("registration", plan.full, {"r": data}),
                ("registration_fixed", [*plan.fixed, *plan.withheld], {"r": relay.registration_facts(data)}),
            ):
                if not channels:
                    continue
                title, body = renderer.personal(
                    template, language, kind=kind, from_label=from_label([data.ks]), **context
                )
                notice = NoticeDraft(
                    source=envelope.source,
                    source_id=f"{data.registration_id}:{kind}:{envelope.id}"
                    + ("" if template == "registration" else ":fixed"),
                    title=title,
                    body=body,
                    ks=[data.ks],
                    topic="events",
                    channels=channels,
                    url=str(data.url),
                    language=language,
                )
                count += await notices.record_personal(
                    session, notice, email=email, phone=phone, language=language, withheld=plan.withheld
                )
            log.info("registrant told", extra={"ce_id": envelope.id, "kind": kind, "deliveries": count})

        return handle

    async def on_event_changed(session: AsyncSession, envelope: CloudEvent, data: EventChanged) -> None:
        """The noticeboard shows the event as it is now; registrants are told one by one
        (events.registration.event-changed), followers see the board."""
        await notices.update_event_notice(session, envelope.source, data)

    async def on_survey_opened(session: AsyncSession, envelope: CloudEvent, data: SurveyOpened) -> None:
        title, body = renderer.personal("survey_opened", data.language, s=data, from_label=from_label([data.ks]))
        notice = NoticeDraft(
            kind="survey",
            source=envelope.source,
            source_id=data.survey_id,
            title=title,
            body=body,
            ks=[data.ks],
            topic="surveys",
            channels=["email", "sms", "noticeboard"],
            url=str(data.url),
            language=data.language,
            valid_until=data.closes_at,
        )
        count = await notices.record_notice(session, settings, notice)
        log.info("survey invitation recorded", extra={"ce_id": envelope.id, "deliveries": count})

    async def on_survey_closing_soon(session: AsyncSession, envelope: CloudEvent, data: SurveyClosingSoon) -> None:
        """Remind the KS's followers of topic `surveys`, except the invitees who answered."""
        answered = set(data.answered_invitees)
        title, body = renderer.personal("survey_closing", data.language, s=data, from_label=from_label([data.ks]))
        notice = NoticeDraft(
            kind="survey",  # each reminder carries the resident's personal invitation link
            source=envelope.source,
            source_id=f"{data.survey_id}:closing-soon",
            title=title,
            body=body,
            ks=[data.ks],
            topic="surveys",
            channels=["email", "sms"],
            url=str(data.url),
            language=data.language,
            valid_until=data.closes_at,
            on_noticeboard=False,
        )
        count = await notices.record_notice(
            session, settings, notice, skip=lambda subscriber_id: invitee_for(settings, subscriber_id) in answered
        )
        log.info("survey reminder recorded", extra={"ce_id": envelope.id, "deliveries": count})

    async def on_survey_closed(session: AsyncSession, envelope: CloudEvent, data: SurveyClosed) -> None:
        await notices.expire_notices(session, envelope.source, data.survey_id, data.closed_at)

    async def on_results_published(session: AsyncSession, envelope: CloudEvent, data: ResultsPublished) -> None:
        title, body = renderer.personal("survey_results", data.language, s=data)
        notice = NoticeDraft(
            kind="notice",
            source=envelope.source,
            source_id=f"{data.survey_id}:results",
            title=title,
            body=body,
            ks=[data.ks],
            topic="surveys",
            channels=["email", "noticeboard"],
            url=str(data.url),
            language=data.language,
        )
        await notices.record_notice(session, settings, notice)

    async def on_volunteered(session: AsyncSession, envelope: CloudEvent, data: RespondentVolunteered) -> None:
        subscriber, to_confirm = await subscribers.add_volunteer(
            session,
            email=data.email,
            phone=data.phone,
            ks=data.ks,
            topic=data.topic,
            channels=list(data.channels),
            language=data.language,
            consent_source="survey-" + data.consent_source,
            consent_text=data.consent_text,
            consent_at=data.consent_at,
        )
        # Nothing is switched on by a form anyone may fill in: the person confirms each channel
        # (an opt-out stands until they do; services.notify.consent).
        if to_confirm:
            await start_confirmation(
                SimpleNamespace(settings=settings), session, renderer, subscriber, to_confirm, [data.ks]
            )
        log.info(
            "volunteer asked to confirm" if to_confirm else "volunteer subscribed",
            extra={"ce_id": envelope.id, "survey_id": data.survey_id},
        )

    bus.consume(
        QUEUES["notify.on-notice-requested"],
        Handles(NOTICE_REQUESTED, on_notice_requested),
    )
    bus.consume(
        QUEUES["notify.on-event-published"],
        Handles(EVENT_PUBLISHED, on_event_published),
    )
    bus.consume(
        QUEUES["notify.on-booking-changed"],
        *(Handles(message_type, on_booking_changed) for message_type in BOOKING_MESSAGE_TYPES.values()),
    )
    bus.consume(
        QUEUES["notify.on-registrations"],
        *(Handles(mt, on_registration(kind)) for kind, mt in REGISTRATION_MESSAGE_TYPES.items()),
    )
    bus.consume(
        QUEUES["notify.on-event-changed"],
        Handles(EVENT_UPDATED, on_event_changed),
        Handles(EVENT_CANCELLED, on_event_changed),
    )
    bus.consume(
        QUEUES["notify.on-surveys"],
        Handles(SURVEY_OPENED, on_survey_opened),
        Handles(SURVEY_CLOSED, on_survey_closed),
        Handles(SURVEY_CLOSING_SOON, on_survey_closing_soon),
        Handles(RESULTS_PUBLISHED, on_results_published),
        Handles(RESPONDENT_VOLUNTEERED, on_volunteered),
    )
