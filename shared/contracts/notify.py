"""Messages owned by notify. `notify.notice.requested` v1 is the public command of CONTRACT.md."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from .envelope import MessageType
from .ks import ALL_KS, KsOrAll

Topic = Literal["general", "utilities", "events", "rooms", "surveys", "safety"]
Channel = Literal["email", "sms", "noticeboard"]
Language = Literal["sl", "en"]
TOPICS: tuple[str, ...] = get_args(Topic)
CHANNELS: tuple[Channel, ...] = get_args(Channel)
LANGUAGES: tuple[str, ...] = get_args(Language)


class NoticeRequested(BaseModel):
    """Ask notify to tell the residents of some KS something, on their chosen channels."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    title: str = Field(min_length=1, max_length=120)
    body: str = Field(min_length=1, max_length=2000, description="Plain text.")
    ks: list[KsOrAll] = Field(min_length=1, max_length=26, description='KS slugs; ["*"] = every KS.')
    topic: Topic = "general"
    channels: list[Channel] = Field(default_factory=lambda: list(CHANNELS), min_length=1)
    urgency: Literal["normal", "urgent"] = "normal"
    url: AnyHttpUrl | None = None
    valid_until: datetime | None = None
    language: Language = "sl"

    @field_validator("title", "body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("ks")
    @classmethod
    def _ks_unique(cls, value: list[str]) -> list[str]:
        if ALL_KS in value:
            return [ALL_KS]
        return list(dict.fromkeys(value))

    @field_validator("channels")
    @classmethod
    def _channels_unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("valid_until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must be an RFC 3339 time with an offset, e.g. 2026-12-01T18:00:00+01:00")
        return value


NOTICE_REQUESTED = MessageType(
    "notify.notice.requested",
    1,
    NoticeRequested,
    "A command from any municipal system: fan a notice out to email, SMS and the noticeboard.",
)


DeliveryStatus = Literal["sent", "failed-permanent", "failed-temporary"]


class DeliveryOutcome(BaseModel):
    """What became of one message to one resident on one channel. Never carries the
    contact address (nor anything else that names the resident): `source` and `source_id`
    let the system that asked for the notice correlate the outcome with its request."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    delivery_id: str = Field(description="notify's id of this delivery (also the SMS gateway's Idempotency-Key).")
    notice_id: str = Field(description="notify's id of the notice this delivery belongs to.")
    source: str = Field(description="CloudEvent `source` of the message that caused the notice.")
    source_id: str = Field(
        description="What that publisher knows it by: the CloudEvent `id` of a `notify.notice.requested`, "
        "or the id of the event, booking (`<booking id>:<status>`) or survey it announced."
    )
    channel: Literal["email", "sms"]
    status: DeliveryStatus = Field(
        description="`sent`; `failed-permanent` (refused, never retried); `failed-temporary` (out of attempts)."
    )
    attempts: int = Field(ge=0, description="Hand-overs tried, this one included.")
    error: str | None = Field(default=None, description="Why it failed, as the SMTP server or gateway said.")
    at: datetime = Field(description="When the outcome was recorded (UTC).")


DELIVERY_SENT = MessageType(
    "notify.delivery.sent",
    1,
    DeliveryOutcome,
    "Fact: a message was handed over to the SMTP server or the SMS gateway. No contact data.",
)
DELIVERY_FAILED = MessageType(
    "notify.delivery.failed",
    1,
    DeliveryOutcome,
    "Fact: a message could not be delivered and will not be tried again (a permanent refusal, or a temporary "
    "failure after the last attempt). Staff may still resend it. No contact data.",
)


# A page holds the outcomes of one group commit (services/notify/sending.py), at most this
# many. One outcome is about 350 bytes of JSON plus its `error` (notify cuts it at 1,000
# characters): a full page stays under half a MiB even if every error is that long, well
# under the 1 MiB a consumer of the platform takes (envelope.MAX_BODY_BYTES).
OUTCOMES_PAGE_SIZE = 100


class DeliveryOutcomes(BaseModel):
    """A page of delivery outcomes, in the order notify recorded them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    outcomes: list[DeliveryOutcome] = Field(
        min_length=1,
        max_length=OUTCOMES_PAGE_SIZE,
        description="The same fields as one `notify.delivery.sent|failed` v1 event's `data`, one per delivery; "
        "each outcome notify records is in exactly one page (delivered at least once, like every event: "
        "dedupe on the CloudEvent `id`, or on `delivery_id` and `status`).",
    )


DELIVERY_OUTCOMES = MessageType(
    "notify.delivery.outcomes",
    2,
    DeliveryOutcomes,
    "Fact: the outcomes of up to 100 deliveries recorded together: `sent` (handed over to the SMTP server or "
    "the SMS gateway), `failed-permanent` or `failed-temporary` (final, will not be tried again). Replaces one "
    "`notify.delivery.sent|failed` v1 event per delivery; those are still published while "
    "KRANJ_DELIVERY_FACTS_V1 is true (deprecated: the default turns false after 2027-06-30). No contact data.",
)
