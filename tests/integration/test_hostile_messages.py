"""Hostile message bodies on every queue a service consumes (issue #8), against the real broker.

All four services run in-process in one vhost. Hypothesis generates, per queue, bodies no
consumer can accept: broken JSON and bytes that are not UTF-8, valid JSON of the wrong shape,
envelopes whose `data` has the wrong types, an unknown KS, strings of a megabyte and more,
junk nested thousands deep, a `datacontenttype` that is not JSON, a missing or empty `id`,
lone surrogates and NUL characters. They are published with the routing keys bound to the
queue, some with no AMQP properties at all (`publish_bare`), some with a wrong content type.

Each must end in `kranj.dead` with an `x-kranj-reason` (and a `bus.message.rejected`),
nothing may stay in a service queue, and afterwards a valid message on every queue is still
processed: no handler crashed its consumer. Last, bodies the schema accepts but with any text
at all in their free-text fields are each processed or refused with a reason by their
handler, never by a crash ("handler failed").

The bodies are generated before the services run (derandomized, no shrinking) and published
in one batch, so the file stays well inside its time budget.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aio_pika
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from support.rabbit import publish_bare
from support.settings import make_settings, wait_until
from support.times import utc_iso

from services.booking.app import create_app as create_booking
from services.events.app import create_app as create_events
from services.notify.app import create_app as create_notify
from services.surveys.app import create_app as create_surveys
from shared.bus import DEAD_QUEUE_NAME, HEADER_QUEUE, HEADER_REASON, REJECTED_QUEUE_NAME, TOPOLOGY, Consumer
from shared.contracts import KS_SLUGS, Rejection, parse_data, parse_envelope
from shared.contracts.envelope import MAX_BODY_BYTES
from shared.models import ProcessedMessage, utcnow
from shared.senders import amqp_user

pytestmark = pytest.mark.integration

EXAMPLES_PER_KIND = 2  # x 10 kinds = 20 bodies per queue, 160 in all
ODD_PER_QUEUE = 4  # schema-valid bodies with odd text, per queue
SOURCE = "/hostile/tests"
NESTED = "__nested__"


# --------------------------------------------------------------------------------------
# One valid message per consumed queue (the "still processed afterwards" check, and the
# base that the envelope-level strategies spoil).
# --------------------------------------------------------------------------------------
def _later(days: int, hour: int) -> str:
    day = (utcnow() + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return day.isoformat().replace("+00:00", "Z")


def valid_data() -> dict[str, tuple[str, dict[str, Any]]]:
    """queue -> (routing key, data) of a message the queue's consumer processes."""
    event = {
        "event_id": "ev-hostile",
        "ks": "primskovo",
        "title": "Delavnica",
        "description": "Kaj potrebujemo?",
        "starts_at": _later(9, 17),
        "ends_at": _later(9, 19),
        "venue": "Dom KS Primskovo",
        "url": "http://127.0.0.1:8001/events/ev-hostile",
    }
    booking = {
        "booking_id": "b-hostile",
        "room_id": "ks-primskovo",
        "room_name": "Dom KS Primskovo",
        "ks": "primskovo",
        "starts_at": _later(10, 17),
        "ends_at": _later(10, 19),
        "purpose": "Vaje pevskega zbora",
        "attendees": 12,
        "status": "confirmed",
        "requester": {"name": "Marija Kranjc", "email": "marija@example.si", "language": "sl"},
    }
    return {
        "notify.on-notice-requested": (
            "notify.notice.requested",
            {"title": "Izklop vode", "body": "V torek ne bo vode.", "ks": ["primskovo"]},
        ),
        "notify.on-event-published": ("events.event.published", event),
        "notify.on-booking-changed": ("booking.booking.confirmed", booking),
        "events.on-booking-changed": ("booking.booking.confirmed", booking),
        "events.on-room-updated": (
            "booking.room.updated",
            {"room_id": "ks-primskovo", "ks": "primskovo", "name": "Dom KS Primskovo", "capacity": 40},
        ),
        "notify.on-surveys": (
            "surveys.survey.opened",
            {
                "survey_id": "s-hostile",
                "ks": "primskovo",
                "title": "Potrebe po prostoru",
                "url": "http://127.0.0.1:8003/surveys/s-hostile",
                "print_url": "http://127.0.0.1:8003/surveys/s-hostile/print",
                "opens_at": _later(0, 8),
                "question_count": 4,
            },
        ),
        "notify.on-registrations": (
            "events.registration.confirmed",
            {
                **{k: event[k] for k in ("event_id", "ks", "title", "starts_at", "ends_at", "venue", "url")},
                "registration_id": "r-hostile",
                "cancel_url": "http://127.0.0.1:8001/registrations/r-hostile/cancel?token=x",
                "status": "confirmed",
                "channel": "web",
                "registrant": {"name": "Franc Novak", "phone": "+38640111222", "language": "sl"},
            },
        ),
        "notify.on-event-changed": (
            "events.event.updated",
            {**event, "status": "published", "changes": ["venue"], "previous_venue": "Stara šola"},
        ),
        "booking.on-room-requested": (
            "booking.room.requested",
            {
                "request_id": "ev-hostile",
                "room_id": "ks-primskovo",
                "starts_at": _later(11, 16),
                "ends_at": _later(11, 18),
                "purpose": "Delavnica",
                "organiser": "KS Primskovo",
            },
        ),
        **{
            f"{service}.on-export-requested": (
                "notify.export.requested",
                {"request_id": "x-hostile", "emails": ["marija@example.si"]},
            )
            for service in ("events", "booking", "surveys")
        },
        "notify.on-export-answered": (
            "events.export.answered",
            {"request_id": "x-hostile", "service": "events", "document": {"registrations": []}},
        ),
    }


