"""Prometheus metrics, defined once per process and labelled by service."""

from __future__ import annotations

import functools

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

MESSAGES_CONSUMED = Counter(
    "kranj_messages_consumed_total",
    "Messages taken from the bus, by CloudEvent type and outcome "
    "(processed, duplicate, ignored, retried, dead_lettered).",
    ["service", "queue", "type", "outcome"],
)
MESSAGES_PUBLISHED = Counter(
    "kranj_messages_published_total", "Messages confirmed by the broker, by CloudEvent type.", ["service", "type"]
)
PUBLISH_FAILURES = Counter(
    "kranj_publish_failures_total", "Publish attempts that failed (left in the outbox).", ["service", "type"]
)
HANDLER_SECONDS = Histogram(
    "kranj_handler_seconds", "Time spent handling one message.", ["service", "queue"]
)
OUTBOX_UNSENT = Gauge("kranj_outbox_unsent", "Outbox rows not yet confirmed by the broker.", ["service"])
OUTBOX_OLDEST_SECONDS = Gauge(
    "kranj_outbox_oldest_unsent_seconds", "Age of the oldest unsent outbox row.", ["service"]
)
DELIVERIES = Counter(
    "kranj_deliveries_total", "Notice deliveries by channel and resulting state.", ["channel", "state"]
)


SEND_SECONDS = Histogram(
    "kranj_send_seconds",
    "Time to hand one message over: SMTP server or SMS gateway latency (transport file = local outbox).",
    ["channel", "transport", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

RATE_LIMITED = Counter(
    "kranj_rate_limited_total",
    "Public requests refused with 429, by route (its path template) and by what was over its limit "
    "(address, phone, email, token).",
    ["service", "endpoint", "by"],
)


OTHER_TYPE = "other"


@functools.cache
def known_types() -> frozenset[str]:
    """Every CloudEvent type of the platform's contracts (each MessageType of shared.contracts)."""
    import importlib
    import pkgutil

    from . import contracts
    from .contracts.envelope import MessageType

    found: set[str] = set()
    for module in pkgutil.iter_modules(contracts.__path__):
        namespace = vars(importlib.import_module(f"{contracts.__name__}.{module.name}"))
        found.update(value.type for value in namespace.values() if isinstance(value, MessageType))
    return frozenset(found)


def type_label(ce_type: str) -> str:
    """A CloudEvent type as a label value: outsiders choose the type of what they publish,
    so any type the platform does not know becomes `other` (a bounded number of series)."""
    return ce_type if ce_type in known_types() or ce_type == "unknown" else OTHER_TYPE


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
