from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import new_id, ts_column, utcnow


class Subscriber(SQLModel, table=True):
    """A resident who wants notices; contact data lives only here and in deliveries."""

    __tablename__ = "subscribers"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    email: str | None = Field(default=None, max_length=320, unique=True)
    phone: str | None = Field(default=None, max_length=20, unique=True, description="E.164")
    language: str = Field(default="sl", max_length=2)
    channels: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # True: no single email per notice, one weekly digest per KS instead (services.notify.digest)
    digest: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    status: str = Field(default="active", max_length=20, index=True)  # pending | active | unsubscribed
    consent_source: str = Field(max_length=20)  # web | staff | paper | import
    consent_text: str = Field(sa_type=sa.Text)
    consent_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class SubscriberKs(SQLModel, table=True):
    __tablename__ = "subscriber_ks"

    subscriber_id: str = Field(foreign_key="subscribers.id", primary_key=True, ondelete="CASCADE")
    ks: str = Field(primary_key=True, max_length=40, index=True)


class SubscriberTopic(SQLModel, table=True):
    __tablename__ = "subscriber_topics"

    subscriber_id: str = Field(foreign_key="subscribers.id", primary_key=True, ondelete="CASCADE")
    topic: str = Field(primary_key=True, max_length=20, index=True)


class Notice(SQLModel, table=True):
    """Something residents are told: a requested notice or an announced event."""

    __tablename__ = "notices"
    # At most one weekly digest per key (migration notify_0002; see services.notify.digest).
    __table_args__ = (
        sa.Index(
            "uq_notices_digest",
            "source",
            "source_id",
            unique=True,
            sqlite_where=sa.text("kind = 'digest'"),
            postgresql_where=sa.text("kind = 'digest'"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    kind: str = Field(default="notice", max_length=20)  # notice | event
    source: str = Field(max_length=500)
    source_id: str = Field(max_length=200)
    title: str = Field(max_length=200)
    body: str = Field(sa_type=sa.Text)
    ks: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    topic: str = Field(default="general", max_length=20)
    channels: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    urgency: str = Field(default="normal", max_length=10)
    url: str | None = Field(default=None, max_length=2000)
    language: str = Field(default="sl", max_length=2)
    starts_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    ends_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    venue: str | None = Field(default=None, max_length=300)
    # An event's dates as [[start, end], ...] in UTC ISO 8601 (a series: every date; see
    # services.notify.agenda); empty for a notice and for events announced before notify_0012.
    dates: list[list[str]] = Field(default_factory=list, sa_type=sa.JSON)
    valid_until: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    on_noticeboard: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column(index=True))


@dataclass(slots=True, kw_only=True)
class NoticeDraft:
    """A notice about to be recorded (notices.record_notice / record_personal): the columns
    of `notices` in a plain object, written by a deferred Core insert (shared.db.defer_insert).
    Building and flushing a `Notice` table model cost more than the rest of a noticeboard
    notice's handling (make bench, ingest). Same fields and defaults as `Notice` (unit test)."""

    source: str
    source_id: str
    title: str
    body: str
    kind: str = "notice"
    ks: list[str] = field(default_factory=list)
    topic: str = "general"
    channels: list[str] = field(default_factory=list)
    urgency: str = "normal"
    url: str | None = None
    language: str = "sl"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    venue: str | None = None
    dates: list[list[str]] = field(default_factory=list)
    valid_until: datetime | None = None
    on_noticeboard: bool = True
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class NoticeKs(SQLModel, table=True):
    __tablename__ = "notice_ks"

    notice_id: str = Field(foreign_key="notices.id", primary_key=True, ondelete="CASCADE")
    ks: str = Field(primary_key=True, max_length=40, index=True)


class Delivery(SQLModel, table=True):
    """One notice to one resident on one channel; the unique key makes a second send impossible."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("notice_id", "subscriber_id", "channel", name="uq_delivery"),
        # The delivery worker's claims: each kind of due delivery of a channel in due order
        # (services.notify.delivery `_claim`; migration notify_0013).
        sa.Index("ix_deliveries_claim", "status", "channel", "next_attempt_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    notice_id: str = Field(foreign_key="notices.id", index=True)
    subscriber_id: str | None = Field(default=None, max_length=64, index=True)
    channel: str = Field(max_length=20)
    address: str | None = Field(default=None, max_length=320)
    language: str = Field(default="sl", max_length=2)
    # queued | held | sending | sent | failed-temporary | failed-permanent | skipped
    status: str = Field(default="queued", max_length=20)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default_factory=utcnow, sa_column=ts_column(nullable=True))
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    reference: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column(index=True))
    sent_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    # The delivery worker (delivery_workers.id) whose claim it is while `sending` (migration
    # notify_0009); not indexed (notify_0014): a worker's claims are found among the `sending` rows.
    claimed_by: str | None = Field(default=None, max_length=64)


class DeliveryWorkerRow(SQLModel, table=True):
    """A notify process's delivery worker, alive while it heartbeats (migration notify_0009;
    services.notify.delivery): the deliveries it claimed are claimed again by others once its
    heartbeat is older than KRANJ_DELIVERY_STALE_SECONDS; a graceful stop deletes the row."""

    __tablename__ = "delivery_workers"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    heartbeat_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Confirmation(SQLModel, table=True):
    """Double opt-in of a web sign-up: an emailed link, or a 6-digit SMS code (hashed)."""

    __tablename__ = "confirmations"

    subscriber_id: str = Field(foreign_key="subscribers.id", primary_key=True, ondelete="CASCADE")
    code_hash: str | None = Field(default=None, max_length=128)
    attempts: int = 0
    expires_at: datetime = Field(sa_column=ts_column())


class KsContact(SQLModel, table=True):
    """Who at a KS is told of new booking requests (staff's own contact data; migration notify_0004)."""

    __tablename__ = "ks_contacts"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    ks: str = Field(max_length=40, index=True)
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=20, description="E.164")


class JobRun(SQLModel, table=True):
    """One run of a periodic job, claimed by the replica that does it (migration notify_0005):
    the primary key (job, run_key) lets only the first insert through."""

    __tablename__ = "job_runs"

    job: str = Field(primary_key=True, max_length=60)
    run_key: str = Field(primary_key=True, max_length=60)
    claimed_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    result: str | None = Field(default=None, sa_type=sa.Text)


class ShortLink(SQLModel, table=True):
    """A short link in a personal SMS (`/k/{code}`, services.notify.links) to a long signed
    link of another service (cancel a registration or a booking), migration notify_0006. The
    code is random and signed; it holds no contact data."""

    __tablename__ = "short_links"

    code: str = Field(primary_key=True, max_length=32)
    target: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class RelayCount(SQLModel, table=True):
    """How many personal messages went to contacts nobody confirmed, per day (Europe/Ljubljana)
    and key: `platform`, one contact (`c:` + an HMAC of channel and address: no contact data
    here), or one series and status (`s:` + HMAC: the first of a series' messages is told,
    the rest of the day's are not). Migration notify_0007; services.notify.relay."""

    __tablename__ = "relay_counts"

    day: str = Field(primary_key=True, max_length=10)
    key: str = Field(primary_key=True, max_length=80)
    count: int = 0


class ChannelConsent(SQLModel, table=True):
    """One channel's consent of one subscriber (migration notify_0008; services.notify.consent).
    A notice goes to a channel only while its consent is `active`: a web sign-up confirms
    each channel on its own (email by its link, phone by its SMS code), staff-entered and
    imported ones are active at once and name who entered them, an opt-out is `withdrawn`
    and stands until the person confirms again."""

    __tablename__ = "channel_consents"

    subscriber_id: str = Field(foreign_key="subscribers.id", primary_key=True, ondelete="CASCADE")
    channel: str = Field(primary_key=True, max_length=10)  # email | sms
    status: str = Field(default="pending", max_length=20, index=True)  # pending | active | withdrawn
    # web | staff | paper | import | survey-web | survey-paper | manage-link | sms-reply
    how: str = Field(max_length=40)
    # web: "ip:" + HMAC-SHA256 of the confirming request's IP address (docs/privacy.md);
    # staff: "staff:<token subject>"; CLI: "staff:<user>" / "import by <user>"
    proof: str | None = Field(default=None, max_length=200)
    wording_version: str = Field(max_length=40)  # services.notify.consent.wording_version(wording)
    wording: str = Field(sa_type=sa.Text)
    requested_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))  # when it became active / withdrawn


