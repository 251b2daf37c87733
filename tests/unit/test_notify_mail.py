"""The fast email path (services.notify.mail + Renderer.email_renderer) says exactly what the
`email`-package path says: same headers, same text and HTML, for Slovenian and English,
with and without one-click unsubscribe; addresses it cannot write go the slow way."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from support.settings import make_settings

from services.notify import mail
from services.notify.delivery import DeliveryWorker
from services.notify.models import Delivery, Notice
from services.notify.render import Renderer
from services.notify.transports import email_transport, sms_transport


@pytest.fixture
def worker(tmp_path: Path) -> DeliveryWorker:
    settings = make_settings(tmp_path, "amqp://unused/", mail_from="Krajevna skupnost Čirče <obvestila@kranj.si>")
    renderer = Renderer(settings)
    return DeliveryWorker(settings, None, renderer, email_transport(settings), sms_transport(settings))  # type: ignore[arg-type]


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def part(message: email.message.EmailMessage, content_type: str) -> str:
    for p in message.walk():
        if p.get_content_type() == content_type:
            return str(p.get_content())
    raise AssertionError(f"no {content_type} part")


@pytest.mark.parametrize("language", ["sl", "en"])
@pytest.mark.parametrize("subscriber_id", ["sub-1", None])
def test_fast_email_equals_the_email_package_path(worker: DeliveryWorker, language: str, subscriber_id: str | None):
    notice = Notice(
        source="/komunala",
        source_id="n1",
        title="Izklop vode — Čirče, Šmarjetna & <Žabnica>",
        body="V četrtek med 8. in 12. uro ne bo vode.\nCisterna bo pri gasilskem domu.",
        ks=["circe"],
        topic="utilities",
        channels=["email"],
        url="https://komunala-kranj.si/izklopi?a=1&b=2",
    )
    delivery = Delivery(notice_id=notice.id, subscriber_id=subscriber_id, channel="email", address="ana@example.si",
                        language=language)  # fmt: skip
    unsubscribe = worker.renderer.unsubscribe_url(subscriber_id, "email") if subscriber_id else None
    renderers: dict = {}
    fast = worker._email_bytes(delivery, notice, unsubscribe, renderers)
    assert fast is not None
    raw, sender = fast
    assert sender == "obvestila@kranj.si"
    got, want = parse(raw), worker._email(delivery, notice, unsubscribe)
    for header in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post",
                   "Auto-Submitted", "Content-Language"):  # fmt: skip
        assert str(got[header]) == str(want[header]), header
    assert got.get_content_type() == "multipart/alternative"
    assert part(got, "text/plain") == part(want, "text/plain")
    assert part(got, "text/html") == part(want, "text/html")
    if subscriber_id:
        assert worker.renderer.manage_url(subscriber_id) in part(got, "text/plain")
        assert mail.header_value("x") == "x"
    # the notice is rendered once per batch, whoever the next resident is
    assert list(renderers) == [(notice.id, language)]
    other = Delivery(notice_id=notice.id, subscriber_id="sub-2", channel="email", address="bor@example.si",
                     language=language)  # fmt: skip
    raw2, _ = worker._email_bytes(other, notice, worker.renderer.unsubscribe_url("sub-2", "email"), renderers) or (b"", "")
    assert worker.renderer.manage_url("sub-2") in part(parse(raw2), "text/plain")
    assert "sub-1" not in raw2.decode()


def test_addresses_the_fast_path_cannot_write_go_the_slow_way():
    kwargs = dict(mail_from="a@b.si", subject="s", text="t", html="h", message_id="<x@y>", language="sl")
    assert mail.build(to="šime@example.si", unsubscribe_url=None, **kwargs) is None
    assert mail.build(to="a@example.si\r\nBcc: x@evil.si", unsubscribe_url=None, **kwargs) is None
    assert mail.build(to="a@example.si", unsubscribe_url="https://x/\r\nBcc: y", **kwargs) is None
    assert mail.build(to="a@example.si", unsubscribe_url=None, **kwargs) is not None


def test_base64_lines_are_what_the_email_package_writes() -> None:
    import base64
    import random

    from services.notify.mail import base64_lines

    rng = random.Random(76)
    for size in [*range(0, 240), 8800, 12345]:
        data = bytes(rng.randrange(256) for _ in range(size))
        assert base64_lines(data) == base64.encodebytes(data).decode().replace("\n", "\r\n")
