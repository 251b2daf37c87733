"""`kranj`: the ops command line of Kranj ZA vse (CONTRACT.md, "Commands").

Every command builds `Settings()` from the environment (`KRANJ_*`), so it acts on the
same broker and databases as the services started with that environment.

    kranj up                      all four services, supervised (what `make run` starts)
    kranj run <service>           one service in the foreground (what a container runs)
    kranj db upgrade              migrations of every service
    kranj subscriber add|import|erase
    kranj dlq list|replay         the dead letters in `kranj.dead`
    kranj status                  services, queues, dead letters, unsent outbox rows
    kranj token create|list|revoke staff API tokens (stored hashed, revocable)
    kranj staff add|passwd|disable|enable|list   staff accounts for the /login page
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from . import clock
from .runner import broker_problem, redact_url
from .settings import SERVICES, Settings

DATABASES: tuple[str, ...] = (*SERVICES, "accounts")  # "accounts": the identity store, shared by all

app = typer.Typer(
    name="kranj",
    help="Kranj ZA vse — the ops command line. Settings come from KRANJ_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # never print settings (secrets) in a traceback
)
db_app = typer.Typer(help="Databases of the services.", no_args_is_help=True)
subscriber_app = typer.Typer(help="Residents who receive notices (the notify service).", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead letters: messages that could not be processed (queue kranj.dead).", no_args_is_help=True
)
token_app = typer.Typer(help="Staff API tokens (stored hashed, revocable).", no_args_is_help=True)
staff_app = typer.Typer(help="Staff accounts: email and password for the /login page of every service.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(subscriber_app, name="subscriber")
app.add_typer(dlq_app, name="dlq")
app.add_typer(token_app, name="token")
app.add_typer(staff_app, name="staff")


class Service(str, Enum):
    events = "events"
    booking = "booking"
    surveys = "surveys"
    notify = "notify"


class Role(str, Enum):
    admin = "admin"
    ks_staff = "ks-staff"
    organiser = "organiser"


class ChannelName(str, Enum):
    email = "email"
    sms = "sms"


def main() -> None:
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:  # a bad KRANJ_* setting: one clear line, not a traceback
        from .settings import settings_problem

        err(f"kranj: invalid configuration: {settings_problem(exc)}")
        raise SystemExit(2) from None


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------
def out(message: str = "") -> None:
    typer.echo(message)


def err(message: str) -> None:
    typer.echo(message, err=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err(message)
    return typer.Exit(code)


def broker_unreachable_line(settings: Settings, problem: str) -> str:
    return (
        f"kranj: RabbitMQ is not reachable at {redact_url(settings.amqp_url)} ({problem}) — "
        "start it (e.g. rabbitmq-server -detached) or set KRANJ_AMQP_URL"
    )


@contextmanager
def quiet_broker_logs() -> Iterator[None]:
    """aiormq logs every failed connection attempt; the command says it once, in one line."""
    loggers = [logging.getLogger(name) for name in ("aiormq", "aio_pika")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)  # children at NOTSET inherit this
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)


def safe_db_url(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return redact_url(url)


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    import sqlalchemy as sa

    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def database_missing(url: str) -> bool:
    path = sqlite_path(url)
    return path is not None and not path.exists()


# --------------------------------------------------------------------------------------
# kranj db upgrade
# --------------------------------------------------------------------------------------
def migrate(settings: Settings, services: Iterable[str], *, quiet: bool = False) -> bool:
    """Upgrade each service's database to head, one line per service; False if any failed."""
    from alembic.script import ScriptDirectory

    from .migrations import alembic_config, upgrade

    ok = True
    for name in services:
        url = settings.database_url(name)
        try:
            cfg = alembic_config(name, url)
            location = Path(cfg.get_main_option("script_location") or "")
            if not location.is_dir():
                raise FileNotFoundError(f"no migrations at {location}")
            head = ScriptDirectory.from_config(cfg).get_current_head()
            upgrade(name, url)
        except Exception as exc:  # noqa: BLE001 - reported per service, the others still run
            ok = False
            err(f"{name}: migration failed: {type(exc).__name__}: {exc}")
            continue
        if not quiet:
            out(f"{name}: database at {head or 'base'} ({safe_db_url(url)})")
    return ok


@db_app.command("upgrade")
def db_upgrade(
    service: Annotated[Service | None, typer.Option("--service", "-s", help="Only this service.")] = None,
) -> None:
    """Run the migrations of every service (or one) and of the identity store (staff accounts,
    sessions, API tokens), bringing each database to the newest schema."""
    settings = Settings()
    names = [service.value] if service else list(DATABASES)
    if not migrate(settings, names):
        raise typer.Exit(1)


# --------------------------------------------------------------------------------------
# kranj up / kranj run
# --------------------------------------------------------------------------------------
class LogFormatChoice(str, Enum):
    json = "json"
    console = "console"
    auto = "auto"


