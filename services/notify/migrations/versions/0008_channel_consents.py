"""notify: channel_consents — each channel's consent on its own (services.notify.consent;
issue 17). Existing subscribers get one row per chosen channel: active where their consent
proved that channel (staff, paper, import; a web sign-up's email, or its phone when no email
was given), pending where nobody confirmed it (the phone of a web sign-up with an email, a
survey volunteer's contacts), withdrawn for a left subscription.

Revision ID: notify_0008
Revises: notify_0007
Create Date: 2026-12-09
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

from shared.models import UTCDateTime

revision = "notify_0008"
down_revision = "notify_0007"
branch_labels = None
depends_on = None

STAFF = ("staff", "paper", "import")


def upgrade() -> None:
    table = op.create_table(
        "channel_consents",
        sa.Column(
            "subscriber_id", sa.String(64), sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("channel", sa.String(10), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("how", sa.String(40), nullable=False),
        sa.Column("proof", sa.String(200), nullable=True),
        sa.Column("wording_version", sa.String(40), nullable=False),
        sa.Column("wording", sa.Text(), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_channel_consents_status", "channel_consents", ["status"])
    bind = op.get_bind()
    subscribers = sa.table(
        "subscribers",
        *(sa.column(name) for name in ("id", "email", "phone", "status", "consent_source", "consent_text")),
        sa.column("channels", sa.JSON()),
        sa.column("consent_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    )
    rows = bind.execute(
        sa.select(
            subscribers.c.id,
            subscribers.c.email,
            subscribers.c.phone,
            subscribers.c.channels,
            subscribers.c.status,
            subscribers.c.consent_source,
            subscribers.c.consent_text,
            subscribers.c.consent_at,
            subscribers.c.updated_at,
        )  # fmt: skip
    ).all()
    out = []
    for sid, email, phone, channels, status, source, text, at, updated in rows:
        chosen = json.loads(channels) if isinstance(channels, str) else list(channels or [])
        for channel in dict.fromkeys(chosen):
            if (channel == "email" and not email) or (channel == "sms" and not phone):
                continue
            proven = source in STAFF or (source == "web" and (channel == "email" or not email))
            state = (
                "withdrawn" if status == "unsubscribed" else ("active" if status == "active" and proven else "pending")
            )
            out.append(
                {
                    "subscriber_id": sid,
                    "channel": channel,
                    "status": state,
                    "how": source,
                    "proof": "recorded before notify_0008",
                    "wording_version": "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16],
                    "wording": text,
                    "requested_at": at,
                    # withdrawn: when the subscription was left (its last change)
                    "at": {"active": at, "withdrawn": updated}.get(state),
                }
            )
    if out:
        op.bulk_insert(table, out)


def downgrade() -> None:
    op.drop_index("ix_channel_consents_status", table_name="channel_consents")
    op.drop_table("channel_consents")
