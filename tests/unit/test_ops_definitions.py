"""deploy/rabbitmq/definitions.json says exactly what shared/bus.py declares (RabbitMQ
refuses a redeclaration with other arguments), and its users and policies stay sane."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

from shared import bus

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
RENDER = runpy.run_path(str(ROOT / "deploy" / "rabbitmq" / "render_definitions.py"))
HINT = "deploy/rabbitmq/definitions.json must list every queue of shared/bus.py with the same arguments"


def queues() -> dict[str, dict]:
    return {q["name"]: q for q in DEFINITIONS["queues"]}


def test_queues_and_arguments_match_the_code() -> None:
    found = queues()
    assert found[bus.DEAD_QUEUE_NAME]["arguments"] == bus.DEAD_QUEUE.arguments, HINT
    assert found[bus.REJECTED_QUEUE_NAME]["arguments"] == bus.REJECTED_QUEUE.arguments, HINT
    assert found[bus.DELIVERY_OUTCOMES_QUEUE_NAME]["arguments"] == bus.DELIVERY_OUTCOMES_QUEUE.arguments, HINT
    for spec in bus.TOPOLOGY:
        assert spec.name in found, f"{HINT}: {spec.name} is missing"
        assert found[spec.name]["arguments"] == spec.rabbit_queue().arguments, HINT
    assert set(found) == set(bus.iter_topology_queue_names()), HINT


def test_bindings_match_the_code() -> None:
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in DEFINITIONS["bindings"]}
    expected = {
        (bus.DLX_NAME, bus.DEAD_QUEUE_NAME, ""),
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


def test_every_service_may_declare_every_topology_queue() -> None:
    """Every service declares the whole topology at start (shared.bus.declare_topology)."""
    names = [*bus.iter_topology_queue_names(), bus.EXCHANGE_NAME, bus.DLX_NAME]
    for permission in DEFINITIONS["permissions"]:
        if permission["user"].startswith("kranj-outside"):  # outside systems declare nothing
            continue
        for name in names:
            assert re.search(permission["configure"], name), (permission["user"], name)
            assert re.search(permission["write"], name), (permission["user"], name)


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