LogFormat = Annotated[
    LogFormatChoice | None,
    typer.Option(
        "--log-format",
        help="json (one object per line), console (for people) or auto (console on a terminal). "
        "Default: KRANJ_LOG_FORMAT, else auto.",
    ),
]


def _log_format(value: LogFormatChoice | None) -> None:
    """Pass the choice to the service processes through their environment."""
    if value:
        os.environ["KRANJ_LOG_FORMAT"] = value.value


@app.command()
def up(log_format: LogFormat = None) -> None:
    """Migrate, then run all four services as supervised processes. Ctrl-C stops everything."""
    from .supervisor import ChildSpec, Supervisor

    _log_format(log_format)
    settings = Settings()
    with quiet_broker_logs():
        problem = asyncio.run(broker_problem(settings.amqp_url))
    if problem:
        raise fail(broker_unreachable_line(settings, problem))
    if not migrate(settings, DATABASES):
        raise fail("kranj: not starting: the migrations above failed")
    settings.signing_key()  # create the local key once, before four processes race for it
    supervisor = Supervisor(
        [ChildSpec(name, [sys.executable, "-m", f"services.{name}"]) for name in SERVICES],
        stop_timeout=settings.graceful_timeout + 5,
    )
    out("Starting Kranj ZA vse:")
    for name in SERVICES:
        out(f"  {name:<8} {settings.local_url(name)}")
    out("Ctrl-C stops everything.")
    sys.stdout.flush()
    raise typer.Exit(supervisor.run())


@app.command()
def run(
    service: Annotated[Service, typer.Argument(help="events, booking, surveys or notify")],
    log_format: LogFormat = None,
) -> None:
    """Run one service in the foreground (what each container runs)."""
    from .runner import run_service

    _log_format(log_format)
    run_service(service.value)


# --------------------------------------------------------------------------------------
# kranj subscriber add / import / erase
# --------------------------------------------------------------------------------------
def _notify_database(settings: Settings):
    """The notify database, migrated (upgrade is idempotent)."""
    from .db import Database

    if not migrate(settings, ["notify"], quiet=True):
        raise typer.Exit(1)
    return Database(settings.database_url("notify"))


