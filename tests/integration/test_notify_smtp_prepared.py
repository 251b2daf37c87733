"""notify hands its emails to SMTP without aiosmtplib's per-message regular expressions
(services/notify/transports.py, `send_prepared`): a message built by services/notify/mail.py
is already as it goes on the wire. Against a real SMTP server (aiosmtpd): the server receives
exactly the bytes `sendmail` would have sent, with the same envelope and SIZE; a refusal of
DATA is the same temporary or permanent failure and leaves the connection usable; and a
message that is not in wire form (a line starting with ".") still goes the general way,
dot-stuffed, and arrives whole."""

from __future__ import annotations

import asyncio
import time

import aiosmtplib
import aiosmtplib.email
import pytest
from support.settings import make_settings

from services.notify import mail
from services.notify.transports import PermanentFailure, SmtpEmail, TemporaryFailure, _quoted

pytestmark = pytest.mark.integration

TEXT = "Spoštovani,\n\njutri med 8. in 12. uro ne bo vode na Zlatem polju.\n" * 20
HTML = "<p>Jutri med 8. in 12. uro ne bo vode na Zlatem polju.</p>\n" * 40


def built(to: str) -> tuple[bytes, str]:
    made = mail.build(
        mail_from="Kranj ZA vse <obvestila@kranj.si>",
        to=to,
        subject="KS Primskovo: izklop vode, četrtek",
        text=TEXT,
        html=HTML,
        message_id=f"<{to}@kranj-za-vse.si>",
        language="sl",
        unsubscribe_url="https://kranj-za-vse.example/unsubscribe/abc",
    )
    assert made is not None
    return made


async def test_the_server_receives_what_sendmail_would_have_sent(tmp_path, smtp_server) -> None:
    transport = SmtpEmail(make_settings(tmp_path, "amqp://unused/", **smtp_server.settings()))
    raw, sender = built("ana@example.si")
    try:
        assert await transport.send_raw(raw, sender, "ana@example.si", "d-1") == "OK"
    finally:
        await transport.close()
    plain = aiosmtplib.SMTP(hostname=smtp_server.host, port=smtp_server.port, start_tls=False)
    await plain.connect()
    await plain.sendmail(sender, ["ana@example.si"], raw)
    await plain.quit()
    prepared, general = await smtp_server.wait_for(2)
    assert prepared.raw == general.raw  # byte for byte
    assert (prepared.mail_from, prepared.rcpt_tos) == (general.mail_from, general.rcpt_tos) == (sender, ["ana@example.si"])
    assert prepared.message["Subject"] == "KS Primskovo: izklop vode, četrtek"
    assert "ne bo vode na Zlatem polju" in (prepared.part("text/plain") or "")


@pytest.mark.parametrize("refused", ["DATA", "RCPT"])
async def test_a_refusal_is_the_same_failure_and_the_next_one_goes(tmp_path, smtp_server, refused: str) -> None:
    """The server refuses the message (DATA) or the recipient (RCPT), first for now, then for
    good: a temporary and a permanent failure, and the same connection sends the next."""
    transport = SmtpEmail(make_settings(tmp_path, "amqp://unused/", smtp_connections=1, **smtp_server.settings()))
    replies = smtp_server.replies if refused == "DATA" else smtp_server.rcpt_replies
    replies.extend(["451 4.3.0 try later", "550 5.1.1 no such user"])
    try:
        raw, sender = built("b@example.si")
        with pytest.raises(TemporaryFailure, match="451"):
            await transport.send_raw(raw, sender, "b@example.si", "d-2")
        with pytest.raises(PermanentFailure, match="550"):
            await transport.send_raw(raw, sender, "b@example.si", "d-3")
        assert await transport.send_raw(raw, sender, "b@example.si", "d-4") == "OK"
    finally:
        await transport.close()
    [received] = await smtp_server.wait_for(1)
    assert received.rcpt_tos == ["b@example.si"]
    assert len(smtp_server.refused) == (2 if refused == "DATA" else 0)  # a refused recipient sends no DATA


@pytest.mark.parametrize(
    "address",
    [
        "ana@example.si",
        "ana.novak+obvestila@kranj.example.si",
        "o'neil@example.si",
        "Ana@Example.si",  # not as stored: the general way
        "Kranj ZA vse <obvestila@kranj.si>",
        '"ana novak"@example.si',
        "ana@example.si (Ana)",
        "ana@example.si\r\nRCPT TO:<eve@example.si>",  # no command smuggled in either way
    ],
)
def test_addresses_are_quoted_as_aiosmtplib_quotes_them(address: str) -> None:
    assert _quoted(address) == aiosmtplib.email.quote_address(address).encode("ascii")


async def test_a_line_starting_with_a_dot_goes_the_general_way_and_arrives_whole(tmp_path, smtp_server) -> None:
    transport = SmtpEmail(make_settings(tmp_path, "amqp://unused/", **smtp_server.settings()))
    raw = b"From: a@example.si\r\nTo: c@example.si\r\nSubject: pika\r\n\r\nprva vrstica\r\n.\r\n..dve piki\r\nkonec\r\n"
    try:
        assert await transport.send_raw(raw, "a@example.si", "c@example.si", "d-5") == "OK"
    finally:
        await transport.close()
    [received] = await smtp_server.wait_for(1)
    assert received.raw.replace(b"\r\n", b"\n").endswith(b"prva vrstica\n.\n..dve piki\nkonec\n")


async def test_a_server_that_stops_answering_is_given_up_on_and_the_next_email_goes(tmp_path, smtp_server) -> None:
    """The whole conversation of one email has one deadline: a server that does not answer
    the message in time is a temporary failure, that connection is closed (its late reply
    cannot be taken for the next command's), and the next email goes on a new one."""
    settings = make_settings(
        tmp_path, "amqp://unused/", smtp_connections=1, smtp_timeout_seconds=1, **smtp_server.settings()
    )
    transport = SmtpEmail(settings)  # KRANJ_SMTP_TIMEOUT_SECONDS=1
    stall = 4.0
    smtp_server.stalls.append(stall)
    raw, sender = built("c@example.si")
    try:
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match="SMTPReadTimeoutError"):
            await transport.send_raw(raw, sender, "c@example.si", "d-5")
        assert time.monotonic() - started < 3  # the deadline, not the server's 4 s
        stalled = transport._slots[0][0]
        assert stalled is None  # the slot gave its connection up
        other, _ = built("d@example.si")
        assert await transport.send_raw(other, sender, "d@example.si", "d-6") == "OK"
    finally:
        await transport.close()
    [received] = await smtp_server.wait_for(1, timeout=10)
    # The next email went whole, and its reply was its own.
    assert received.rcpt_tos == ["d@example.si"]
    # The server had not answered the stalled message when the connection closed; past the
    # time it would have answered, it has still not taken it (aiosmtpd stops a session's
    # handler when its connection is lost; the delivery worker retries a temporary failure).
    await asyncio.sleep(max(0.0, started + stall + 0.5 - time.monotonic()))
    assert [m.rcpt_tos for m in smtp_server.messages] == [["d@example.si"]]
