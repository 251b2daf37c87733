"""Who sent a message decides what it may do: the registry of bus senders and their rights.

The only sender identity the platform trusts is the AMQP `user_id` property: RabbitMQ
refuses a publish whose `user_id` is not the connection's own user, so a message carrying
one provably came from that broker user. The CloudEvent `source` is self-declared and
proves nothing. A message with no `user_id` is anonymous.

Rights (one entry per broker user, configured by `KRANJ_SENDERS` / `KRANJ_SENDERS_FILE`):

    ks         "*" or a list of KS slugs the sender may address (default "*")
    topics     "*" or a list of notice topics it may use (default "*")
    urgent     may send `urgency: urgent` (sent during quiet hours) (default false)
    city_wide  may send `ks: ["*"]` (every KS) (default false)
    services   platform services whose facts it publishes: "*" or e.g. ["events"] (default [])
    facts      further routing-key patterns it may publish (AMQP topic syntax: `*` one word,
               `#` any number of words), e.g. ["booking.room.requested"] (default [])

The entry `"*"` holds the rights of every sender not in the registry, anonymous messages
included; by default (CONTRACT.md: a plain message keeps working for ordinary notices) that
is an ordinary notice: any KS and topic, not urgent, not city-wide, no platform facts.

Defaults, before the configuration is applied (a configured entry replaces the default
entry of the same user as a whole):
- `kranj-events`, `kranj-booking`, `kranj-surveys`, `kranj-notify` (compose: one broker
  user per service) publish their own domain's facts; `kranj-notify` also sends the notices
  staff write on its pages (`/osebje/obvestila`), urgent and city-wide included: the page
  checked the staff member's rights (the permission table) before writing the outbox row;
- the user of this process's own `KRANJ_AMQP_URL`, unless it is one of those four, is the
  user every service shares (local runs: `guest`) and has the rights of all four.

This module decides; the bus consumer (shared/bus.py) asks it about every message it is
about to handle and dead-letters what is refused, with the reason.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .contracts import ALL_KS, KS_SLUGS, TOPICS, Rejection

ANYONE = "*"  # the registry key of every sender without an entry (anonymous messages included)
SERVICE_NAMES: tuple[str, ...] = ("events", "booking", "surveys", "notify")

# What each platform service publishes on `kranj` (the outbox relay of that service). A
# routing key matched by none of these is no platform fact: only an outside command.
SERVICE_FACTS: dict[str, tuple[str, ...]] = {
    "events": ("events.#", "booking.room.requested", "booking.room.released", "bus.message.rejected"),
    "booking": ("booking.#", "bus.message.rejected"),
    "surveys": ("surveys.#", "bus.message.rejected"),
    "notify": ("notify.delivery.*", "notify.export.requested", "bus.message.rejected"),
}
# Commands that outside systems publish (CONTRACT.md). What they may ask is limited by the
# sender's `ks`, `topics`, `urgent` and `city_wide` rights, read from the message's data.
OPEN_COMMANDS: frozenset[str] = frozenset({"notify.notice.requested"})
# Commands a platform service publishes on `kranj` besides its facts (its broker user's topic
# write permission, shared/topology.py): notify's staff pages send a staff member's notice as
# `notify.notice.requested` from notify's own outbox, so every notice takes the one fan-out path.
SERVICE_COMMANDS: dict[str, tuple[str, ...]] = {"notify": ("notify.notice.requested",)}
# What a service's own notices may ask beyond an ordinary one. Notify's staff pages check the
# permission table (shared/permissions.py: `notify.notices.urgent`, `notify.notices.city-wide`,
# the staff member's KS) before they write the outbox row, so its broker user carries those rights.
SERVICE_NOTICE_RIGHTS: dict[str, dict[str, bool]] = {"notify": {"urgent": True, "city_wide": True}}


class SenderRights(BaseModel):
    """One entry of the registry (the JSON shape of `KRANJ_SENDERS`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(default="", description="Who this is (for people reading the configuration).")
    ks: Literal["*"] | list[str] = "*"
    topics: Literal["*"] | list[str] = "*"
    urgent: bool = False
    city_wide: bool = False
    services: Literal["*"] | list[Literal["events", "booking", "surveys", "notify"]] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)

    @field_validator("ks")
    @classmethod
    def _known_ks(cls, value: Any) -> Any:
        if isinstance(value, list):
            unknown = [k for k in value if k not in KS_SLUGS]
            if unknown:
                raise ValueError(f"unknown KS {', '.join(map(repr, unknown))}; use slugs of CONTRACT.md or \"*\"")
        return value

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, value: Any) -> Any:
        if isinstance(value, list):
            unknown = [t for t in value if t not in TOPICS]
            if unknown:
                raise ValueError(f"unknown topic {', '.join(map(repr, unknown))}; one of {', '.join(TOPICS)} or \"*\"")
        return value

    @field_validator("facts")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            words = pattern.split(".")
            if not pattern or any(not w for w in words):
                raise ValueError(f"not a routing-key pattern: {pattern!r} (e.g. events.event.published, events.#)")
        return value

    @model_validator(mode="after")
    def _city_wide_means_every_ks(self) -> SenderRights:
        if self.city_wide and self.ks != "*":
            raise ValueError('city_wide (ks ["*"]) needs "ks": "*"')
        return self

    def fact_patterns(self) -> tuple[str, ...]:
        services = SERVICE_NAMES if self.services == "*" else self.services
        return tuple(p for s in services for p in SERVICE_FACTS[s]) + tuple(self.facts)