def _contact(email: str | None, phone: str | None) -> str:
    from .logs import mask_email, mask_phone

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
    from services.notify.service import Conflict, SubscriberIn, add_subscriber

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
    database = _notify_database(settings)

    async def go():
        try:
            return await add_subscriber(database, data, consent_source="staff")
        finally:
            await database.dispose()

    try:
        created = asyncio.run(go())
    except Conflict as exc:
        raise fail(f"kranj: {exc}", 1) from None
    out(
        f"Subscribed {created.id}: {_contact(created.email, created.phone)}; KS {', '.join(created.ks)}; "
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
        parsed = parse_subscribers_csv(raw)
    except CsvFormatError as exc:
        raise fail(f"kranj: {file}: {exc}", 2) from None
    for warning in parsed.warnings:
        err(f"warning: {warning}")

    settings = Settings()
    errors = list(parsed.errors)
    loaded = 0
    if dry_run:
        url = settings.database_url("notify")
        if parsed.rows and not database_missing(url):
            from .db import Database

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
                return await load_rows(database, parsed.rows, consent_source="import")
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
    who = _contact(email.strip().lower() if email else None, phone)
    asyncio.run(_erase_everywhere(settings, email, phone, who))


async def _erase_everywhere(settings: Settings, email: str | None, phone: str | None, who: str) -> None:
    from services.notify.service import erase_subscriber

    from .db import Database

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
    connection = await _connect(settings)
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


# --------------------------------------------------------------------------------------
# kranj dlq list / replay
# --------------------------------------------------------------------------------------
_DEATH_HEADERS_PREFIXES = ("x-kranj-", "x-first-death-", "x-last-death-")
_DEATH_HEADERS = ("x-death", "x-delivery-count")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return str(value)


@dataclass
class DeadLetter:
    """What ops need to know about one message in `kranj.dead`."""

    position: int
    message_id: str | None
    dead_lettered_at: str | None
    queue: str | None
    routing_key: str | None
    reason: str
    ce_id: str | None = None
    ce_type: str | None = None
    ce_source: str | None = None
    body_bytes: int = 0

    @classmethod
    def from_message(cls, position: int, message: Any) -> DeadLetter:
        from .bus import HEADER_DEAD_AT, HEADER_QUEUE, HEADER_REASON, HEADER_ROUTING_KEY

        headers = dict(message.headers or {})
        deaths = headers.get("x-death") or []
        death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
        keys = death.get("routing-keys") or []
        queue = (
            _text(headers.get(HEADER_QUEUE)) or _text(headers.get("x-first-death-queue")) or _text(death.get("queue"))
        )
        routing_key = _text(headers.get(HEADER_ROUTING_KEY)) or (_text(keys[0]) if keys else None)
        routing_key = routing_key or message.routing_key or None
        reason = _text(headers.get(HEADER_REASON))
        if not reason:
            broker_reason = _text(headers.get("x-first-death-reason")) or _text(death.get("reason"))
            if broker_reason:
                count = death.get("count")
                times = f" ({count} times)" if isinstance(count, int) and count > 1 else ""
                reason = f"dead-lettered by the broker: {broker_reason}{times}"
            else:
                reason = "unknown (no x-kranj-reason or x-death header)"
        dead_at = _text(headers.get(HEADER_DEAD_AT)) or _text(death.get("time")) or _text(message.timestamp)
        item = cls(
            position=position,
            message_id=message.message_id,
            dead_lettered_at=dead_at,
            queue=queue,
            routing_key=routing_key,
            reason=reason,
            body_bytes=len(message.body or b""),
        )
        try:
            body = json.loads(message.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            body = None
        if isinstance(body, dict):
            item.ce_id = _text(body.get("id"))
            item.ce_type = _text(body.get("type"))
            item.ce_source = _text(body.get("source"))
        return item

    def matches(self, wanted: Iterable[str]) -> bool:
        wanted = set(wanted)
        return bool(wanted & {self.ce_id, self.message_id})

    def public(self) -> dict[str, Any]:
        return asdict(self)

    def selected(self, types: Iterable[str] = (), reason: str | None = None) -> bool:
        """`types`: CloudEvent types (`si.kranj.notify.notice.requested.v1`) or routing keys
        (`notify.notice.requested`), any of them; `reason`: a piece of the reason, any case."""
        types = [t for t in types if t]
        if types and not any(t in (self.ce_type, self.routing_key) for t in types):
            return False
        return not reason or reason.casefold() in self.reason.casefold()


async def _connect(settings: Settings):
    import aio_pika

    try:
        with quiet_broker_logs():
            return await aio_pika.connect(settings.amqp_url, timeout=10)
    except Exception as exc:  # noqa: BLE001
        reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        raise fail(broker_unreachable_line(settings, reason)) from None


async def _dead_queue(connection: Any, channel: Any):
    import aiormq

    from .bus import DEAD_QUEUE_NAME

    try:
        return await channel.declare_queue(DEAD_QUEUE_NAME, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None


async def dlq_peek(settings: Settings, limit: int) -> tuple[list[DeadLetter], int]:
    """Up to `limit` dead letters, oldest first, and how many the queue holds; none is lost.

    Messages are fetched unacknowledged and then all handed back with one `nack(requeue)`;
    RabbitMQ puts requeued messages back in their original positions, so the queue keeps
    its order and its count.
    """
    connection = await _connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        queue = await _dead_queue(connection, channel)
        if queue is None:
            return [], 0
        total = queue.declaration_result.message_count or 0
        taken: list[Any] = []
        try:
            while len(taken) < min(limit, total):
                message = await queue.get(no_ack=False, fail=False, timeout=10)
                if message is None:
                    break
                taken.append(message)
            return [DeadLetter.from_message(i + 1, m) for i, m in enumerate(taken)], total
        finally:
            if taken and not channel.is_closed:
                await taken[-1].nack(multiple=True, requeue=True)
            if not channel.is_closed:
                await channel.close()  # anything still unacknowledged goes back too


def _when(iso: str | None) -> str:
    if not iso:
        return "(time unknown)"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_dead_letter(item: DeadLetter) -> None:
    out(f"#{item.position}  dead-lettered {_when(item.dead_lettered_at)}")
    out(f"    from queue:  {item.queue or '(unknown)'}")
    out(f"    routing key: {item.routing_key or '(none)'}")
    if item.ce_id or item.ce_type or item.ce_source:
        out(f"    CloudEvent:  id {item.ce_id} · type {item.ce_type} · source {item.ce_source}")
    else:
        out(f"    body:        not a CloudEvent ({item.body_bytes} bytes); message id {item.message_id or '-'}")
    out(f"    reason:      {item.reason}")


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this CloudEvent type or routing key (repeatable)."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Only reasons containing this text.")] = None,
) -> None:
    """Show dead letters, oldest first, without taking them off the queue."""
    settings = Settings()
    if types or reason:
        everything, total = asyncio.run(dlq_peek(settings, DLQ_SCAN_LIMIT))
        items = [i for i in everything if i.selected(types or (), reason)][:limit]
        total = sum(1 for i in everything if i.selected(types or (), reason))
    else:
        items, total = asyncio.run(dlq_peek(settings, limit))
    if as_json:
        out(json.dumps({"total": total, "messages": [i.public() for i in items]}, ensure_ascii=False, indent=2))
        return
    if not items:
        out("kranj.dead is empty: no dead letters.")
        return
    for item in items:
        _print_dead_letter(item)
        out()
    more = f" (showing the first {len(items)})" if total > len(items) else ""
    out(f"{total} dead letter(s) in kranj.dead{more}. Put them back with `kranj dlq replay`.")


