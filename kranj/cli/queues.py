"""`kranj queues migrate`: give existing queues the arguments the code declares now.

RabbitMQ refuses to redeclare a queue with other arguments, and a queue's type cannot be
changed in place. Until 2026-12 the four queues that belong to no service (kranj.dead,
kranj.dead.overflow, kranj.rejected, notify.delivery-outcomes) were classic queues, which
live on one node of a cluster; now every queue is a quorum queue (shared/topology.py). On a
broker made before that, this command moves each queue whose arguments differ, without
losing a message:

1. a quorum queue `<name>.migrating` is declared with the new arguments and bound like the
   old queue, and only then the old queue is unbound: a message routed in between lands in
   both (at most a repeat, which consumers drop by its id — never a loss);
2. the old queue's messages are moved to it one by one (published with confirms, then
   acked), with their headers and properties and in their order (what arrives meanwhile
   may come between them); a publisher's user_id the broker would not let
   us repeat is kept in `x-kranj-sender`, as `kranj dlq` reads it;
3. the old queue is deleted (once empty), declared again with the new arguments and
   bound, `<name>.migrating` unbound, and its messages moved back; then it is deleted.

Each step can be repeated: a run that was interrupted is finished by the next one. A queue
a consumer reads is left alone (stop its service first), and so is one that does not exist
(the broker's definitions or the services create it). docker-compose runs it before
`rabbitmq-init` imports the definitions (docs/operations.md, "Upgrading the queues").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from shared.dead_letters import HEADER_SENDER
from shared.settings import Settings

from .common import connect, err, fail, out

queues_app = typer.Typer(help="The broker's queues: bring them to what the code declares.", no_args_is_help=True)

MIGRATING_SUFFIX = ".migrating"


@dataclass
class Migration:
    name: str
    state: str = "ok"  # ok | missing | migrated | busy
    moved: int = 0
    notes: list[str] = field(default_factory=list)


async def _exists(connection: Any, name: str) -> Any | None:
    """The queue's declaration result (a passive declaration), or None when it is missing."""
    import aiormq

    channel = await connection.channel(publisher_confirms=False)
    try:
        declared = await channel.declare_queue(name, passive=True)
        return declared.declaration_result
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None
    finally:
        if not channel.is_closed:
            await channel.close()


async def _matches(connection: Any, name: str, arguments: dict[str, Any]) -> bool:
    """Does the existing queue `name` have exactly these arguments? (RabbitMQ answers a
    redeclaration with other arguments, or another type, with PRECONDITION_FAILED.)"""
    import aiormq

    channel = await connection.channel(publisher_confirms=False)
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
        return True
    except aiormq.exceptions.ChannelPreconditionFailed:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()


async def _move(connection: Any, source: str, target: str, own_user: str) -> int:
    """Move every message of `source` to `target` (default exchange, confirmed, persistent,
    headers and properties kept); each is acked on `source` only after `target` has it."""
    import aio_pika
    import aiormq

    moved = 0
    get_channel = await connection.channel(publisher_confirms=False)
    put_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        queue = await get_channel.declare_queue(source, passive=True)
        while True:
            message = await queue.get(no_ack=False, fail=False, timeout=10)
            if message is None:
                return moved
            headers = dict(message.headers or {})
            sender = message.user_id or ""
            keep_user = sender == own_user
            if sender and not keep_user:
                headers.setdefault(HEADER_SENDER, sender)  # the broker lets us publish only as ourselves
            copy = aio_pika.Message(
                message.body,
                headers=headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                priority=message.priority,
                correlation_id=message.correlation_id,
                reply_to=message.reply_to,
                expiration=message.expiration,
                message_id=message.message_id,
                timestamp=message.timestamp,
                type=message.type,
                app_id=message.app_id,
                user_id=sender if keep_user else None,
            )
            confirmation = await put_channel.default_exchange.publish(copy, target, mandatory=True, timeout=30)
            if not isinstance(confirmation, aiormq.spec.Basic.Ack):
                await message.nack(requeue=True)
                raise RuntimeError(f"the broker did not confirm a message moved to {target}")
            await message.ack()
            moved += 1
    finally:
        for channel in (put_channel, get_channel):
            if not channel.is_closed:
                await channel.close()


