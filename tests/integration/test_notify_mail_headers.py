"""Email headers as they arrive at a real SMTP server, sent by notify's real delivery worker
for notices published through the real broker: every RFC 2047 encoded word of the subject is
at most 75 characters (RFC 2047 section 2) for long Slovenian subjects full of č, š and ž;
`Date:` is RFC 5322 with a numeric zone (`+0000`), not the obsolete `GMT`; and
`Content-Language` and `<html lang>` say the language the email is written in (an English
notice to a Slovenian subscriber is `en`, its Slovenian frame marked `lang="sl"`)."""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import random
import re
import uuid
from datetime import timedelta

import aio_pika
import pytest
from support.settings import make_settings

from services.notify import subscribers
from services.notify.app import create_app
from shared import clock

pytestmark = pytest.mark.integration

ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
WORDS = (
    "Čiščenje", "ščitnih", "žičnic", "košnja", "trave", "ob", "cesti", "Šenčur–Kranj", "zaprtje", "ceste",
    "žaganje", "češenj", "v", "Čirčah", "obvestilo", "krajanom", "Žabnice", "šolska", "pot", "čez", "Škofjeloško",
    "izklop", "električne", "energije", "in", "vode", "Struževo", "Huje", "Šmarjetna", "gora", "„nujno“",
)  # fmt: skip


@pytest.fixture
async def notify_app(tmp_path, amqp_url, smtp_server):
    settings = make_settings(tmp_path, amqp_url, **smtp_server.settings())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await subscribers.add_subscriber(
            app.state.ctx.db,
            subscribers.SubscriberIn(email="ana@example.si", ks=["primskovo"], topics=["utilities"], language="sl"),
        )
        yield app


async def publish(amqp_url: str, messages: list[dict]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("kranj")
        for data in messages:
            envelope = {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "/komunala-kranj/outages",
                "type": "si.kranj.notify.notice.requested.v1",
                "time": clock.now().isoformat(),
                "data": {"ks": ["primskovo"], "topic": "utilities", **data},
            }
            body = json.dumps(envelope, ensure_ascii=False).encode()
            await exchange.publish(aio_pika.Message(body), routing_key="notify.notice.requested")


def long_subjects(count: int) -> list[str]:
    rng = random.Random(2047)
    titles = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
        titles.append(f"{' '.join(words)} {i}"[:120])
    return titles


async def test_encoded_words_of_long_slovenian_subjects_are_at_most_75_characters(notify_app, amqp_url, smtp_server):
    titles = long_subjects(40)
    await publish(amqp_url, [{"title": t, "body": "Besedilo obvestila: čšž."} for t in titles])
    mails = await smtp_server.wait_for(len(titles), timeout=30)

    seen_words = 0
    for mail in mails:
        head = mail.raw.split(b"\r\n\r\n", 1)[0]
        subject_lines = re.search(rb"^Subject:.*?(?=\r\n\S)", head, re.S | re.M)
        assert subject_lines, head
        for line in subject_lines.group(0).split(b"\r\n"):
            assert len(line) <= 78, line  # RFC 5322 line length
        for word in ENCODED_WORD.findall(head):
            seen_words += 1
            assert len(word) <= 75, (word, len(word))
        # and the subject reads back exactly as the notice's title (with its KS)
        parsed = email.message_from_bytes(mail.raw, policy=email.policy.default)
        assert any(str(parsed["Subject"]).startswith(t) for t in titles), parsed["Subject"]
    assert seen_words > len(titles)  # long subjects: several words each


async def test_date_is_rfc_5322_with_a_numeric_zone(notify_app, amqp_url, smtp_server):
    before = clock.now()
    await publish(amqp_url, [{"title": "Izklop vode", "body": "Jutri ne bo vode."}])
    [mail] = await smtp_server.wait_for(1)
    date = re.search(rb"^Date: (.*)$", mail.raw.split(b"\r\n\r\n", 1)[0], re.M).group(1).decode().strip()
    assert not date.endswith("GMT") and re.search(r" [+-]\d{4}$", date), date
    sent = email.utils.parsedate_to_datetime(date)
    assert sent.tzinfo is not None
    assert before - timedelta(seconds=2) <= sent <= clock.now() + timedelta(seconds=2)


async def test_content_language_follows_the_language_the_email_is_written_in(notify_app, amqp_url, smtp_server):
    await publish(
        amqp_url,
        [
            {"title": "Water cut in Primskovo", "body": "No water on Thursday from 8 to 12.", "language": "en"},
        ],
    )
    [english] = await smtp_server.wait_for(1)
    assert english.message["Content-Language"] == "en"  # the subscriber reads Slovenian; the notice is English
    html = english.part("text/html")
    assert re.search(r'<html lang="en">', html)
    assert 'lang="sl"' in html  # the Slovenian frame (footer, links) is marked as such
    assert "No water on Thursday" in english.part("text/plain")

    await publish(amqp_url, [{"title": "Izklop vode", "body": "V četrtek ne bo vode."}])
    mails = await smtp_server.wait_for(2)
    slovenian = mails[1]
    assert slovenian.message["Content-Language"] == "sl"
    assert '<html lang="sl">' in slovenian.part("text/html") and 'lang="en"' not in slovenian.part("text/html")