DLQ_SCAN_LIMIT = 100_000  # `show`, `purge` and filtered `list` look at (at most) this many


async def dlq_show(settings: Settings, wanted: str) -> tuple[DeadLetter, dict[str, Any], bytes] | None:
    """The first dead letter whose CloudEvent id or message id is `wanted`: summary, all
    headers and the body. Nothing is taken off the queue."""
    connection = await _connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        queue = await _dead_queue(connection, channel)
        if queue is None:
            return None
        budget = queue.declaration_result.message_count or 0
        taken: list[Any] = []
        try:
            for position in range(1, min(budget, DLQ_SCAN_LIMIT) + 1):
                message = await queue.get(no_ack=False, fail=False, timeout=10)
                if message is None:
                    break
                taken.append(message)
                item = DeadLetter.from_message(position, message)
                if item.matches([wanted]):
                    headers = {k: _plain(v) for k, v in (message.headers or {}).items()}
                    return item, headers, bytes(message.body or b"")
            return None
        finally:
            if taken and not channel.is_closed:
                await taken[-1].nack(multiple=True, requeue=True)
            if not channel.is_closed:
                await channel.close()


def _plain(value: Any) -> Any:
    """AMQP header values as JSON-friendly values (x-death is a list of tables)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return _text(value)


@dlq_app.command("show")
def dlq_show_command(
    message_id: Annotated[str, typer.Argument(help="CloudEvent id (or AMQP message id) of the dead letter.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show one dead letter in full: why, where from, every header and the body."""
    settings = Settings()
    found = asyncio.run(dlq_show(settings, message_id))
    if found is None:
        raise fail(f"kranj: no dead letter with id {message_id}")
    item, headers, body = found
    text = body.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        parsed = None
    if as_json:
        out(
            json.dumps(
                {**item.public(), "headers": headers, "body": parsed if parsed is not None else text},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    _print_dead_letter(item)
    out("    headers:")
    for key, value in sorted(headers.items()):
        out(f"      {key}: {json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value}")
    out("    body:")
    shown = json.dumps(parsed, ensure_ascii=False, indent=2) if parsed is not None else text
    for line in shown.splitlines() or [""]:
        out(f"      {line}")


@dataclass
class PurgeResult:
    purged: list[DeadLetter] = field(default_factory=list)
    kept: int = 0


async def dlq_purge(
    settings: Settings,
    *,
    types: Iterable[str] = (),
    reason: str | None = None,
    ids: Iterable[str] = (),
    dry_run: bool = False,
) -> PurgeResult:
    """Remove the dead letters that match every given filter (all of them when none is
    given; the command insists on --all for that). The others keep their places."""
    wanted, types = [i for i in ids if i], [t for t in types if t]
    result = PurgeResult()
    connection = await _connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        queue = await _dead_queue(connection, channel)
        if queue is None:
            return result
        budget = min(queue.declaration_result.message_count or 0, DLQ_SCAN_LIMIT)
        kept: list[Any] = []
        try:
            for position in range(1, budget + 1):
                message = await queue.get(no_ack=False, fail=False, timeout=10)
                if message is None:
                    break
                item = DeadLetter.from_message(position, message)
                if item.selected(types, reason) and (not wanted or item.matches(wanted)):
                    result.purged.append(item)
                    if not dry_run:
                        await message.ack()
                        continue
                kept.append(message)
        finally:
            result.kept = len(kept)
            if kept and not channel.is_closed:
                await kept[-1].nack(multiple=True, requeue=True)
            if not channel.is_closed:
                await channel.close()
    return result


@dlq_app.command("purge")
def dlq_purge_command(
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this CloudEvent type or routing key (repeatable)."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Only reasons containing this text.")] = None,
    message_id: Annotated[
        list[str] | None, typer.Option("--id", help="Only the message with this CloudEvent or message id (repeatable).")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Purge every dead letter (no filter).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be purged.")] = False,
) -> None:
    """Delete dead letters for good, by type, reason or id. The others stay, in order."""
    if not (types or reason or message_id or everything):
        raise fail("kranj: say what to purge: --type, --reason, --id, or --all for every dead letter", 2)
    settings = Settings()
    result = asyncio.run(dlq_purge(settings, types=types or (), reason=reason, ids=message_id or (), dry_run=dry_run))
    verb = "would purge" if dry_run else "purged"
    for item in result.purged:
        label = item.ce_id or item.message_id or f"#{item.position}"
        out(f"{verb} {label} ({item.ce_type or 'not a CloudEvent'}): {item.reason}")
    out(f"{len(result.purged)} dead letter(s) {verb}, {result.kept} kept in kranj.dead.")


@dataclass
class ReplayResult:
    replayed: list[tuple[str, str]] = field(default_factory=list)  # (id, where to)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, why)
    kept: int = 0  # looked at but not selected (--id)


def replay_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """The original headers without the dead-lettering ones (x-kranj-*, x-death, ...)."""
    return {
        k: v
        for k, v in (headers or {}).items()
        if k not in _DEATH_HEADERS and not k.startswith(_DEATH_HEADERS_PREFIXES)
    }


def _original_sender(message: Any) -> str:
    """Who published a dead letter: our x-kranj-sender header, or (dead-lettered by the
    broker, properties kept) its user_id; "" when anonymous."""
    from .bus import HEADER_SENDER

    headers = message.headers or {}
    if HEADER_SENDER in headers:
        value = headers[HEADER_SENDER]
        return value.decode() if isinstance(value, bytes) else str(value or "")
    return message.user_id or ""


async def dlq_replay(settings: Settings, *, limit: int | None = None, ids: Iterable[str] = ()) -> ReplayResult:
    """Republish dead letters to their original queue; each is acked only after a confirm.

    Target: the original queue through the default exchange (x-kranj-queue, or for broker
    dead-lettering x-first-death-queue); with no known queue, exchange `kranj` with the
    original routing key. Persistent, mandatory, confirmed. A message that cannot be
    republished stays in `kranj.dead`, in its place.
    """
    import aio_pika
    import aiormq

    from .bus import EXCHANGE_NAME
    from .senders import amqp_user

    wanted = [i for i in ids if i]
    result = ReplayResult()
    own_user = amqp_user(settings.amqp_url)
    connection = await _connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        queue = await _dead_queue(connection, channel)
        if queue is None:
            return result
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        # Only what is there now: a replayed message that dies again is not replayed twice.
        budget = queue.declaration_result.message_count or 0
        if limit is not None and not wanted:
            budget = min(budget, limit)
        unacked: list[Any] = []
        try:
            for position in range(1, budget + 1):
                if limit is not None and len(result.replayed) + len(result.failed) >= limit:
                    break
                message = await queue.get(no_ack=False, fail=False, timeout=10)
                if message is None:
                    break
                item = DeadLetter.from_message(position, message)
                label = item.ce_id or item.message_id or f"#{position}"
                if wanted and not item.matches(wanted):
                    unacked.append(message)
                    result.kept += 1
                    continue
                if item.queue:
                    exchange_name, routing_key, where = "", item.queue, f"queue {item.queue}"
                elif item.routing_key:
                    exchange_name, routing_key, where = (
                        EXCHANGE_NAME,
                        item.routing_key,
                        (f"exchange {EXCHANGE_NAME} ({item.routing_key})"),
                    )
                else:
                    unacked.append(message)
                    result.failed.append((label, "no original queue or routing key is known"))
                    continue
                republished = aio_pika.Message(
                    message.body,
                    headers=replay_headers(message.headers),
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    priority=message.priority,
                    correlation_id=message.correlation_id,
                    reply_to=message.reply_to,
                    message_id=message.message_id,
                    timestamp=message.timestamp,
                    type=message.type,
                    app_id=message.app_id,
                    # The original sender's rights come back only when it was us (the broker
                    # refuses any other user_id); anyone else's message is replayed anonymous.
                    user_id=own_user if _original_sender(message) == own_user else None,
                )
                try:
                    if publish_channel.is_closed:
                        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                    exchange = (
                        publish_channel.default_exchange
                        if exchange_name == ""
                        else await publish_channel.get_exchange(exchange_name, ensure=False)
                    )
                    confirmation = await exchange.publish(republished, routing_key, mandatory=True, timeout=10)
                    if not isinstance(confirmation, aiormq.spec.Basic.Ack):
                        raise aiormq.exceptions.DeliveryError(None, confirmation)  # type: ignore[arg-type]
                except aiormq.exceptions.PublishError:
                    unacked.append(message)
                    result.failed.append((label, f"{where} does not exist (the message was returned)"))
                    continue
                except (aiormq.exceptions.AMQPError, TimeoutError) as exc:
                    unacked.append(message)
                    result.failed.append((label, f"not confirmed by the broker: {type(exc).__name__}: {exc}"))
                    continue
                await message.ack()
                result.replayed.append((label, where))
        finally:
            if unacked and not channel.is_closed:
                await unacked[-1].nack(multiple=True, requeue=True)
            if not channel.is_closed:
                await channel.close()
    return result


@dlq_app.command("replay")
def dlq_replay_command(
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Replay at most this many.")] = None,
    message_id: Annotated[
        list[str] | None, typer.Option("--id", help="Only the message with this CloudEvent or message id (repeatable).")
    ] = None,
) -> None:
    """Put dead letters back on their original queue (oldest first); acked only once confirmed."""
    settings = Settings()
    result = asyncio.run(dlq_replay(settings, limit=limit, ids=message_id or ()))
    for label, where in result.replayed:
        out(f"replayed {label} -> {where}")
    for label, why in result.failed:
        err(f"not replayed {label}: {why} (it stays in kranj.dead)")
    if message_id and not result.replayed and not result.failed:
        raise fail(f"kranj: no dead letter with id {', '.join(message_id)}")
    out(f"{len(result.replayed)} message(s) replayed, {len(result.failed)} failed.")
    raise typer.Exit(1 if result.failed else 0)


# --------------------------------------------------------------------------------------
# kranj status
# --------------------------------------------------------------------------------------
async def _health(settings: Settings) -> dict[str, str]:
    import httpx

    async def one(client: httpx.AsyncClient, name: str) -> tuple[str, str]:
        url = settings.local_url(name) + "/readyz"
        try:
            response = await client.get(url)
        except httpx.ConnectError:
            return name, "not running"
        except httpx.TimeoutException:
            return name, "unavailable (no answer within 2 s)"
        except httpx.HTTPError as exc:
            return name, f"unavailable ({type(exc).__name__})"
        if response.status_code == 200:
            return name, "ok"
        detail = ""
        try:
            body = response.json()
            if isinstance(body, dict):
                detail = str(body.get("detail") or body.get("status") or "")[:120]
        except ValueError:
            pass
        return name, f"unavailable (HTTP {response.status_code}{': ' + detail if detail else ''})"

    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        return dict(await asyncio.gather(*(one(client, name) for name in SERVICES)))


async def _queue_depths(settings: Settings) -> tuple[str | None, dict[str, tuple[int, int] | None]]:
    """(broker problem, {queue: (messages, consumers) or None when not declared})."""
    import aio_pika
    import aiormq

    from .bus import iter_topology_queue_names

    try:
        with quiet_broker_logs():
            connection = await aio_pika.connect(settings.amqp_url, timeout=5)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}".strip().rstrip(":"), {}
    depths: dict[str, tuple[int, int] | None] = {}
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        for name in iter_topology_queue_names():
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                depths[name] = None
                channel = await connection.channel(publisher_confirms=False)
                continue
            ok = queue.declaration_result
            depths[name] = (ok.message_count or 0, ok.consumer_count or 0)
    return None, depths


