"""`kranj dlq list / show / purge / replay`: the dead letters in `kranj.dead`, and the headers they carry."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from shared.dead_letters import DeadLetter, header_text, original_sender, replay_headers
from shared.settings import Settings

from .common import (
    connect,
    err,
    fail,
    out,
)

dlq_app = typer.Typer(
    help="Dead letters: messages that could not be processed (queue kranj.dead).", no_args_is_help=True
)


# --------------------------------------------------------------------------------------
# Walking kranj.dead without losing a message
# --------------------------------------------------------------------------------------
DLQ_SCAN_LIMIT = 100_000  # `show`, `purge` and filtered `list` look at (at most) this many


class DeadScan:
    """Takes dead letters off `kranj.dead` one by one, oldest first, unacknowledged.

    Each message taken is either removed for good by the caller (`remove`: acked) or held.
    When the scan ends, the rest of what was there at its start is taken too, and every held
    message is handed back one by one, oldest first. kranj.dead is a quorum queue, which puts
    a returned message at the back: going once round the whole queue keeps its order (a
    dead letter that arrives during the scan may end up before the ones handed back). A
    classic queue puts each back in its old place, which keeps the order as well. Nothing is
    lost, whatever the caller does in between."""

    def __init__(self, connection: Any, channel: Any, queue: Any) -> None:
        self.connection = connection
        self.channel = channel
        self.queue = queue
        self.total: int = queue.declaration_result.message_count or 0  # what is there now
        self.taken = 0
        self.held: list[Any] = []

    async def take(self) -> Any | None:
        message = await self.queue.get(no_ack=False, fail=False, timeout=10)
        if message is not None:
            self.taken += 1
            self.held.append(message)
        return message

    async def remove(self, message: Any) -> None:
        """Delete `message` (the one just taken) from the queue for good."""
        await message.ack()
        if self.held and self.held[-1] is message:
            self.held.pop()

    async def _hand_back(self) -> None:
        if self.channel.is_closed:
            return  # the broker has them all back already
        while self.held and self.taken < self.total and await self.take() is not None:
            pass  # once round the queue (see the class)
        for message in self.held:
            if self.channel.is_closed:
                break
            await message.nack(requeue=True)
        await self.channel.close()


@contextlib.asynccontextmanager
async def dead_letters(settings: Settings) -> AsyncIterator[DeadScan | None]:
    """A `DeadScan` of `kranj.dead`, or None when the queue does not exist."""
    import aiormq

    from shared.bus import DEAD_QUEUE_NAME

    connection = await connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        try:
            queue = await channel.declare_queue(DEAD_QUEUE_NAME, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            yield None
            return
        scan = DeadScan(connection, channel, queue)
        try:
            yield scan
        finally:
            await scan._hand_back()


# --------------------------------------------------------------------------------------
# kranj dlq list / show
# --------------------------------------------------------------------------------------
async def dlq_peek(settings: Settings, limit: int) -> tuple[list[DeadLetter], int]:
    """Up to `limit` dead letters, oldest first, and how many the queue holds; none is lost."""
    async with dead_letters(settings) as scan:
        if scan is None:
            return [], 0
        items: list[DeadLetter] = []
        while len(items) < min(limit, scan.total):
            message = await scan.take()
            if message is None:
                break
            items.append(DeadLetter.from_message(len(items) + 1, message))
        return items, scan.total


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


async def dlq_show(settings: Settings, wanted: str) -> tuple[DeadLetter, dict[str, Any], bytes] | None:
    """The first dead letter whose CloudEvent id or message id is `wanted`: summary, all
    headers and the body. Nothing is taken off the queue."""
    async with dead_letters(settings) as scan:
        if scan is None:
            return None
        for position in range(1, min(scan.total, DLQ_SCAN_LIMIT) + 1):
            message = await scan.take()
            if message is None:
                break
            item = DeadLetter.from_message(position, message)
            if item.matches([wanted]):
                headers = {k: _plain(v) for k, v in (message.headers or {}).items()}
                return item, headers, bytes(message.body or b"")
        return None


def _plain(value: Any) -> Any:
    """AMQP header values as JSON-friendly values (x-death is a list of tables)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return header_text(value)


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
    async with dead_letters(settings) as scan:
        if scan is None:
            return result
        for position in range(1, min(scan.total, DLQ_SCAN_LIMIT) + 1):
            message = await scan.take()
            if message is None:
                break
            item = DeadLetter.from_message(position, message)
            if item.selected(types, reason) and (not wanted or item.matches(wanted)):
                result.purged.append(item)
                if not dry_run:
                    await scan.remove(message)
        result.kept = len(scan.held)
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


async def dlq_replay(settings: Settings, *, limit: int | None = None, ids: Iterable[str] = ()) -> ReplayResult:
    """Republish dead letters to their original queue; each is acked only after a confirm.

    Target: the original queue through the default exchange (x-kranj-queue, or for broker
    dead-lettering x-first-death-queue); with no known queue, exchange `kranj` with the
    original routing key. Persistent, mandatory, confirmed. A message that cannot be
    republished stays in `kranj.dead`, in its place.
    """
    import aio_pika
    import aiormq

    from shared.bus import EXCHANGE_NAME
    from shared.senders import amqp_user

    wanted = [i for i in ids if i]
    result = ReplayResult()
    own_user = amqp_user(settings.amqp_url)
    async with dead_letters(settings) as scan:
        if scan is None:
            return result
        publish_channel = await scan.connection.channel(publisher_confirms=True, on_return_raises=True)
        # Only what is there now: a replayed message that dies again is not replayed twice.
        budget = scan.total
        if limit is not None and not wanted:
            budget = min(budget, limit)
        for position in range(1, budget + 1):
            if limit is not None and len(result.replayed) + len(result.failed) >= limit:
                break
            message = await scan.take()
            if message is None:
                break
            item = DeadLetter.from_message(position, message)
            label = item.ce_id or item.message_id or f"#{position}"
            if wanted and not item.matches(wanted):
                result.kept += 1
                continue
            if item.queue:
                exchange_name, routing_key, where = "", item.queue, f"queue {item.queue}"
            elif item.routing_key:
                exchange_name, routing_key = EXCHANGE_NAME, item.routing_key
                where = f"exchange {EXCHANGE_NAME} ({item.routing_key})"
            else:
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
                user_id=own_user if original_sender(message) == own_user else None,
            )
            try:
                if publish_channel.is_closed:
                    publish_channel = await scan.connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = (
                    publish_channel.default_exchange
                    if exchange_name == ""
                    else await publish_channel.get_exchange(exchange_name, ensure=False)
                )
                confirmation = await exchange.publish(republished, routing_key, mandatory=True, timeout=10)
                if not isinstance(confirmation, aiormq.spec.Basic.Ack):
                    raise aiormq.exceptions.DeliveryError(None, confirmation)
            except aiormq.exceptions.PublishError:
                result.failed.append((label, f"{where} does not exist (the message was returned)"))
                continue
            except (aiormq.exceptions.AMQPError, TimeoutError) as exc:
                result.failed.append((label, f"not confirmed by the broker: {type(exc).__name__}: {exc}"))
                continue
            await scan.remove(message)
            result.replayed.append((label, where))
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