def _also_ignored(routing_key: str, consumers: dict[str, Any]) -> bool:
    """Does `routing_key` reach a queue whose consumer does not handle it (acks and ignores)?"""
    for consumer in consumers.values():
        bound = any(topic_matches(b, routing_key) for b in consumer.spec.bindings)
        if bound and routing_key not in {h.message_type.routing_key for h in consumer.handles}:
            return True
    return False


def envelope(routing_key: str, data: Any, **extra: Any) -> dict[str, Any]:
    body = {
        "specversion": "1.0",
        "id": f"valid-{routing_key}",
        "source": SOURCE,
        "type": f"si.kranj.{routing_key}.v1",
        "time": utc_iso(),
        "datacontenttype": "application/json",
        "data": data,
    }
    body.update(extra)
    return body


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` one word, `#` zero or more."""
    regex = re.escape(pattern).replace(r"\*", r"[^.]+").replace(r"\#", r".*")
    return re.fullmatch(regex, key) is not None


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


@dataclass(frozen=True)
class Hostile:
    kind: str
    routing_key: str
    body: bytes
    publish: str  # "bare" (no AMQP properties at all), "plain" (text/plain), "json", "cloudevents"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def hostile_bodies(keys: list[str], base: tuple[str, dict[str, Any]]) -> list[st.SearchStrategy]:
    """One strategy per kind of hostile body (each kind gets its own examples)."""
    base_key, base_data = base
    key = st.sampled_from(keys)

    def spoil(mutate: Any) -> st.SearchStrategy:
        """A valid envelope of this queue's type, spoiled by `mutate(env, draw)`."""

        @st.composite
        def build(draw: Any) -> tuple[str, bytes]:
            env = envelope(base_key, copy.deepcopy(base_data), id=f"h-{draw(st.uuids())}")
            kind = mutate(env, draw)
            nested = env.pop(NESTED, None)
            # bad text travels as JSON escapes ("\\ud800", "\\u0000"): valid UTF-8, valid JSON
            body = json.dumps(env).encode() if kind == "bad-text" else _dumps(env)
            if nested is not None:
                body = body.replace(f'"{NESTED}"'.encode(), nested.encode(), 1)
            return kind, body

        return build()

    def wrong_data(env: dict, draw: Any) -> str:
        env["data"] = draw(JSON_VALUES)
        return "wrong-data"

    def wrong_field_types(env: dict, draw: Any) -> str:
        for field_name in draw(st.lists(st.sampled_from(sorted(env["data"])), min_size=1, max_size=3, unique=True)):
            env["data"][field_name] = draw(JSON_VALUES)
        return "wrong-data"

    def unknown_ks(env: dict, draw: Any) -> str:
        slug = draw(st.text(min_size=1, max_size=30).filter(lambda s: s not in KS_SLUGS and s != "*"))
        env["data"]["ks"] = [slug] if isinstance(env["data"].get("ks"), list) else slug
        return "unknown-ks"

    def huge_string(env: dict, draw: Any) -> str:
        size = draw(st.sampled_from([1_000_000, MAX_BODY_BYTES + 1, 3 * MAX_BODY_BYTES]))
        where = draw(st.sampled_from(["data-field", "id", "source", "extension"]))
        text = draw(st.sampled_from(["x", "č", "<script>"])) * (size // 3 + 1)
        if where == "data-field":
            env["data"][draw(st.sampled_from(sorted(env["data"])))] = text
        elif where == "extension":
            env["kranjjunk"] = text
        else:
            env[where] = text
        return "huge"

    def nested_junk(env: dict, draw: Any) -> str:
        depth = draw(st.sampled_from([40, 300, 5000, 100_000]))
        opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        # Written as text: json.dumps itself cannot go that deep.
        env["data"][draw(st.sampled_from(sorted(env["data"])))] = NESTED
        env[NESTED] = opening * depth + '"dno"' + closing * depth
        return "nested"

    def bad_content_type(env: dict, draw: Any) -> str:
        env["datacontenttype"] = draw(st.sampled_from(["text/xml", "application/octet-stream", "text/plain", ""]))
        return "content-type"

    def missing_id(env: dict, draw: Any) -> str:
        choice = draw(st.sampled_from(["absent", "empty", "null", "number", "list"]))
        if choice == "absent":
            del env["id"]
        else:
            env["id"] = {"empty": "", "null": None, "number": 42, "list": ["x"]}[choice]
        return "missing-id"

    def bad_text(env: dict, draw: Any) -> str:
        field_name = draw(st.sampled_from([k for k, v in sorted(env["data"].items()) if isinstance(v, str)]))
        env["data"][field_name] = draw(st.sampled_from(["a\x00b", "\ud800", "x\udfff"]))
        return "bad-text"

    @st.composite
    def broken_json(draw: Any) -> tuple[str, bytes]:
        valid = _dumps(envelope(base_key, base_data))
        choice = draw(st.sampled_from(["truncated", "bytes", "latin-2", "empty"]))
        if choice == "truncated":
            return "broken-json", valid[: draw(st.integers(1, len(valid) - 1))]
        if choice == "latin-2":
            return "broken-json", valid.replace(b'"data"', '"podatki-čćž"'.encode("iso-8859-2"), 1)
        if choice == "empty":
            return "broken-json", b""
        return "broken-json", draw(st.binary(min_size=1, max_size=300))

    @st.composite
    def wrong_shape(draw: Any) -> tuple[str, bytes]:
        value = draw(
            st.one_of(
                JSON_SCALARS,
                st.lists(JSON_VALUES, max_size=5),
                st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6),
            )
        )
        return "wrong-shape", _dumps(value)

    categories = [
        broken_json(),
        wrong_shape(),
        spoil(wrong_data),
        spoil(wrong_field_types),
        spoil(unknown_ks) if "ks" in base_data else spoil(wrong_field_types),
        spoil(huge_string),
        spoil(nested_junk),
        spoil(bad_content_type),
        spoil(missing_id),
        spoil(bad_text),
    ]
    how = st.sampled_from(["bare", "plain", "json", "cloudevents"])
    return [
        st.builds(lambda kind_body, rk, h: Hostile(kind_body[0], rk, kind_body[1], h), category, key, how)
        for category in categories
    ]