async def _unsent_outbox(settings: Settings, name: str) -> str:
    import sqlalchemy as sa

    from .db import Database

    url = settings.database_url(name)
    if database_missing(url):
        return "not migrated"
    database = Database(url)
    try:
        async with database.engine.connect() as conn:
            unsent = (await conn.execute(sa.text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))).scalar_one()
    except sa.exc.DBAPIError as exc:
        text = str(exc.orig if exc.orig is not None else exc).lower()
        if "no such table" in text or "does not exist" in text and "relation" in text:
            return "not migrated"
        return f"database unavailable ({type(exc.orig or exc).__name__})"
    except (OSError, TimeoutError) as exc:
        return f"database unavailable ({type(exc).__name__})"
    finally:
        await database.dispose()
    return f"{unsent} unsent"


async def gather_status(settings: Settings) -> dict[str, Any]:
    health, (broker, depths), *outbox = await asyncio.gather(
        _health(settings), _queue_depths(settings), *(_unsent_outbox(settings, s) for s in SERVICES)
    )
    return {
        "services": health,
        "broker": broker,
        "queues": depths,
        "outbox": dict(zip(SERVICES, outbox, strict=True)),
        "warnings": dead_letter_warnings(depths) if broker is None else [],
    }


def dead_letter_warnings(depths: dict[str, tuple[int, int] | None]) -> list[str]:
    """What ops must know about the bound of kranj.dead (docs/operations.md, "Dead letters"):
    it is nearly full (from DEAD_WARN_RATIO of its bound, the oldest are dropped at the
    bound), or it has dropped dead letters (they are in kranj.dead.overflow)."""
    from .bus import DEAD_OVERFLOW_NAME, DEAD_QUEUE_NAME, DEAD_WARN_RATIO, dead_bound

    warnings = []
    bound = dead_bound()
    dead = (depths.get(DEAD_QUEUE_NAME) or (0, 0))[0]
    if dead >= DEAD_WARN_RATIO * bound:
        warnings.append(
            f"kranj.dead holds {dead} of at most {bound} dead letters ({100 * dead // bound} %): at the bound "
            "the oldest are dropped. Read them (`kranj dlq list`), fix the cause, then replay or drop them."
        )
    dropped = (depths.get(DEAD_OVERFLOW_NAME) or (0, 0))[0]
    if dropped:
        warnings.append(
            f"{dropped} dead letters were dropped from kranj.dead (full); the latest are kept in "
            f"{DEAD_OVERFLOW_NAME}. Read them in the management UI, then purge {DEAD_OVERFLOW_NAME}."
        )
    return warnings


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Services, queue depths, dead letters and unsent outbox rows on one screen.

    Exit code 0 when every service is ready, the broker is reachable and kranj.dead is below
    80 % of its bound with nothing dropped; 1 otherwise (each dead-letter problem is a
    WARNING line).
    """
    from .bus import DEAD_QUEUE_NAME, dead_bound

    settings = Settings()
    report = asyncio.run(gather_status(settings))
    healthy = (
        report["broker"] is None and all(v == "ok" for v in report["services"].values()) and not report["warnings"]
    )
    if as_json:
        out(json.dumps({**report, "healthy": healthy}, ensure_ascii=False, indent=2))
        raise typer.Exit(0 if healthy else 1)
    out(f"Kranj ZA vse — {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S')}")
    out()
    out("Services")
    for name in SERVICES:
        out(f"  {name:<8} {settings.local_url(name):<24} {report['services'][name]}")
    out()
    out(f"Queues at {redact_url(settings.amqp_url)}")
    if report["broker"]:
        out(f"  RabbitMQ is not reachable ({report['broker']})")
    else:
        width = max(len(q) for q in report["queues"]) + 2
        out(f"  {'queue':<{width}}{'messages':>9}{'consumers':>11}")
        for name, depth in report["queues"].items():
            if depth is None:
                out(f"  {name:<{width}}{'not declared yet':>20}")
            else:
                out(f"  {name:<{width}}{depth[0]:>9}{depth[1]:>11}")
    out()
    dead = report["queues"].get(DEAD_QUEUE_NAME)
    if report["broker"]:
        out("Dead letters: unknown (broker not reachable)")
    elif dead is None:
        out("Dead letters: 0 (kranj.dead not declared yet)")
    else:
        hint = " — see `kranj dlq list`" if dead[0] else ""
        out(f"Dead letters: {dead[0]} of at most {dead_bound()}{hint}")
    for warning in report["warnings"]:
        out(f"WARNING: {warning}")
    out()
    out("Outbox")
    for name in SERVICES:
        out(f"  {name:<8} {report['outbox'][name]}")
    raise typer.Exit(0 if healthy else 1)


# --------------------------------------------------------------------------------------
# kranj token create / list / revoke, kranj staff add / passwd / disable / enable / list
# --------------------------------------------------------------------------------------
def _accounts_run(settings: Settings, work: Any) -> Any:
    """Run `work(store)` against the identity store (migrated first), then close it."""
    from .accounts import AccountStore

    async def go() -> Any:
        store = AccountStore.from_settings(settings)
        try:
            await store.ready()
            return await work(store)
        finally:
            await store.dispose()

    return asyncio.run(go())


def _checked_ks(role: Role, ks: list[str] | None) -> list[str]:
    from .contracts.ks import ALL_KS, KS_NAMES

    ks = list(dict.fromkeys(ks or []))
    unknown = [k for k in ks if k != ALL_KS and k not in KS_NAMES]
    if unknown:
        raise fail(f"kranj: unknown KS {', '.join(unknown)}; use the KS slugs of Kranj (e.g. primskovo)", 2)
    if role is Role.ks_staff and not ks:
        raise fail("kranj: a ks-staff token needs at least one --ks", 2)
    return ks


def _scope(role: str, ks: Iterable[str]) -> str:
    ks = list(ks)
    return "every KS" if role == "admin" or "*" in ks else ", ".join(ks) or "no KS"


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _short(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="admin, ks-staff or organiser.")],
    ks: Annotated[list[str] | None, typer.Option("--ks", help="KS the token may act for (repeatable).")] = None,
    label: Annotated[
        str | None, typer.Option("--label", "--subject", help="Who or what the token is for (shown in lists and logs).")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=730, help="Days until the token expires (1–730).")] = 90,
) -> None:
    """Print a new staff API token to stdout, once. Only its SHA-256 is stored; it expires
    after --days (default 90); `kranj token revoke ID` ends it at once in every service."""
    ks = _checked_ks(role, ks)
    settings = Settings()
    token_id, token = _accounts_run(
        settings, lambda store: store.create_token(role=role.value, ks=ks, label=label or "", days=days)
    )
    out(token)
    err(
        f"kranj: {role.value} token {token_id} for {_scope(role.value, ks)}, valid {days} days. "
        f"Shown only now: keep it secret. "
        f"/ Žeton {token_id} je prikazan samo zdaj: hranite ga na varnem. Preklic: kranj token revoke {token_id}"
    )


@token_app.command("list")
def token_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The API tokens (never the tokens themselves): id, role, KS, label, created, expires, last used, revoked."""
    tokens = _accounts_run(Settings(), lambda store: store.list_tokens())
    if as_json:
        out(json.dumps([asdict(t) for t in tokens], ensure_ascii=False, indent=2, default=_json_value))
        return
    if not tokens:
        out("Ni žetonov. / No tokens.")
        return
    out(f"{'id':<13} {'role':<10} {'ks':<20} {'created':<17} {'expires':<17} {'last used':<17} {'revoked':<17} label")
    for t in tokens:
        out(
            f"{t.id:<13} {t.role:<10} {_scope(t.role, t.ks)[:20]:<20} {_short(t.created_at):<17} "
            f"{_short(t.expires_at):<17} {_short(t.last_used_at):<17} {_short(t.revoked_at):<17} {t.label}"
        )


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (kranj token list).")]) -> None:
    """Revoke a token: every service refuses it from the next request on."""
    if not _accounts_run(Settings(), lambda store: store.revoke_token(token_id)):
        raise fail(f"kranj: ni veljavnega žetona {token_id}. / No live token with id {token_id}.")
    out(f"Žeton {token_id} je preklican. / Token {token_id} revoked.")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Geslo / Password", hide_input=True, confirmation_prompt=True)
    return str(password)