async def _bind(connection: Any, name: str, exchange: str, keys: tuple[str, ...], *, bind: bool) -> None:
    channel = await connection.channel(publisher_confirms=False)
    try:
        queue = await channel.declare_queue(name, passive=True)
        for key in keys:
            if bind:
                await queue.bind(exchange, routing_key=key)
            else:
                await queue.unbind(exchange, routing_key=key)
    finally:
        if not channel.is_closed:
            await channel.close()


async def _declare(connection: Any, name: str, arguments: dict[str, Any]) -> None:
    channel = await connection.channel(publisher_confirms=False)
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    finally:
        if not channel.is_closed:
            await channel.close()


async def _delete_if_empty(connection: Any, name: str) -> None:
    """Delete a queue that is unbound and has been emptied (quorum queues do not support
    `if-empty`, so the count is checked just before)."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        queue = await channel.declare_queue(name, passive=True)
        left = queue.declaration_result.message_count or 0
        if left:
            raise RuntimeError(f"{name} still holds {left} message(s); run `kranj queues migrate` again")
        await channel.queue_delete(name)
    finally:
        if not channel.is_closed:
            await channel.close()


async def migrate_queue(
    connection: Any, name: str, arguments: dict[str, Any], exchange: str, keys: tuple[str, ...], own_user: str
) -> Migration:
    """Bring one queue to `arguments` (the steps in this module's docstring)."""
    result = Migration(name)
    temporary = name + MIGRATING_SUFFIX
    found = await _exists(connection, name)
    left_over = await _exists(connection, temporary)  # an interrupted run
    if found is None and left_over is None:
        result.state = "missing"
        return result
    if found is not None and left_over is None and await _matches(connection, name, arguments):
        return result
    if found is not None and found.consumer_count:
        result.state = "busy"
        result.notes.append(f"{found.consumer_count} consumer(s) read it: stop them first")
        return result
    result.state = "migrated"
    if found is not None and not await _matches(connection, name, arguments):
        await _declare(connection, temporary, arguments)
        await _bind(connection, temporary, exchange, keys, bind=True)
        await _bind(connection, name, exchange, keys, bind=False)
        result.moved += await _move(connection, name, temporary, own_user)
        await _delete_if_empty(connection, name)
    # The queue under its own name, with the new arguments, and what waited beside it.
    await _declare(connection, name, arguments)
    await _bind(connection, name, exchange, keys, bind=True)
    if await _exists(connection, temporary) is not None:
        await _bind(connection, temporary, exchange, keys, bind=False)
        await _move(connection, temporary, name, own_user)
        await _delete_if_empty(connection, temporary)
    return result


async def migrate_queues(settings: Settings, names: list[str] | None = None) -> list[Migration]:
    from shared.senders import amqp_user
    from shared.topology import bindings

    connection = await connect(settings)
    own_user = amqp_user(settings.amqp_url)
    results = []
    async with connection:
        for queue, exchange, keys in bindings():
            if names and queue.name not in names:
                continue
            arguments = dict(queue.arguments or {})
            results.append(await migrate_queue(connection, queue.name, arguments, exchange.name, keys, own_user))
    return results


@queues_app.command("migrate")
def queues_migrate_command(
    queue: Annotated[list[str] | None, typer.Option("--queue", help="Only this queue (repeatable).")] = None,
) -> None:
    """Give each queue the arguments the code declares (classic -> quorum), keeping every message."""
    results = asyncio.run(migrate_queues(Settings(), queue))
    for r in results:
        if r.state == "migrated":
            out(f"{r.name}: migrated ({r.moved} message(s) moved)")
        elif r.state == "busy":
            err(f"{r.name}: not migrated — {'; '.join(r.notes)}")
        elif r.state == "missing":
            out(f"{r.name}: not there yet (the definitions or the services create it)")
        else:
            out(f"{r.name}: up to date")
    if any(r.state == "busy" for r in results):
        raise fail("kranj queues migrate: some queues could not be migrated", code=1)
