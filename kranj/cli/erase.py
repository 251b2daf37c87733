"""`kranj subscriber erase`: GDPR erasure in every service's database and in the dead letters the broker holds."""

from __future__ import annotations

import asyncio
import importlib
import re
from typing import Annotated, Any

import typer

from shared.settings import SERVICES, Settings

from .common import (
    connect,
    database_missing,
    err,
    fail,
    out,
)
from .db import migrate
from .subscribers import masked_contact, subscriber_app


# --------------------------------------------------------------------------------------
# kranj subscriber erase
# --------------------------------------------------------------------------------------
@subscriber_app.command("erase")
def subscriber_erase(
    email: Annotated[str | None, typer.Option(help="The resident's email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="The resident's phone number.")] = None,
) -> None:
    """GDPR erasure: remove a resident's contact data from every service that holds any."""
    if not email and not phone:
        raise fail("kranj: give --email or --phone (or both)", 2)
    from services.notify.domain import normalise_phone

    if phone:
        try:
            phone = normalise_phone(phone)
        except ValueError as exc:
            raise fail(f"kranj: {exc}", 2) from None
    settings = Settings()
    if not database_missing(settings.database_url("notify")) and not migrate(settings, ["notify"], quiet=True):
        raise typer.Exit(1)
    who = masked_contact(email.strip().lower() if email else None, phone)
    asyncio.run(_erase_everywhere(settings, email, phone, who))


async def _erase_everywhere(settings: Settings, email: str | None, phone: str | None, who: str) -> None:
    from services.notify.service import erase_subscriber
    from shared.db import Database

    others_with_data = False
    for name in SERVICES:
        url = settings.database_url(name)
        if name == "notify":
            hook = erase_subscriber
        else:
            try:
                module = importlib.import_module(f"services.{name}.service")
            except ModuleNotFoundError:
                out(f"{name}: not installed here; it keeps no contact data")
                continue
            hook = getattr(module, "erase_contact", None)
            if hook is None:
                out(f"{name}: keeps no residents' contact data; nothing to erase")
                continue
            others_with_data = True
        if database_missing(url):
            out(f"{name}: no database yet; nothing stored for {who}")
            continue
        database = Database(url)
        try:
            if name == "notify":
                counts = await hook(database, email=email, phone=phone, outbox_dir=settings.outbox_dir)
            else:
                counts = await hook(database, email=email, phone=phone)
        finally:
            await database.dispose()
        if name == "notify":
            out(
                f"notify: removed {counts.get('subscribers', 0)} subscription(s) of {who}; "
                f"cleared the address on {counts.get('deliveries', 0)} delivery record(s); "
                f"removed {counts.get('outbox_files', 0)} message(s) from the file outboxes"
            )
        else:
            details = ", ".join(f"{v} {k}" for k, v in counts.items()) or "nothing found"
            out(f"{name}: {details}")
    try:
        held = await erase_from_dead_letters(settings, email, phone)
    except typer.Exit:
        err(
            "kranj: the databases are done, but the dead letters in kranj.dead and kranj.rejected were not "
            "checked: run the same erasure again once RabbitMQ is reachable"
        )
        raise
    out(
        f"broker: rewrote {held.get(DEAD, 0)} dead letter(s) in {DEAD} and {held.get(REJECTED, 0)} "
        f"rejection(s) in {REJECTED} without the contact data of {who}; every other message kept"
    )
    if others_with_data:
        out("Done in every service that holds residents' contact data.")
    else:
        out("Today only notify holds residents' contact data, so this erasure is complete (every service checked).")


DEAD, REJECTED = "kranj.dead", "kranj.rejected"
ERASED_BYTES = b"[izbrisano]"


def contact_pattern(email: str | None, phone: str | None) -> re.Pattern[bytes] | None:
    """Every way a message may spell the resident's address: the email in any case, the
    phone in E.164 and as people write it (`041 777 888`, `+386 41 777 888`). Contact data
    is ASCII, so JSON bodies carry it as it is."""
    spellings: set[str] = set()
    if email:
        spellings.add(email.strip())
    if phone:
        import phonenumbers

        spellings.add(phone)
        try:
            number = phonenumbers.parse(phone, "SI")
        except phonenumbers.NumberParseException:
            number = None
        if number is not None:
            for fmt in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL):
                written = phonenumbers.format_number(number, fmt)
                spellings.update({written, written.replace(" ", ""), written.replace(" ", "-")})
    spellings = {s for s in spellings if len(s) >= 5}
    if not spellings:
        return None
    alternatives = sorted((re.escape(s.encode()) for s in spellings), key=len, reverse=True)
    return re.compile(b"|".join(alternatives), re.IGNORECASE)


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


async def erase_from_dead_letters(settings: Settings, email: str | None, phone: str | None) -> dict[str, int]:
    """GDPR erasure in the messages the platform holds: `kranj.dead` and `kranj.rejected`.

    Every message is taken (unacknowledged). One that names the resident (body or headers)
    is published again to the same queue with the contact data replaced by "[izbrisano]"
    (persistent, confirmed) and only then acknowledged; every other message is handed back
    untouched, in its place. Nothing else is lost: a failure leaves the originals queued.
    """
    import aio_pika
    import aiormq

    pattern = contact_pattern(email, phone)
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
            try:
                for _ in range(budget):
                    message = await queue.get(no_ack=False, fail=False, timeout=10)
                    if message is None:
                        break
                    headers = dict(message.headers or {})
                    named = pattern.search(message.body or b"") or pattern.search(repr(headers).encode())
                    if not named:
                        others.append(message)
                        continue
                    rewritten = aio_pika.Message(
                        pattern.sub(ERASED_BYTES, message.body or b""),
                        headers=_scrub_header(headers, pattern),
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
                        raise aiormq.exceptions.DeliveryError(None, confirmation)  # type: ignore[arg-type]
                    await message.ack()
                    counts[name] += 1
            finally:
                if others and not channel.is_closed:
                    await others[-1].nack(multiple=True, requeue=True)
                if not channel.is_closed:
                    await channel.close()  # anything still unacknowledged goes back too
    return counts

