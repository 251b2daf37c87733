"""Emails as bytes, built fast: one notice to thousands of residents must not spend its time
in the `email` package (building and flattening an `EmailMessage` costs ~3.5 ms, this ~0.05 ms;
measured with `make bench`).

The message is what `DeliveryWorker._email` builds with the `email` package — multipart plain
text and HTML, `Content-Language`, a stable `Message-ID`, RFC 8058 one-click unsubscribe —
written out directly: headers that are not ASCII are RFC 2047-encoded by the `email` package
itself, the parts are UTF-8 in base64. Addresses that are not plain ASCII go the slow,
general way (`build` returns None).

Headers that are not ASCII are written as RFC 2047 encoded words of at most 75 characters
each (RFC 2047 section 2), whole UTF-8 characters in each, folded one word per line (RFC 5322
lines of at most 78 characters). Neither `email.header.Header` nor `email.policy` keeps that
limit (both write 76- and 77-character words for Slovenian subjects), so `encoded_words` does
the encoding with the `email` package's own quoted-printable header encoder, and `POLICY`
(used by the slow path) folds with it. `Date:` is RFC 5322 (`+0000`, not the obsolete `GMT`).
"""

from __future__ import annotations

import binascii
import secrets
from datetime import UTC, datetime
from email import quoprimime
from email.policy import SMTP, EmailPolicy
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from shared import clock

CRLF = "\r\n"
MAX_WORD = 75  # RFC 2047 section 2: an encoded word is at most 75 characters
MAX_LINE = 78  # RFC 5322 section 2.1.1


def _word(text: str) -> str:
    return quoprimime.header_encode(text.encode("utf-8"), "utf-8")  # "=?utf-8?q?...?="


def encoded_words(value: str, first_line_used: int = 0) -> list[str]:
    """`value` as RFC 2047 Q-encoded words of whole characters, each at most 75 characters
    (the first also fitting a 78-character line after `first_line_used` characters); the
    spaces are inside the words, so a reader joins them back exactly."""
    words: list[str] = []
    limit = max(20, min(MAX_WORD, MAX_LINE - first_line_used))
    chunk = ""
    for char in value:
        if chunk and len(_word(chunk + char)) > limit:
            words.append(_word(chunk))
            chunk, limit = "", MAX_WORD  # later words each start a folded line: " " + word
        chunk += char
    if chunk:
        words.append(_word(chunk))
    return words


@lru_cache(maxsize=64)
def header_value(value: str, name: str = "Subject") -> str:
    """One header value on the wire: ASCII as it is, anything else RFC 2047-encoded in
    words of at most 75 characters, one per folded line."""
    value = " ".join(value.split())  # no CR/LF can reach the wire
    if value.isascii():
        return value
    return (CRLF + " ").join(encoded_words(value, len(name) + 2))


class _Policy(EmailPolicy):
    """`email.policy.SMTP` whose unstructured non-ASCII headers (the subject) are folded into
    RFC 2047 words of at most 75 characters (the library's own folder writes up to 77)."""

    def _fold(self, name: str, value: object, refold_binary: bool = False) -> str:
        text = str(value)
        if name.lower() == "subject" and not text.isascii():
            return f"{name}: {header_value(text, name)}{self.linesep}"
        return super()._fold(name, value, refold_binary)  # type: ignore[misc]


POLICY = _Policy().clone(**{k: getattr(SMTP, k) for k in ("linesep", "max_line_length")})


def date_header() -> str:
    """`Date:` in RFC 5322 form from the platform clock: `Thu, 03 Dec 2026 07:30:00 +0000`."""
    return _date_of_second(int(clock.now().timestamp()))


@lru_cache(maxsize=2)
def _date_of_second(second: int) -> str:
    """Written once a second, not once an email (1 % of notify's CPU in a fan-out)."""
    return format_datetime(datetime.fromtimestamp(second, UTC))


@lru_cache(maxsize=8)
def from_header(mail_from: str) -> tuple[str, str]:
    """(`From:` value, envelope sender) of `KRANJ_MAIL_FROM`."""
    name, address = parseaddr(mail_from)
    if name and not name.isascii():
        return f"{header_value(name, 'From')} <{address}>", address
    return formataddr((name, address)), address


def base64_lines(data: bytes) -> str:
    """`data` in base64 lines of 76 characters, each ending in CRLF: what the `email` package
    writes (`base64.encodebytes`, then CRLF), in one pass instead of one call per line (a
    tenth of an email's cost in notify, make bench)."""
    encoded = binascii.b2a_base64(data, newline=False)
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    return (b"\r\n".join(lines) + b"\r\n").decode("ascii") if lines else ""


def _part(content_type: str, text: str) -> str:
    if not text.endswith("\n"):
        text += "\n"  # the `email` package ends every text part with a line break too
    body = base64_lines(text.replace("\r\n", "\n").encode())  # as the `email` package does
    return f'Content-Type: {content_type}; charset="utf-8"{CRLF}Content-Transfer-Encoding: base64{CRLF}{CRLF}{body}'


def build(
    *,
    mail_from: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    language: str,
    unsubscribe_url: str | None,
) -> tuple[bytes, str] | None:
    """The message as bytes and its envelope sender; None when `to` is not plain ASCII."""
    if not to.isascii() or any(c in to for c in '\r\n<>,;"') or not unsubscribe_url_ok(unsubscribe_url):
        return None
    from_value, sender = from_header(mail_from)
    boundary = f"==kranj-{secrets.token_hex(12)}=="
    headers = [
        f"From: {from_value}",
        f"To: {to}",
        f"Subject: {header_value(subject)}",
        f"Date: {date_header()}",
        f"Message-ID: {message_id}",
    ]
    if unsubscribe_url:
        headers.append(f"List-Unsubscribe: <{unsubscribe_url}>")
        headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    headers += [
        "Auto-Submitted: auto-generated",
        f"Content-Language: {language}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    raw = (
        CRLF.join(headers)
        + CRLF
        + CRLF
        + f"--{boundary}{CRLF}"
        + _part("text/plain", text)
        + f"--{boundary}{CRLF}"
        + _part("text/html", html)
        + f"--{boundary}--{CRLF}"
    )
    return raw.encode("ascii"), sender


def unsubscribe_url_ok(url: str | None) -> bool:
    return url is None or (url.isascii() and not any(c in url for c in "\r\n <>"))
