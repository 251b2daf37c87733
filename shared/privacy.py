"""GDPR erasure (Art. 17) and access (Art. 15): one frame for every service.

A person is found by everything they gave, not only by the identifier they asked with: an
erasure by email finds the registration made with it, and so the phone and the name given
there, and then everything that holds those. `Person` is that growing set of identifiers and
knows every way a stored text may spell them.

Each service that holds personal data has a `privacy.py` with the same three functions:

    async def find(db: Database, person: Person) -> Person          # the identifiers its records add
    async def erase(db: Database, person: Person, settings: Settings) -> dict[str, int]
    async def export(db: Database, person: Person) -> dict[str, Any]

`kranj subscriber erase|export` (kranj/cli/erase.py) first widens the person through every
service until nothing new is found, then erases (or exports) in each, then in the messages
the broker holds. The helpers below are what those functions are made of: outbox rows are
masked, free text is masked, records keep what the figures need but no longer name anyone.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import phonenumbers
import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .contact import normalise_phone
from .models import OutboxMessage, ProcessedMessage
from .periodic import every

ERASED = "[izbrisano]"
MIN_SPELLING = 5  # shorter strings would mask unrelated text
RETENTION_EVERY = 3600.0  # seconds between retention rounds (each is idempotent and cheap)


@dataclass(frozen=True)
class Person:
    """The identifiers of one person: emails (lower case), phones (E.164) and names."""

    emails: frozenset[str] = field(default_factory=frozenset)
    phones: frozenset[str] = field(default_factory=frozenset)
    names: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, email: str | None = None, phone: str | None = None, name: str | None = None) -> Person:
        return cls().with_(emails=[email], phones=[phone], names=[name])

    def with_(
        self,
        *,
        emails: Iterable[str | None] = (),
        phones: Iterable[str | None] = (),
        names: Iterable[str | None] = (),
    ) -> Person:
        """This person with more identifiers (normalised; blanks, the erased marker and
        names too short to mask safely are left out)."""
        new_emails = {e.strip().lower() for e in emails if e and e.strip()}
        new_phones = {_phone(p) for p in phones if p and p.strip()}
        new_names = {" ".join(n.split()) for n in names if n and n.strip()}
        new_names = {n for n in new_names if len(n) >= MIN_SPELLING and n != ERASED}
        return Person(
            frozenset(self.emails | new_emails), frozenset(self.phones | new_phones), frozenset(self.names | new_names)
        )

    def __or__(self, other: Person) -> Person:
        return self.with_(emails=other.emails, phones=other.phones, names=other.names)

    @property
    def empty(self) -> bool:
        return not (self.emails or self.phones or self.names)

    def spellings(self) -> list[str]:
        """Every string a stored text may hold for this person, longest first: the email;
        the phone in E.164 and as people write it (`041 777 888`, `+386 41 777 888`,
        `041-777-888`, `041777888`); the names; each also as JSON escapes it."""
        found: set[str] = set(self.emails) | set(self.names)
        for phone in self.phones:
            found |= phone_spellings(phone)
        escaped = set()
        for text in found:
            escaped.add(json.dumps(text)[1:-1])
            escaped.add(json.dumps(text, ensure_ascii=False)[1:-1])
        return sorted({s for s in found | escaped if len(s) >= MIN_SPELLING}, key=len, reverse=True)

    def pattern(self) -> re.Pattern[str] | None:
        spellings = self.spellings()
        if not spellings:
            return None
        return re.compile("|".join(re.escape(s) for s in spellings), re.IGNORECASE)

    def bytes_pattern(self) -> re.Pattern[bytes] | None:
        spellings = self.spellings()
        if not spellings:
            return None
        return re.compile(b"|".join(re.escape(s.encode()) for s in spellings), re.IGNORECASE)

    def mask(self, text: str | None) -> str | None:
        """`text` with every spelling of this person replaced by "[izbrisano]"."""
        pattern = self.pattern()
        if text is None or pattern is None:
            return text
        return pattern.sub(ERASED, text)

    def named_in(self, text: str | None) -> bool:
        pattern = self.pattern()
        return bool(text and pattern is not None and pattern.search(text))

    def __str__(self) -> str:  # never the data itself: for output and logs
        return f"{len(self.emails)} email(s), {len(self.phones)} phone(s), {len(self.names)} name(s)"


def phone_spellings(phone: str) -> set[str]:
    spellings = {phone}
    try:
        number = phonenumbers.parse(phone, "SI")
    except phonenumbers.NumberParseException:
        return spellings
    for fmt in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL):
        written = phonenumbers.format_number(number, fmt)
        spellings |= {written, written.replace(" ", ""), written.replace(" ", "-")}
    return spellings


def _phone(raw: str) -> str:
    try:
        return normalise_phone(raw)
    except ValueError:
        return raw.strip()


def contact_filter(person: Person, email: Any = None, phone: Any = None) -> sa.ColumnElement[bool] | None:
    """`email` in the person's emails (any case) or `phone` in their phones; None when
    the person has neither (then no record is theirs by contact)."""
    clauses = []
    if email is not None and person.emails:
        clauses.append(sa.func.lower(email).in_(sorted(person.emails)))
    if phone is not None and person.phones:
        clauses.append(phone.in_(sorted(person.phones)))
    return sa.or_(*clauses) if clauses else None


def _needles(person: Person) -> list[str]:
    """What SQL looks for before Python masks exactly: each spelling as given, lower and
    upper (SQLite's LIKE folds only ASCII)."""
    return sorted({v for s in person.spellings() for v in (s, s.lower(), s.upper())})


async def mask_text_columns(session: AsyncSession, person: Person, columns: Sequence[Any]) -> int:
    """Mask the person in free-text columns (of one model each): rows are found in SQL and
    rewritten in Python with the exact pattern. Returns the number of rows changed."""
    needles = _needles(person)
    if not needles:
        return 0
    changed = 0
    for column in columns:
        model = column.class_
        rows = (
            await session.exec(
                select(model).where(sa.or_(*(col(column).contains(n, autoescape=True) for n in needles)))
            )
        ).all()
        for row in rows:
            value = getattr(row, column.key)
            masked = person.mask(value)
            if masked != value:
                setattr(row, column.key, masked)
                session.add(row)
                changed += 1
    return changed


async def mask_outbox(session: AsyncSession, person: Person) -> int:
    """The service's outbox rows (sent or not: the record of what was said) keep their
    messages, without the person. Bodies stay valid JSON (spellings are JSON-escaped)."""
    return await mask_text_columns(session, person, [OutboxMessage.body])


async def identities_in_outbox(session: AsyncSession, person: Person) -> Person:
    """What the service's stored messages add: every JSON object in a body that carries one
    of the person's contacts gives its `name`, `email` and `phone` siblings (a registrant,
    a requester, a volunteer)."""
    contacts = sorted(person.emails | {s for p in person.phones for s in phone_spellings(p)})
    if not contacts:
        return person
    needles = sorted({v for c in contacts for v in (c, c.lower(), c.upper())})
    rows = (
        await session.exec(
            select(OutboxMessage.body).where(
                sa.or_(*(col(OutboxMessage.body).contains(n, autoescape=True) for n in needles))
            )
        )
    ).all()
    found = person
    for body in rows:
        try:
            document = json.loads(body)
        except ValueError:
            continue
        for obj in _objects(document):
            email, phone = obj.get("email"), obj.get("phone")
            mine = (isinstance(email, str) and email.strip().lower() in person.emails) or (
                isinstance(phone, str) and phone.strip() and _phone(phone) in person.phones
            )
            if mine:
                found = found.with_(
                    emails=[email if isinstance(email, str) else None],
                    phones=[phone if isinstance(phone, str) else None],
                    names=[obj.get("name") if isinstance(obj.get("name"), str) else None],
                )
    return found


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def identities_of(rows: Iterable[Any], *, name: str = "name", email: str = "email", phone: str = "phone") -> dict:
    """The identifiers on records found by contact, for `Person.with_(**…)`."""
    rows = list(rows)
    return {
        "emails": [getattr(r, email, None) for r in rows],
        "phones": [getattr(r, phone, None) for r in rows],
        "names": [getattr(r, name, None) for r in rows],
    }


# --------------------------------------------------------------------------------------
# Retention: what the platform no longer needs goes by itself
# --------------------------------------------------------------------------------------
async def forget_bus_records(session: AsyncSession, cutoff: datetime) -> dict[str, int]:
    """What a service keeps of the messages it exchanged, past `cutoff`: the outbox rows are
    the record of what was said, so once published and older than that they go (unsent rows
    stay until they are sent); the inbox's record of a message handled that long ago goes
    too (it names no one: consumer, source, id, type; a redelivery is expected within
    minutes, and kept for ever the record only grows). Counts, by what went; only the outbox
    rows held personal data (the caller flushes the database file for those alone)."""
    outbox = await session.exec(
        sa.delete(OutboxMessage).where(col(OutboxMessage.sent_at).is_not(None), col(OutboxMessage.sent_at) < cutoff)
    )
    inbox = await session.exec(sa.delete(ProcessedMessage).where(col(ProcessedMessage.processed_at) < cutoff))
    return {"outbox_messages": int(outbox.rowcount or 0), "handled_messages": int(inbox.rowcount or 0)}


def retention_job(
    retain: Callable[[Any, Any], Awaitable[dict[str, int]]], db: Any, settings: Any
) -> Callable[[], Awaitable[None]]:
    """A service's `privacy.retain(db, settings)` as its background task, every hour."""

    async def round_() -> str:
        done = {k: v for k, v in (await retain(db, settings)).items() if v}
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in done.items())

    return every(RETENTION_EVERY, round_, name="personal data past its retention removed")


