"""Issue 15, minor: the CloudEvent `type` of outside messages became a Prometheus label, so
an outsider could create any number of series. Types the platform does not know are
counted as `other` (shared.metrics.type_label)."""

from __future__ import annotations

import json
import random
import re
import string
import uuid

import httpx
import pytest
from support.rabbit import publish_bare
from support.settings import make_settings, wait_until

from services.notify.app import create_app as create_notify
from shared.metrics import OTHER_TYPE, known_types

pytestmark = pytest.mark.integration

QUEUE = "notify.on-notice-requested"
SERIES = re.compile(r'^kranj_messages_consumed_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


def random_type(rng: random.Random) -> str:
    word = "".join(rng.choices(string.ascii_lowercase + string.digits, k=12))
    return rng.choice(
        [
            f"si.kranj.notify.notice.requested.v{rng.randint(2, 10**6)}",  # another major: refused
            f"si.kranj.{word}.x.y.v1",  # unknown, ignored
            f"com.example.{word}",
            f"{word} with spaces \"and quotes\" {{}}",
        ]
    )


def consumed(metrics: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for match in SERIES.finditer(metrics):
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"]))
        if labels.get("queue") == QUEUE:
            found.append((labels, float(match["value"])))
    return found


async def test_fifty_random_types_make_no_new_series(tmp_path, amqp_url):
    app = create_notify(make_settings(tmp_path, amqp_url))
    rng = random.Random(15)
    types = {random_type(rng) for _ in range(50)}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:

            async def scrape() -> list[tuple[dict[str, str], float]]:
                return consumed((await client.get("/metrics")).text)

            before = sum(value for labels, value in await scrape() if labels["type"] == OTHER_TYPE)
            for ce_type in types:
                body = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/x", "type": ce_type, "data": {}}
                await publish_bare(amqp_url, json.dumps(body), routing_key="notify.notice.requested")

            async def all_counted() -> bool:
                other = sum(value for labels, value in await scrape() if labels["type"] == OTHER_TYPE)
                return other - before >= len(types)

            await wait_until(all_counted, timeout=30, message=f"{len(types)} messages counted as type other")
            series = await scrape()

    labels_seen = {labels["type"] for labels, _ in series}
    assert not labels_seen & types, "an outsider's type became a label"
    assert labels_seen <= known_types() | {OTHER_TYPE, "unknown"}, labels_seen
    # One series per outcome for `other` (refused and ignored here), however many types arrived.
    others = [labels for labels, _ in series if labels["type"] == OTHER_TYPE]
    assert 1 <= len(others) <= 2, others
    assert {labels["outcome"] for labels in others} <= {"ignored", "dead_lettered"}
