"""deploy/rabbitmq/definitions.json says exactly what shared/topology.py declares (RabbitMQ
refuses a redeclaration with other arguments), and its users and policies stay sane."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

from shared import bus
from shared.senders import SERVICE_COMMANDS, SERVICE_FACTS, topic_matches

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
RENDER = runpy.run_path(str(ROOT / "deploy" / "rabbitmq" / "render_definitions.py"))
SERVICES = ("events", "booking", "surveys", "notify")
HINT = "deploy/rabbitmq/definitions.json must list every queue of shared/topology.py with the same arguments"


def queues() -> dict[str, dict]:
    return {q["name"]: q for q in DEFINITIONS["queues"]}


def test_queues_and_arguments_match_the_code() -> None:
    found = queues()
    assert found[bus.DEAD_QUEUE_NAME]["arguments"] == bus.DEAD_QUEUE.arguments, HINT
    assert found[bus.REJECTED_QUEUE_NAME]["arguments"] == bus.REJECTED_QUEUE.arguments, HINT
    assert found[bus.DELIVERY_OUTCOMES_QUEUE_NAME]["arguments"] == bus.DELIVERY_OUTCOMES_QUEUE.arguments, HINT
    assert found[bus.DEAD_OVERFLOW_NAME]["arguments"] == bus.DEAD_OVERFLOW_QUEUE.arguments, HINT
    for spec in bus.TOPOLOGY:
        assert spec.name in found, f"{HINT}: {spec.name} is missing"
        assert found[spec.name]["arguments"] == spec.rabbit_queue().arguments, HINT
    assert set(found) == set(bus.iter_topology_queue_names()), HINT


def test_bindings_match_the_code() -> None:
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in DEFINITIONS["bindings"]}
    expected = {
        (bus.DLX_NAME, bus.DEAD_QUEUE_NAME, ""),
        (bus.DEAD_OVERFLOW_NAME, bus.DEAD_OVERFLOW_NAME, ""),
        (bus.EXCHANGE_NAME, bus.REJECTED_QUEUE_NAME, "bus.message.rejected"),
        (bus.EXCHANGE_NAME, bus.DELIVERY_OUTCOMES_QUEUE_NAME, "notify.delivery.*"),
    }
    expected |= {(bus.EXCHANGE_NAME, spec.name, key) for spec in bus.TOPOLOGY for key in spec.bindings}
    assert bindings == expected, HINT


def test_policies_agree_with_the_declared_arguments() -> None:
    policies = {p["name"]: p for p in DEFINITIONS["policies"]}
    quorum = policies["kranj-quorum"]
    args = bus.quorum_arguments()
    assert quorum["definition"] == {
        "delivery-limit": args["x-delivery-limit"],
        "dead-letter-exchange": args["x-dead-letter-exchange"],
        "dead-letter-strategy": args["x-dead-letter-strategy"],
        "overflow": args["x-overflow"],
    }
    for spec in bus.TOPOLOGY:
        assert re.fullmatch(quorum["pattern"].strip("^$"), spec.name), spec.name
    rejected = policies["kranj-rejected"]["definition"]
    assert rejected == {
        "max-length": bus.REJECTED_QUEUE.arguments["x-max-length"],
        "overflow": bus.REJECTED_QUEUE.arguments["x-overflow"],
        "message-ttl": bus.REJECTED_QUEUE.arguments["x-message-ttl"],
    }
    # kranj.dead is bounded by policy (its declared arguments stay as they were), and what
    # it drops goes to kranj.dead.overflow, which drops for good.
    dead = policies["kranj-dead"]
    assert dead["definition"] == bus.dead_policy()
    assert dead["definition"]["dead-letter-exchange"] == bus.DEAD_OVERFLOW_NAME
    assert re.fullmatch(dead["pattern"].strip("^$").replace("\\.", "."), bus.DEAD_QUEUE_NAME)
    assert not re.search(dead["pattern"], bus.DEAD_OVERFLOW_NAME)
    assert "x-dead-letter-exchange" not in bus.DEAD_OVERFLOW_QUEUE.arguments
    exchanges = {e["name"]: e for e in DEFINITIONS["exchanges"]}
    assert exchanges[bus.DEAD_OVERFLOW_NAME]["type"] == "fanout"


def _by_user(section: str) -> dict[str, dict]:
    return {p["user"]: p for p in DEFINITIONS[section]}


def test_service_users_have_least_privilege() -> None:
    """Each service configures and reads only its own queues, writes to `kranj` only its own
    routing keys and binds only its own binding keys (tests/security/test_broker_privileges.py
    proves it against the broker)."""
    permissions, topics = _by_user("permissions"), _by_user("topic_permissions")
    shared_names = [bus.EXCHANGE_NAME, bus.DLX_NAME, bus.DEAD_QUEUE_NAME, bus.DEAD_OVERFLOW_NAME, bus.REJECTED_QUEUE_NAME]
    for service in SERVICES:
        user = f"kranj-{service}"
        expected = bus.service_permissions(service)
        assert {k: permissions[user][k] for k in ("configure", "write", "read")} == {
            k: expected[k] for k in ("configure", "write", "read")
        }, f"{user}: regenerate from shared.topology.service_permissions"
        assert topics[user]["exchange"] == bus.EXCHANGE_NAME
        assert (topics[user]["write"], topics[user]["read"]) == (expected["topic_write"], expected["topic_read"])
        own = [q for q in bus.iter_topology_queue_names() if bus.owned_by(service, q)]
        others = [q for q in bus.iter_topology_queue_names() if q not in own]
        configure, read = permissions[user]["configure"], permissions[user]["read"]
        for name in own:
            assert re.search(configure, name) and re.search(read, name), (user, name)
        for name in [*others, *shared_names, "amq.default", "amq.topic", "amq.gen-x"]:
            assert not re.search(configure, name), (user, name)
        for name in others + [bus.DLX_NAME, bus.DEAD_QUEUE_NAME, bus.DEAD_OVERFLOW_NAME]:
            assert not re.search(read, name), (user, name)
        assert not re.search(permissions[user]["write"], bus.DEAD_QUEUE_NAME)
        # Topic permissions: its own facts, nobody else's; never a binding of `#` or `*.*.*`.
        keys = {
            "events.event.published", "events.registration.confirmed", "booking.booking.confirmed",
            "booking.room.requested", "surveys.survey.opened", "notify.delivery.sent",
            "notify.notice.requested", "bus.message.rejected",
        }  # fmt: skip
        for key in keys:
            own = (*SERVICE_FACTS[service], *SERVICE_COMMANDS.get(service, ()))  # notify: its staff notices
            allowed = any(topic_matches(p, key) for p in own)
            assert bool(re.search(topics[user]["write"], key)) == allowed, (user, key)
        for key in ("#", "*.*.*", "*.#", "events.#", "notify.#"):
            assert not re.search(topics[user]["read"], key), (user, key)


def test_outside_users_publish_notice_requests_only() -> None:
    permissions, topics = _by_user("permissions"), _by_user("topic_permissions")
    outside = [u["name"] for u in DEFINITIONS["users"] if u["name"].startswith("kranj-outside")]
    assert outside
    for user in outside:
        assert (permissions[user]["configure"], permissions[user]["write"], permissions[user]["read"]) == (
            "^$", "^kranj$", "^$"
        )
        assert (topics[user]["write"], topics[user]["read"]) == ("^notify\\.notice\\.requested$", "^$")


def test_no_passwords_in_the_repository_and_rendering_hashes_them() -> None:
    assert all(set(u) <= {"name", "tags"} for u in DEFINITIONS["users"])
    rendered = RENDER["render"](DEFINITIONS, {u["name"]: "example" for u in DEFINITIONS["users"]})
    for user in rendered["users"]:
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert len(user["password_hash"]) == 48  # base64 of 4-byte salt + 32-byte digest
    assert RENDER["password_variable"]("kranj-outside") == "RABBITMQ_PASSWORD_KRANJ_OUTSIDE"
    try:
        RENDER["render"](DEFINITIONS, {})
    except KeyError as exc:
        assert "RABBITMQ_PASSWORD_KRANJ_EVENTS" in str(exc)
    else:
        raise AssertionError("a user without a password must be an error")
