"""`kranj subscriber erase|export`: GDPR erasure and access across every service
(shared/privacy.py), the file outboxes and the dead letters the broker holds."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from types import ModuleType
from typing import Annotated, Any

import typer

from shared.contact import normalise_phone
from shared.db import Database
from shared.models import utcnow
from shared.privacy import ERASED, Person
from shared.settings import SERVICES, Settings

from .common import connect, database_missing, err, fail, out
from .db import migrate
from .subscribers import masked_contact, subscriber_app


# --------------------------------------------------------------------------------------
# kranj subscriber erase | export
# --------------------------------------------------------------------------------------
def _person_asked(email: str | None, phone: str | None) -> Person:
    if not email and not phone:
        raise fail("kranj: give --email or --phone (or both)", 2)
    if phone:
        try:
            normalise_phone(phone)
        except ValueError as exc:
            raise fail(f"kranj: {exc}", 2) from None
    return Person.of(email=email, phone=phone)


def _privacy_modules() -> list[tuple[str, ModuleType]]:
    """Every service's privacy.py (the one frame of shared/privacy.py), in SERVICES order."""
    found = []
    for name in SERVICES:
        try:
            found.append((name, importlib.import_module(f"services.{name}.privacy")))
        except ModuleNotFoundError:
            out(f"{name}: not installed here; nothing of it to search")
    return found


async def find_everywhere(settings: Settings, person: Person) -> Person:
    """Widen the person through every service until nothing new is found: an email finds a
    registration, which gives the phone and name, which find a booking, and so on."""
    modules = _privacy_modules()
    for _ in range(5):  # each round can only add identifiers; a handful of rounds settle it
        before = person
        for name, module in modules:
            url = settings.database_url(name)
            if database_missing(url):
                continue
            database = Database(url)
            try:
                person = await module.find(database, person)
            finally:
                await database.dispose()
        if person == before:
            break
    return person