@staff_app.command("add")
def staff_add(
    email: Annotated[str, typer.Option(help="The login: the staff member's email address.")],
    role: Annotated[Role, typer.Option(help="admin (city), ks-staff (their KS) or organiser.")],
    ks: Annotated[list[str] | None, typer.Option("--ks", help="KS the account may act for (repeatable).")] = None,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Create a staff account (the password is asked for, or read with --password-stdin; stored as an Argon2 hash)."""
    from .accounts import AccountError

    ks = _checked_ks(role, ks)
    password = _read_password(password_stdin)
    try:
        account = _accounts_run(
            Settings(),
            lambda store: store.add_account(email=email, password=password, role=role.value, ks=ks, display_name=name),
        )
    except AccountError as exc:
        raise fail(f"kranj: {exc}", 2) from None
    out(
        f"Račun {account.email} ({account.role}, {_scope(account.role, account.ks)}) je ustvarjen. "
        f"/ Account {account.email} created."
    )


@staff_app.command("passwd")
def staff_passwd(
    email: Annotated[str, typer.Option(help="The account's email address.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Set a new password; the account's open sessions end and a lockout is lifted."""
    from .accounts import AccountError

    password = _read_password(password_stdin)
    try:
        found = _accounts_run(Settings(), lambda store: store.set_password(email, password))
    except AccountError as exc:
        raise fail(f"kranj: {exc}", 2) from None
    if not found:
        raise fail(f"kranj: ni računa {email}. / No account {email}.")
    out(f"Geslo za {email} je spremenjeno; odprte seje so zaprte. / Password changed; open sessions ended.")


def _set_active(email: str, active: bool) -> None:
    if not _accounts_run(Settings(), lambda store: store.set_active(email, active)):
        raise fail(f"kranj: ni računa {email}. / No account {email}.")


@staff_app.command("disable")
def staff_disable(email: Annotated[str, typer.Option(help="The account's email address.")]) -> None:
    """Disable an account: it can no longer log in, and its sessions end at once."""
    _set_active(email, False)
    out(f"Račun {email} je onemogočen; seje so zaprte. / Account {email} disabled; sessions ended.")


@staff_app.command("enable")
def staff_enable(email: Annotated[str, typer.Option(help="The account's email address.")]) -> None:
    """Enable a disabled account again."""
    _set_active(email, True)
    out(f"Račun {email} je spet omogočen. / Account {email} enabled.")


@staff_app.command("list")
def staff_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The staff accounts (never their password hashes)."""
    accounts = _accounts_run(Settings(), lambda store: store.list_accounts())
    if as_json:
        out(json.dumps([asdict(a) for a in accounts], ensure_ascii=False, indent=2, default=_json_value))
        return
    if not accounts:
        out("Ni računov. / No accounts.")
        return
    now = clock.now()
    for a in accounts:
        state = "active" if a.active else "disabled"
        if a.locked_until and a.locked_until > now:
            state += f", locked until {_short(a.locked_until)}"
        out(f"{a.email:<32} {a.role:<10} {_scope(a.role, a.ks)[:30]:<30} {state:<10} last login {_short(a.last_login_at)}")


# --------------------------------------------------------------------------------------
# kranj docs
# --------------------------------------------------------------------------------------
@app.command()
def docs(
    check: Annotated[
        bool, typer.Option("--check", help="Only check that the files in docs/ are current; exit 1 if not.")
    ] = False,
) -> None:
    """Write each service's AsyncAPI and OpenAPI document and the combined AsyncAPI document
    (docs/asyncapi/<service>.json, docs/asyncapi/kranj.json, docs/openapi/<service>.json)."""
    from . import docs as documents

    if check:
        outdated = documents.stale()
        for relative in outdated:
            err(f"kranj: docs/{relative} is not current")
        if outdated:
            raise fail("kranj: run `kranj docs` and commit the files")
        out("kranj: the documents in docs/ are current.")
        return
    written = documents.write_all()
    for path in written:
        out(f"wrote {path.relative_to(documents.DOCS_DIR.parent)}")
    out(f"{len(written)} document(s) changed.")


if __name__ == "__main__":  # pragma: no cover
    main()
