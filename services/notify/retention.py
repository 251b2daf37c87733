"""Retention of contact data in delivery details (`KRANJ_CONTACT_RETENTION_DAYS`, issue #8).

Once a day, deliveries that are finished (sent, failed for good, skipped) and older than the
retention period lose their contact data: the address becomes NULL and any address quoted in
the last error is masked. What is kept is what statistics need: notice, channel, status,
attempts, times. The file outboxes (`<data dir>/outbox/email/*.eml`, `outbox/sms.jsonl`, used
when no SMTP host or SMS gateway is configured) get the same treatment: the recipient of an
older message is replaced by its masked form (`a***@example.si`, `+386***56`).

Once across replicas: a run is claimed by inserting (`contact-retention`, <UTC date>) into
`job_runs` (migration notify_0005) in the same transaction as the changes. On PostgreSQL a
second replica's insert waits for the first's commit and then fails on the primary key; on
SQLite transactions begin IMMEDIATE (shared.db), so the second already sees the claim. The
loser rolls back and does nothing. The job itself is idempotent, so a claim made by a replica
that died before the file outboxes were done is finished by the next day's run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update

from shared.db import Database
from shared.logs import mask_email, mask_phone, scrub
from shared.models import utcnow
from shared.periodic import every
from shared.settings import Settings

from . import relay
from .models import Delivery, JobRun

log = logging.getLogger("kranj.notify.retention")

JOB = "contact-retention"
CHECK_EVERY = 3600.0  # seconds between looks; one run per UTC day does the work
BATCH = 1000
FINISHED = ("sent", "failed-permanent", "skipped")  # and anything with no next attempt


@dataclass
class RetentionRun:
    cutoff: datetime
    deliveries: int = 0
    emails: int = 0
    sms: int = 0


def _finished() -> sa.ColumnElement[bool]:
    return sa.or_(col(Delivery.status).in_(FINISHED), col(Delivery.next_attempt_at).is_(None))


async def apply_retention(db: Database, settings: Settings, now: datetime | None = None) -> RetentionRun | None:
    """Today's run, if this replica claims it: returns what it changed, or None when another
    replica (or an earlier run today) already has it."""
    now = now or utcnow()
    run = RetentionRun(cutoff=now - timedelta(days=settings.contact_retention_days))
    try:
        async with db.session() as session:
            session.add(JobRun(job=JOB, run_key=now.date().isoformat(), claimed_at=now))
            await session.flush()  # another replica's claim: IntegrityError here (or at commit)
            while True:
                rows = (
                    await session.exec(
                        select(Delivery.id, Delivery.last_error)
                        .where(col(Delivery.created_at) < run.cutoff, col(Delivery.address).is_not(None), _finished())
                        .limit(BATCH)
                    )
                ).all()
                if not rows:
                    break
                quoted = [(i, e) for i, e in rows if e and scrub(e) != e]
                await session.exec(
                    update(Delivery).where(col(Delivery.id).in_([i for i, _ in rows])).values(address=None)
                )
                for delivery_id, error in quoted:
                    await session.exec(
                        update(Delivery).where(col(Delivery.id) == delivery_id).values(last_error=scrub(error))
                    )
                run.deliveries += len(rows)
            await relay.forget_old_counts(session)  # the caps' counts of past days
            await session.commit()
    except IntegrityError:
        log.info("contact retention already done today by another replica")
        return None
    run.emails, run.sms = await asyncio.to_thread(_file_outboxes, settings.outbox_dir, run.cutoff)
    async with db.session() as session:
        await session.exec(
            update(JobRun)
            .where(col(JobRun.job) == JOB, col(JobRun.run_key) == now.date().isoformat())
            .values(result=json.dumps(asdict(run), default=str))
        )
        await session.commit()
    if run.deliveries:
        await db.flush_deleted_data()  # SQLite keeps no old pages with the addresses
    log.info(
        "contact retention done",
        extra={"cutoff": run.cutoff.isoformat(), "deliveries": run.deliveries, "emails": run.emails, "sms": run.sms},
    )
    return run


def _file_outboxes(outbox_dir: Path, cutoff: datetime) -> tuple[int, int]:
    """Mask the recipient of file-outbox messages older than `cutoff`: (emails, SMS) changed."""
    emails = 0
    for path in sorted((outbox_dir / "email").glob("*.eml")):
        raw = path.read_bytes()
        headers = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        try:
            sent = parsedate_to_datetime(str(headers.get("Date", "")))
        except (TypeError, ValueError):
            sent = None
        if sent is None or sent.tzinfo is None:
            sent = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        to = str(headers.get("To", "")).strip()
        if sent >= cutoff or not to or "***" in to:
            continue
        _atomic_write(path, raw.replace(to.encode(), mask_email(to).encode()))
        emails += 1
    sms = 0
    sms_file = outbox_dir / "sms.jsonl"
    if sms_file.exists():
        lines = []
        for line in sms_file.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                entry = json.loads(line)
                at = datetime.fromisoformat(entry["at"])
            except (ValueError, KeyError, TypeError):
                lines.append(line)
                continue
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            to = entry.get("to")
            if at < cutoff and isinstance(to, str) and "***" not in to:
                entry["to"] = mask_phone(to)
                line = json.dumps(entry, ensure_ascii=False) + "\n"
                sms += 1
            lines.append(line)
        if sms:
            _atomic_write(sms_file, "".join(lines).encode("utf-8"))
    return emails, sms


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def contact_retention_job(
    db: Database, settings: Settings, every_seconds: float = CHECK_EVERY
) -> Callable[[], Awaitable[None]]:
    """The background task (`ServiceApp.background`): now, then every `every_seconds`."""
    async def contact_retention() -> None:  # apply_retention logs its own figures
        await apply_retention(db, settings)

    return every(every_seconds, contact_retention, name="contact retention")