@subscriber_app.command("erase")
def subscriber_erase(
    email: Annotated[str | None, typer.Option(help="The resident's email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="The resident's phone number.")] = None,
) -> None:
    """GDPR erasure: find the person by everything they gave, and remove or mask every copy
    of their data in every service, the file outboxes and the dead letters."""
    asked = _person_asked(email, phone)
    settings = Settings()
    if not migrate(settings, [n for n in SERVICES if not database_missing(settings.database_url(n))], quiet=True):
        raise typer.Exit(1)
    who = masked_contact(email.strip().lower() if email else None, phone)
    asyncio.run(_erase_everywhere(settings, asked, who))


async def _erase_everywhere(settings: Settings, asked: Person, who: str) -> None:
    person = await find_everywhere(settings, asked)
    out(f"{who}: found by {person} in the services' records")
    for name, module in _privacy_modules():
        url = settings.database_url(name)
        if database_missing(url):
            out(f"{name}: no database yet; nothing stored for {who}")
            continue
        database = Database(url)
        try:
            counts = await module.erase(database, person, settings)
        finally:
            await database.dispose()
        details = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()) or "nothing found"
        out(f"{name}: {details}")
    try:
        held = await erase_from_dead_letters(settings, person)
    except typer.Exit:
        err(
            "kranj: the databases are done, but the dead letters in kranj.dead and kranj.rejected were not "
            "checked: run the same erasure again once RabbitMQ is reachable"
        )
        raise
    out(
        f"broker: rewrote {held.get(DEAD, 0)} dead letter(s) in {DEAD} and {held.get(REJECTED, 0)} "
        f"rejection(s) in {REJECTED} without the data of {who}; every other message kept"
    )
    out("Done in every service, the file outboxes and the dead letters. Logs never hold contact data.")


@subscriber_app.command("export")
def subscriber_export(
    email: Annotated[str | None, typer.Option(help="The resident's email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="The resident's phone number.")] = None,
) -> None:
    """GDPR access: everything every service holds about the person, as one JSON document
    on standard output (found by everything they gave, as erasure finds them)."""
    asked = _person_asked(email, phone)
    settings = Settings()
    document = asyncio.run(export_everywhere(settings, asked))
    out(json.dumps(document, ensure_ascii=False, indent=2))


async def export_everywhere(settings: Settings, asked: Person) -> dict[str, Any]:
    person = await find_everywhere(settings, asked)
    document: dict[str, Any] = {
        "exported_at": utcnow().isoformat(),
        "identifiers": {k: sorted(getattr(person, k)) for k in ("emails", "phones", "names")},
    }
    for name, module in _privacy_modules():
        url = settings.database_url(name)
        if database_missing(url):
            document[name] = {}
            continue
        database = Database(url)
        try:
            document[name] = await module.export(database, person)
        finally:
            await database.dispose()
    return document


DEAD, REJECTED = "kranj.dead", "kranj.rejected"
ERASED_BYTES = ERASED.encode()


def _scrub_header(value: Any, pattern: re.Pattern[bytes]) -> Any:
    if isinstance(value, str):
        return pattern.sub(ERASED_BYTES, value.encode()).decode()
    if isinstance(value, (bytes, bytearray)):
        return pattern.sub(ERASED_BYTES, bytes(value))
    if isinstance(value, list):
        return [_scrub_header(v, pattern) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_header(v, pattern) for k, v in value.items()}
    return value


async def erase_from_dead_letters(settings: Settings, person: Person) -> dict[str, int]:
    """GDPR erasure in the messages the platform holds: `kranj.dead` and `kranj.rejected`.

    Every message is taken (unacknowledged). One that names the resident (body or headers)
    is published again to the same queue with the contact data replaced by "[izbrisano]"
    (persistent, confirmed) and only then acknowledged; every other message is handed back
    untouched, in its place. Nothing else is lost: a failure leaves the originals queued.
    """
    import aio_pika
    import aiormq

    pattern = person.bytes_pattern()
    counts = {DEAD: 0, REJECTED: 0}
    if pattern is None:
        return counts
    connection = await connect(settings)
    async with connection:
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        for name in (DEAD, REJECTED):
            channel = await connection.channel(publisher_confirms=False)
            try:
                queue = await channel.declare_queue(name, passive=True)
            except Exception:  # noqa: BLE001 - no such queue: nothing held there
                continue
            budget = queue.declaration_result.message_count or 0
            others: list[Any] = []
            named: list[Any] = []
            try:
                for _ in range(budget):
                    message = await queue.get(no_ack=False, fail=False, timeout=10)
                    if message is None:
                        break
                    headers = dict(message.headers or {})
                    if pattern.search(message.body or b"") or pattern.search(repr(headers).encode()):
                        named.append(message)
                    else:
                        others.append(message)
                # The others go back first, one by one in their order (a quorum queue puts a
                # returned message at the back), then the scrubbed copies after them.
                while others and not channel.is_closed:
                    await others.pop(0).nack(requeue=True)
                while named:
                    message = named[0]
                    rewritten = aio_pika.Message(
                        pattern.sub(ERASED_BYTES, message.body or b""),
                        headers=_scrub_header(dict(message.headers or {}), pattern),
                        content_type=message.content_type,
                        content_encoding=message.content_encoding,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message.message_id,
                        timestamp=message.timestamp,
                        type=message.type,
                        app_id=message.app_id,
                    )
                    confirmation = await publish_channel.default_exchange.publish(
                        rewritten, name, mandatory=True, timeout=10
                    )
                    if not isinstance(confirmation, aiormq.spec.Basic.Ack):  # the original stays queued
                        raise aiormq.exceptions.DeliveryError(None, confirmation)
                    await message.ack()
                    named.pop(0)
                    counts[name] += 1
            finally:
                for message in [*others, *named]:  # what is still held goes back, in order
                    if channel.is_closed:
                        break
                    await message.nack(requeue=True)
                if not channel.is_closed:
                    await channel.close()  # anything still unacknowledged goes back too
    return counts
