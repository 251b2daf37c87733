"""The ready-made choices of days on /events (services/events/pages.py `_when_links`): each
keeps the other choices, the one shown is marked once (on a Sunday "Ta vikend" is the same
day as "Danes"), and "Vsi prihajajoči" is the plain list. Found on a new user's walk on a
Sunday. The clock is frozen on a Sunday built from now, not a literal date."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from support.settings import make_settings

from services.events.app import create_app
from shared import clock

pytestmark = pytest.mark.integration


async def test_one_choice_is_marked_and_each_keeps_the_others(tmp_path, amqp_url) -> None:
    app = create_app(make_settings(tmp_path, amqp_url))
    local = clock.local_now()
    sunday = local + timedelta(days=(6 - local.weekday()) % 7 or 7)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://t"
    ) as client:
        with clock.frozen(sunday.replace(hour=10)):
            day = sunday.date().isoformat()
            page = (await client.get(f"/events?ks=huje&starost=&tema=&od={day}&do={day}")).text
    nav = page[page.index('<nav class="when"') : page.index("</nav>", page.index('<nav class="when"'))]
    links = re.findall(r'<a href="([^"]+)"( aria-current="true")?>([^<]+)</a>', nav)
    assert [label for _, _, label in links] == ["Danes", "Ta vikend", "Naslednjih 7 dni", "Ta mesec", "Vsi prihajajoči"]
    assert [label for _, current, label in links if current] == ["Danes"]
    assert links[0][0] == f"/events?ks=huje&amp;od={day}&amp;do={day}"
    assert links[-1][0] == "/events?ks=huje"