# --------------------------------------------------------------------------------------
# Access by message: notify asks, every other service answers (shared/contracts/privacy.py)
# --------------------------------------------------------------------------------------
class InTransaction:
    """Stands in for a `Database` whose `session()` is an open session of the caller's (its
    transaction is the caller's to commit): `find` and `export` read inside a consumer's
    transaction through it."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        yield self._session


def answer_exports(bus: Any, service: str, module: Any) -> None:
    """Register `service`'s consumer of `notify.export.requested`: find the person in its own
    records (`module.find`), export them (`module.export`) and answer
    `<service>.export.answered` in the consumer's transaction."""
    from .bus import QUEUES, Handles, add_to_outbox
    from .contracts.privacy import EXPORT_ANSWERED, EXPORT_REQUESTED, ExportAnswered, ExportRequested

    answer_type = EXPORT_ANSWERED[service]
    bus.publisher(answer_type)

    async def on_export_requested(session: AsyncSession, envelope: Any, data: ExportRequested) -> None:
        # Read in the consumer's own transaction: on SQLite a second session would wait for
        # the write lock this one holds.
        here = InTransaction(session)
        person = await module.find(here, Person().with_(emails=data.emails, phones=data.phones, names=data.names))
        document = await module.export(here, person)
        answer = ExportAnswered(request_id=data.request_id, service=service, document=document)
        add_to_outbox(session, answer_type, answer, source=bus.source, subject=data.request_id)

    on_export_requested.__name__ = f"{service}_on_export_requested"
    bus.consume(QUEUES[f"{service}.on-export-requested"], Handles(EXPORT_REQUESTED, on_export_requested))
