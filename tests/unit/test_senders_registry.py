"""The registry of bus senders (shared/senders.py): its defaults, its configuration, and
that deploy/ agrees with it. The broker-side proof is tests/security/test_bus_senders.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.contracts import Rejection
from shared.senders import ORDINARY, SenderRegistry, amqp_user, parse_senders, topic_matches
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = json.loads((ROOT / "deploy/rabbitmq/definitions.json").read_text())
SENDERS_FILE = ROOT / "deploy/rabbitmq/senders.json"
NOTICE = "notify.notice.requested"


def data(**values):
    return SimpleNamespace(**{"ks": ["primskovo"], "topic": "general", "urgency": "normal", **values})


def refused(registry: SenderRegistry, user: str | None, key: str, payload=None) -> str | None:
    try:
        registry.check(user, key, payload if payload is not None else data())
    except Rejection as rejection:
        return rejection.reason
    return None


def test_local_runs_every_service_as_guest_owns_the_facts_but_not_more():
    registry = SenderRegistry.build(amqp_url="amqp://guest:guest@127.0.0.1:5672/")
    for key in ("events.event.published", "booking.booking.confirmed", "surveys.survey.opened",
                "notify.delivery.sent", "booking.room.requested", "bus.message.rejected"):  # fmt: skip
        assert refused(registry, "guest", key) is None, key
        assert "platform fact" in refused(registry, None, key)
        assert "platform fact" in refused(registry, "someone-else", key)
    # The platform's user sends the notices of notify's staff pages, which checked the staff
    # member's right to urgent and city-wide notices (the permission table) before the outbox row.
    assert refused(registry, "guest", NOTICE, data(urgency="urgent", ks=["*"])) is None
    assert refused(registry, None, NOTICE) is None  # an ordinary anonymous notice
    assert 'ks: ["*"]' in refused(registry, None, NOTICE, data(ks=["*"]))


def test_compose_each_service_user_owns_only_its_own_domain():
    registry = SenderRegistry.build(amqp_url="amqp://kranj-notify:x@rabbitmq:5672/kranj")
    assert "kranj-notify" in registry.entries and "guest" not in registry.entries
    assert refused(registry, "kranj-events", "events.event.published") is None
    assert refused(registry, "kranj-events", "booking.room.requested") is None  # events asks booking for rooms
    assert refused(registry, "kranj-booking", "booking.booking.confirmed") is None
    assert refused(registry, "kranj-notify", "events.event.published")
    assert refused(registry, "kranj-booking", "events.registration.confirmed")
    assert refused(registry, "kranj-surveys", "booking.booking.confirmed")
    # notify's own staff notices (its pages checked the permission table); no other service's
    assert refused(registry, "kranj-notify", NOTICE, data(urgency="urgent", ks=["*"])) is None
    for service in ("events", "booking", "surveys"):
        assert "urgent" in refused(registry, f"kranj-{service}", NOTICE, data(urgency="urgent"))
        assert 'ks: ["*"]' in refused(registry, f"kranj-{service}", NOTICE, data(ks=["*"]))


def test_configuration_file_then_variable_and_the_everyone_entry(tmp_path):
    path = tmp_path / "senders.json"
    path.write_text(json.dumps({"komunala": {"urgent": True, "topics": ["utilities"]}}))
    registry = SenderRegistry.build(
        amqp_url="amqp://guest@x/",
        senders_file=path,
        senders=json.dumps({"*": {"ks": ["primskovo", "huje"]}, "mok": {"city_wide": True}}),
    )
    assert refused(registry, "komunala", NOTICE, data(urgency="urgent", topic="utilities")) is None
    assert "topic 'general'" in refused(registry, "komunala", NOTICE, data(urgency="urgent"))
    assert refused(registry, "mok", NOTICE, data(ks=["*"])) is None
    assert "bitnje" in refused(registry, None, NOTICE, data(ks=["bitnje"]))  # anonymous narrowed by "*"
    assert registry.rights("guest").services == "*"  # the default entries stay


@pytest.mark.parametrize(
    "text, words",
    [
        ("[]", "JSON object"),
        ("{", "not JSON"),
        ('{"x": {"ks": ["atlantida"]}}', "atlantida"),
        ('{"x": {"topics": ["gossip"]}}', "gossip"),
        ('{"x": {"city_wide": true, "ks": ["huje"]}}', "city_wide"),
        ('{"x": {"urgnet": true}}', "urgnet"),
        ('{"x": {"services": ["billing"]}}', "services"),
    ],
)
def test_a_wrong_registry_stops_the_start_with_a_reason(text, words):
    with pytest.raises(ValueError, match=words):
        parse_senders(text)
    with pytest.raises(ValueError):
        Settings(_env_file=None, senders=text)


def test_topic_patterns_and_amqp_users():
    assert topic_matches("events.#", "events.event.published")
    assert topic_matches("notify.delivery.*", "notify.delivery.sent")
    assert not topic_matches("notify.delivery.*", "notify.notice.requested")
    assert not topic_matches("events.#", "eventsx.a.b")
    assert amqp_user("amqp://kranj-events:pw@rabbitmq:5672/kranj") == "kranj-events"
    assert amqp_user("amqp://127.0.0.1/") == "guest"
    assert amqp_user("amqp://a%40b:pw@h/") == "a@b"
    assert ORDINARY.urgent is False and ORDINARY.city_wide is False and ORDINARY.fact_patterns() == ()


def test_deploy_gives_every_outside_user_an_entry_and_only_the_notice_command():
    entries = parse_senders(SENDERS_FILE.read_text(), where=str(SENDERS_FILE))
    users = {u["name"] for u in DEFINITIONS["users"]}
    outside = {u for u in users if u.startswith("kranj-outside")}
    assert len(outside) >= 3, "one broker user per outside system"
    assert set(entries) <= users | {"*"}, "an entry for a user the broker does not have"
    assert outside <= set(entries), "every outside user is in the registry (ordinary at least)"
    for entry in entries.values():
        assert entry.fact_patterns() == (), "outside systems publish no platform facts"
    topic = {t["user"]: t for t in DEFINITIONS["topic_permissions"]}
    for user in outside:
        assert topic[user]["write"] == r"^notify\.notice\.requested$", user
    # The platform's own users are in the defaults, not in the file.
    assert not {f"kranj-{s}" for s in ("events", "booking", "surveys", "notify")} & set(entries)
