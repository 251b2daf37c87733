"""`kranj subscriber add / import`: residents who receive notices (the notify service)."""

from __future__ import annotations

import asyncio
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.settings import Settings

from .common import (
    database_missing,
    err,
    fail,
    out,
)
from .db import migrate

subscriber_app = typer.Typer(help="Residents who receive notices (the notify service).", no_args_is_help=True)


class ChannelName(str, Enum):
    email = "email"
    sms = "sms"


# --------------------------------------------------------------------------------------
# kranj subscriber add / import / erase
# --------------------------------------------------------------------------------------
def _notify_database(settings: Settings):
    """The notify database, migrated (upgrade is idempotent)."""
    from shared.db import Database

    if not migrate(settings, ["notify"], quiet=True):
        raise typer.Exit(1)
    return Database(settings.database_url("notify"))


def who_enters() -> str:
    """The staff member who runs the command, named in each consent record it writes:
    `KRANJ_STAFF` when set (a shared ops account), else the operating-system user."""
    import getpass
    import os

    return os.environ.get("KRANJ_STAFF") or getpass.getuser()


def masked_contact(email: str | None, phone: str | None) -> str:
    from shared.logs import mask_email, mask_phone

    return ", ".join(x for x in (mask_email(email) if email else "", mask_phone(phone) if phone else "") if x)


@subscriber_app.command("add")
def subscriber_add(
    ks: Annotated[list[str], typer.Option("--ks", help="KS slug (repeat for several; * = whole city).")],
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    phone: Annotated[str | None, typer.Option(help="Mobile number, E.164 or Slovenian format.")] = None,
    topic: Annotated[
        list[str] | None, typer.Option("--topic", help="general, utilities, events, rooms, surveys, safety.")
    ] = None,
    channel: Annotated[
        list[ChannelName] | None, typer.Option("--channel", help="email or sms (default: every contact given).")
    ] = None,
    language: Annotated[str, typer.Option(help="sl or en.")] = "sl",
) -> None:
    """Subscribe a resident on their behalf (consent recorded as staff-entered)."""
    from pydantic import ValidationError

    from services.notify.csv_import import describe_errors
    from services.notify.subscribers import Conflict, SubscriberIn, add_subscriber
    from shared.contact import sms_refusal

    values: dict[str, Any] = {"ks": ks, "email": email, "phone": phone, "language": language}
    if topic:
        values["topics"] = topic
    if channel:
        values["channels"] = [c.value for c in channel]
    try:
        data = SubscriberIn.model_validate(values)
    except ValidationError as exc:
        raise fail(f"kranj: cannot subscribe: {describe_errors(exc)}", 2) from None

    settings = Settings()
    if refusal := sms_refusal(data.phone, settings):
        raise fail(f"kranj: cannot subscribe: phone: {refusal}", 2)
    database = _notify_database(settings)

    async def go():
        try:
            return await add_subscriber(database, data, consent_source="staff", entered_by=f"staff:{who_enters()}")
        finally:
            await database.dispose()

    try:
        created = asyncio.run(go())
    except Conflict as exc:
        raise fail(f"kranj: {exc}", 1) from None
    out(
        f"Subscribed {created.id}: {masked_contact(created.email, created.phone)}; KS {', '.join(created.ks)}; "
        f"topics {', '.join(created.topics)}; channels {', '.join(created.channels)}; language {created.language}"
    )


@subscriber_app.command("import")
def subscriber_import(
    file: Annotated[Path, typer.Argument(help="CSV file: email, phone, ks, topics, channels, language.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the file; write nothing.")] = False,
) -> None:
    """Load a paper sign-up list. Bad rows are reported by line number; the good rows still load.

    UTF-8 with or without BOM (Windows-1250 is accepted with a warning), comma- or
    semicolon-separated, lists inside a cell separated by `|`. Exit code 0 when every row
    loaded, 1 when some rows failed, 2 when the file cannot be used at all.
    """
    from services.notify.csv_import import CsvFormatError, already_subscribed, load_rows, parse_subscribers_csv

    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise fail(f"kranj: cannot read {file}: {exc.strerror or exc}", 2) from None
    try:
        parsed = parse_subscribers_csv(raw, settings=Settings())
    except CsvFormatError as exc:
        raise fail(f"kranj: {file}: {exc}", 2) from None
    for warning in parsed.warnings:
        err(f"warning: {warning.en}")

    settings = Settings()
    errors = list(parsed.errors)
    loaded = 0
    if dry_run:
        url = settings.database_url("notify")
        if parsed.rows and not database_missing(url):
            from shared.db import Database

            database = Database(url)

            async def check():
                try:
                    return await already_subscribed(database, parsed.rows)
                except Exception as exc:  # noqa: BLE001 - e.g. not migrated yet: nothing is subscribed
                    err(f"warning: could not compare with existing subscribers ({type(exc).__name__})")
                    return []
                finally:
                    await database.dispose()

            errors += asyncio.run(check())
        loaded = len(parsed.rows) - (len(errors) - len(parsed.errors))
    elif parsed.rows:
        database = _notify_database(settings)

        async def go():
            try:
                return await load_rows(database, parsed.rows, consent_source="import", entered_by=f"import by {who_enters()}")
            finally:
                await database.dispose()

        result = asyncio.run(go())
        errors += result.errors
        loaded = len(result.loaded)

    for error in sorted(errors, key=lambda e: e.line):
        err(str(error))
    failed = len(errors)
    if dry_run:
        out(f"Dry run of {file.name}: {loaded} row(s) would load, {failed} row(s) have errors; nothing was written.")
    else:
        out(f"Imported {file.name}: {loaded} subscriber(s) loaded, {failed} row(s) failed.")
    raise typer.Exit(1 if failed else 0)