def refused(consumer: Consumer, body: bytes) -> bool:
    """Would `consumer` refuse `body`? (Not: process it, or ignore a type it does not take.)"""
    try:
        env = parse_envelope(body)
        handles = consumer.by_type.get(env.type)
        if handles is None:
            consumer._reject_other_major(env)
            return False  # a type this queue does not take: acknowledged and ignored
        parse_data(env, handles.message_type)
    except Rejection:
        return True
    return False


def generate(consumer: Consumer, keys: list[str], base: tuple[str, dict[str, Any]]) -> list[Hostile]:
    found: list[Hostile] = []
    for strategy in hostile_bodies(keys, base):

        @hsettings(
            max_examples=EXAMPLES_PER_KIND,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def collect(item: Hostile) -> None:
            if refused(consumer, item.body):  # the strategies aim at refusals; drop the rare accidental hit
                found.append(item)

        collect()
    return found


STRUCTURAL = {"starts_at", "ends_at", "opens_at", "url", "print_url", "cancel_url", "ks", "status", "channel"}


def odd_but_valid(consumer: Consumer, base: tuple[str, dict[str, Any]]) -> list[tuple[str, bytes]]:
    """Bodies the schema accepts, with any text at all in the free-text fields (control
    characters, astral planes, right-to-left marks, markup): processed or refused with a
    reason by the handler, never a crash."""
    routing_key, data = base
    texts = sorted(k for k, v in data.items() if isinstance(v, str) and k not in STRUCTURAL)
    found: list[tuple[str, bytes]] = []

    @hsettings(
        max_examples=ODD_PER_QUEUE,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.fixed_dictionaries({k: st.text(min_size=1, max_size=60).filter(str.strip) for k in texts}))
    def collect(values: dict[str, str]) -> None:
        body = _dumps(envelope(routing_key, {**data, **values}, id=f"odd-{consumer.spec.name}-{len(found)}"))
        if not refused(consumer, body):
            found.append((routing_key, body))

    collect()
    return found


# --------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------
async def publish(url: str, channel: aio_pika.abc.AbstractChannel, item: Hostile) -> None:
    if item.publish == "bare":
        await publish_bare(url, item.body, routing_key=item.routing_key)
        return
    exchange = await channel.get_exchange("kranj", ensure=False)
    message = aio_pika.Message(
        item.body,
        content_type={"plain": "text/plain; charset=latin-1", "json": "application/json"}.get(
            item.publish, "application/cloudevents+json"
        ),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await exchange.publish(message, routing_key=item.routing_key, mandatory=True)


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def drain(channel: aio_pika.abc.AbstractChannel, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    queue = await channel.declare_queue(name, passive=True)
    taken = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    return taken


async def depth(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    return (await channel.declare_queue(name, passive=True)).declaration_result.message_count or 0


async def test_hostile_bodies_on_every_queue_end_in_kranj_dead_and_consumers_live_on(tmp_path, amqp_url):
    settings = make_settings(tmp_path, amqp_url, log_format="json")
    apps = [create_events(settings), create_booking(settings), create_surveys(settings), create_notify(settings)]
    by_service = {app.state.ctx.service: app.state.ctx for app in apps}
    consumers = {c.spec.name: c for ctx in by_service.values() for c in ctx.bus.consumers}
    assert set(consumers) == {spec.name for spec in TOPOLOGY}, "every queue of TOPOLOGY has its consumer here"
    bases = valid_data()
    assert set(bases) == set(consumers), "a new queue? add a message it processes to valid_data()"

    hostile: list[Hostile] = []
    for name, consumer in sorted(consumers.items()):
        handled = sorted({h.message_type.routing_key for h in consumer.handles})
        keys = [k for k in handled if any(topic_matches(b, k) for b in consumer.spec.bindings)]
        # A key that also reaches a queue whose consumer ignores its type (surveys.export.answered
        # reaches notify.on-surveys, bound to surveys.*.*) would die once, not once per queue.
        keys = [k for k in keys if not _also_ignored(k, consumers)] or keys
        assert keys, name
        items = generate(consumer, keys, bases[name])
        assert len(items) >= 10, f"{name}: only {len(items)} hostile examples"
        hostile += items
    odd = {name: odd_but_valid(consumer, bases[name]) for name, consumer in sorted(consumers.items())}
    kinds = Counter(item.kind for item in hostile)
    assert set(kinds) >= {"broken-json", "wrong-shape", "wrong-data", "unknown-ks", "huge", "nested"}, kinds

    # (queue, body digest) of every dead letter we expect: a key bound to two queues dies twice.
    expected: dict[tuple[str, str], Hostile] = {}
    routed = 0  # one dead letter per message per queue it reached (the same body twice dies twice)
    for item in hostile:
        for spec in TOPOLOGY:
            if any(topic_matches(b, item.routing_key) for b in spec.bindings):
                expected[(spec.name, digest(item.body))] = item
                routed += 1

    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        connection = await aio_pika.connect(amqp_url)
        stack.push_async_callback(connection.close)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        for item in hostile:
            await publish(amqp_url, channel, item)

        await wait_until(
            lambda: _at_least(channel, routed),
            timeout=60,
            message=f"{routed} dead letters in kranj.dead",
        )
        # Nothing stuck or redelivering in any service queue.
        for spec in TOPOLOGY:
            assert await depth(channel, spec.name) == 0, spec.name

        dead = await drain(channel, DEAD_QUEUE_NAME)
        got: dict[tuple[str, str], str] = {}
        for message in dead:
            headers = message.headers or {}
            reason = headers.get(HEADER_REASON)
            assert isinstance(reason, str) and reason.strip(), f"no reason: {headers} {message.body[:300]!r}"
            got[(str(headers.get(HEADER_QUEUE)), digest(message.body))] = reason
        missing = [(q, expected[(q, d)].kind) for q, d in expected if (q, d) not in got]
        assert not missing, f"not dead-lettered: {missing}"
        assert set(got) <= set(expected), "only what we sent is in kranj.dead"
        for key, item in expected.items():
            reason = got[key]
            if item.kind == "huge" and len(item.body) > MAX_BODY_BYTES:
                assert "too large" in reason, reason
            if item.kind == "broken-json":
                assert re.search(r"not JSON|not UTF-8|JSON object", reason), reason
            if item.kind == "missing-id":
                assert "id" in reason, reason
            if item.kind == "unknown-ks":
                assert "ks" in reason, reason
        # A bus.message.rejected each (published right after its dead letter).
        await wait_until(
            lambda: _at_least(channel, routed, REJECTED_QUEUE_NAME),
            timeout=30,
            message=f"{routed} bus.message.rejected in kranj.rejected",
        )
        rejected = [json.loads(m.body) for m in await drain(channel, REJECTED_QUEUE_NAME)]
        assert {r["type"] for r in rejected} == {"si.kranj.bus.message.rejected.v1"}
        assert all(r["data"]["reason"] and r["data"]["queue"] in consumers for r in rejected)

        # Every consumer lives on: a valid message on each queue is still processed.
        # Valid facts come from the platform's own broker user, as the outbox relays send them
        # (shared/senders.py); the hostile ones above were refused for their shape first.
        platform = amqp_user(amqp_url)
        exchange = await channel.get_exchange("kranj", ensure=False)
        for routing_key, data in dict(bases.values()).items():  # one per key (booking.booking.* feeds two queues)
            body = envelope(routing_key, data, id=f"after-{routing_key}")
            await exchange.publish(
                aio_pika.Message(_dumps(body), delivery_mode=aio_pika.DeliveryMode.PERSISTENT, user_id=platform),
                routing_key=routing_key,
                mandatory=True,
            )
        for name, consumer in consumers.items():
            db = by_service[consumer.spec.service].db
            key = (name, SOURCE, f"after-{bases[name][0]}")

            async def processed(db=db, key=key) -> bool:
                async with db.session() as session:
                    return await session.get(ProcessedMessage, key) is not None

            await wait_until(processed, timeout=30, message=f"a valid message processed on {name}")
        assert await depth(channel, DEAD_QUEUE_NAME) == 0, "the valid messages were not dead-lettered"

        # Odd but valid text: each is processed, or refused by its handler with a reason; none crashes one.
        for items in odd.values():
            for routing_key, body in items:
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, user_id=platform),
                    routing_key=routing_key,
                    mandatory=True,
                )

        async def settled() -> bool:
            done = await depth(channel, DEAD_QUEUE_NAME)
            for name, items in odd.items():
                db = by_service[consumers[name].spec.service].db
                async with db.session() as session:
                    for _, body in items:
                        key = (name, SOURCE, json.loads(body)["id"])
                        done += await session.get(ProcessedMessage, key) is not None
            return done >= sum(len(items) for items in odd.values())

        await wait_until(settled, timeout=60, message="every odd-but-valid message processed or refused")
        for message in await drain(channel, DEAD_QUEUE_NAME):
            reason = str((message.headers or {}).get(HEADER_REASON, ""))
            assert reason and not reason.startswith("handler failed"), f"a handler crashed: {reason[:300]}"


async def _at_least(channel: aio_pika.abc.AbstractChannel, count: int, queue: str = DEAD_QUEUE_NAME) -> bool:
    return await depth(channel, queue) >= count