class ScheduledNotice(SQLModel, table=True):
    """A notice a staff member wrote on the staff pages to be sent later (migration notify_0010;
    services.notify.staff): at `send_at` the periodic job writes its `notify.notice.requested`
    (`data`, already checked against the staff member's rights) to notify's own outbox, in the
    same transaction that sets `sent_at`; the CloudEvent id is this row's id."""

    __tablename__ = "scheduled_notices"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    source: str = Field(max_length=500)  # /kranj/notify/staff/<subject>
    ks: str = Field(max_length=40, index=True)  # the one KS it is for, or "*" (city-wide)
    title: str = Field(max_length=200)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)  # NoticeRequested as JSON
    send_at: datetime = Field(sa_column=ts_column(index=True))
    created_by: str = Field(max_length=320)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    sent_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    cancelled_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


class ExportRequest(SQLModel, table=True):
    """A resident's request, from their manage page, for everything the platform holds about
    them (GDPR Art. 15; migration notify_0011; services.notify.exports). notify asks the other
    services (`notify.export.requested`), keeps each answer in `parts`, and once all have
    answered sends the resident a link to the document at their confirmed address. Deleted
    after `EXPORT_DAYS` (the link's life) and on erasure."""

    __tablename__ = "export_requests"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    subscriber_id: str = Field(max_length=64, index=True)
    email: str | None = Field(default=None, max_length=320)  # the confirmed address the link goes to
    phone: str | None = Field(default=None, max_length=20)
    language: str = Field(default="sl", max_length=2)
    parts: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)  # service -> its document
    requested_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    completed_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