ORDINARY = SenderRights(description="anyone: ordinary notices only")


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more words."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


def amqp_user(url: str) -> str:
    """The broker user an AMQP URL logs in as (aio-pika's default is `guest`)."""
    username = urllib.parse.urlsplit(url).username
    return urllib.parse.unquote(username) if username else "guest"


def parse_senders(text: str, *, where: str = "KRANJ_SENDERS") -> dict[str, SenderRights]:
    """`{"<broker user>": {rights}, "*": {rights of everyone else}}` -> entries; raises
    ValueError with a readable reason."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f'{where} must be a JSON object {{"<broker user>": {{rights}}}}, not {type(raw).__name__}')
    entries: dict[str, SenderRights] = {}
    for user, rights in raw.items():
        try:
            entries[user] = SenderRights.model_validate(rights)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{where}: sender {user!r}: {problems}") from exc
    return entries


def default_senders(own_user: str | None) -> dict[str, SenderRights]:
    entries = {
        f"kranj-{service}": SenderRights(
            description=f"the {service} service",
            services=[service],
            **SERVICE_NOTICE_RIGHTS.get(service, {}),
        )
        for service in SERVICE_NAMES
    }
    if own_user and own_user not in entries:
        shared = {right: True for rights in SERVICE_NOTICE_RIGHTS.values() for right, on in rights.items() if on}
        entries[own_user] = SenderRights(
            description="the broker user all four services share (local runs)", services="*", **shared
        )
    entries[ANYONE] = ORDINARY
    return entries


@dataclass(frozen=True)
class SenderRegistry:
    entries: dict[str, SenderRights]

    @classmethod
    def build(
        cls, *, amqp_url: str | None = None, senders: str | None = None, senders_file: Path | None = None
    ) -> SenderRegistry:
        """Defaults, then the file, then the variable; a later entry replaces an earlier one."""
        entries = default_senders(amqp_user(amqp_url) if amqp_url else None)
        if senders_file is not None:
            try:
                text = Path(senders_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"KRANJ_SENDERS_FILE {str(senders_file)!r} cannot be read: {exc}") from exc
            entries.update(parse_senders(text, where=f"KRANJ_SENDERS_FILE {str(senders_file)!r}"))
        if senders:
            entries.update(parse_senders(senders))
        return cls(entries)

    @classmethod
    def from_settings(cls, settings: Any) -> SenderRegistry:
        return cls.build(amqp_url=settings.amqp_url, senders=settings.senders, senders_file=settings.senders_file)

    def rights(self, user_id: str | None) -> SenderRights:
        if user_id and user_id != ANYONE and user_id in self.entries:
            return self.entries[user_id]
        return self.entries.get(ANYONE, ORDINARY)

    def check(self, user_id: str | None, routing_key: str, data: Any) -> None:
        """Raise `Rejection` (a readable reason) if `user_id` may not publish this message."""
        rights = self.rights(user_id)
        registered = bool(user_id) and user_id in self.entries and user_id != ANYONE
        if user_id and registered:
            who = f"sender {user_id!r}"
        elif user_id:
            who = f"broker user {user_id!r} (not in the registry of senders: ordinary rights)"
        else:
            who = "an anonymous sender (the message has no AMQP user_id: ordinary rights)"
        if routing_key in OPEN_COMMANDS:
            self._check_notice(who, rights, data)
            return
        if not any(topic_matches(p, routing_key) for p in rights.fact_patterns()):
            raise Rejection(
                f"not allowed: {routing_key} is a platform fact that only its owning service may publish, "
                f"and {who} may not publish it (the sender is the AMQP user_id the broker vouches for, "
                f"not the CloudEvent source)"
            )

    @staticmethod
    def _check_notice(who: str, rights: SenderRights, data: Any) -> None:
        ks = list(getattr(data, "ks", None) or [])
        topic = getattr(data, "topic", None)
        urgency = getattr(data, "urgency", None)
        refused: list[str] = []
        if urgency == "urgent" and not rights.urgent:
            refused.append("urgency: urgent (sent even during quiet hours) needs a sender with the urgent right")
        if ALL_KS in ks and not rights.city_wide:
            refused.append('ks: ["*"] (every KS, city-wide) needs a sender with the city-wide right')
        if rights.ks != "*":
            beyond = [k for k in ks if k != ALL_KS and k not in rights.ks]
            if beyond:
                refused.append(f"KS {', '.join(beyond)} beyond its KS ({', '.join(rights.ks)})")
        if rights.topics != "*" and topic is not None and topic not in rights.topics:
            refused.append(f"topic {topic!r} beyond its topics ({', '.join(rights.topics)})")
        if refused:
            raise Rejection(f"not allowed for {who}: " + "; ".join(refused))
