"""notify's transports: how an email or an SMS leaves the platform.

Chosen once, by configuration, in the wiring root (services/notify/app.py `build`):
`email_transport(settings)` is SMTP when `KRANJ_SMTP_HOST` is set, else `.eml` files;
`sms_transport(settings)` is the HTTP gateway of CONTRACT.md when `KRANJ_SMS_GATEWAY_URL` is
set, else `sms.jsonl`. The delivery worker only calls `send`/`send_raw` and reads
`transport` (for the metrics); a failure is `TemporaryFailure` (retried, with the gateway's
Retry-After) or `PermanentFailure` (final)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import aiosmtplib
import aiosmtplib.email
import orjson

from shared.models import utcnow
from shared.settings import Settings


class TemporaryFailure(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    pass


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def send_prepared(smtp: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes) -> tuple[object, str]:
    """`smtp.sendmail(sender, [recipient], message)` for a message that is already as it goes
    on the wire: CRLF line endings only, ending in CRLF, no line starting with "." — what
    services/notify/mail.py writes (its parts are base64). aiosmtplib would run its two
    regular expressions over the whole message for every email (line endings, twice when the
    server offers SIZE, and dot-stuffing): ~0.13 ms of CPU for a 9 KB email, a quarter of an
    email's cost in notify (make bench, issue 20 §4). The same commands, errors and reset.

    DATA is written as aiosmtplib 5.1.3 writes it (`SMTPProtocol.execute_data_command`, its
    command lock and reply flag): the version is pinned, and the SMTP tests go through here."""
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    options = [b"size=%d" % len(message)] if smtp.supports_extension("size") else []
    try:
        # One deadline for the whole conversation (`smtp.timeout`, as for each reply before):
        # aiosmtplib's own timeout is an `asyncio.wait_for` per reply, three per email (2 % of
        # notify's CPU in a fan-out, make bench). Timed out, the connection is closed, as
        # aiosmtplib closes it: a reply given up on must not be paired with the next command.
        async with asyncio.timeout(smtp.timeout):
            response = await _converse_prepared(smtp, sender, recipient, message, options)
    except TimeoutError as exc:
        smtp.close()
        raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        try:  # as sendmail does: the envelope is reset
            await smtp.rset()
        except (ConnectionError, aiosmtplib.SMTPResponseException):
            pass
        raise
    return {}, response.message


async def _converse_prepared(
    smtp: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes, options: list[bytes]
) -> aiosmtplib.SMTPResponse:
    """MAIL, RCPT, DATA and the message; the caller holds the deadline (timeout=None here).
    MAIL and RCPT as `smtp.mail` and `smtp.rcpt` send them, the addresses quoted once
    (`_quoted`): aiosmtplib parsed both addresses of every email (3 % of notify's CPU)."""
    response = await smtp.execute_command(b"MAIL", b"FROM:" + _quoted(sender), *options, timeout=None)
    if response.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
    response = await smtp.execute_command(b"RCPT", b"TO:" + _quoted(recipient), timeout=None)
    if response.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
        refused = aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)
        raise aiosmtplib.SMTPRecipientsRefused([refused])
    start = await smtp.execute_command(b"DATA", timeout=None)
    if start.code != aiosmtplib.SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = smtp.protocol
    if protocol is None or protocol._command_lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        async with protocol._command_lock:
            protocol._response_pending = True  # a reply is expected: see execute_command
            protocol.write(message + b".\r\n")
            response = await protocol.read_response(timeout=None)
    except aiosmtplib.SMTPServerDisconnected:
        smtp.close()
        raise
    if response.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response


# An address as the platform stores it (lower-cased, no display name, no quoting, no
# comment): what aiosmtplib's quote_address makes of it is "<" + it + ">".
_PLAIN_ADDRESS = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@[a-z0-9.-]+")


@functools.lru_cache(maxsize=16)
def _quoted_general(address: str) -> bytes:
    return aiosmtplib.email.quote_address(address).encode("ascii")


def _quoted(address: str) -> bytes:
    """`<address>` for MAIL FROM and RCPT TO, exactly as aiosmtplib quotes it (and refuses
    what it refuses): without parsing for a plain stored address, the sender (with its display
    name) parsed once."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return _quoted_general(address)


class SmtpEmail:
    """SMTP over `KRANJ_SMTP_CONNECTIONS` reused connections (one conversation at a time on each)."""

    transport = "smtp"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connections = settings.smtp_connections
        # seconds for connecting, for each reply, and for one email's MAIL to its last reply
        self.timeout = settings.smtp_timeout_seconds
        self._free: asyncio.Queue[list[aiosmtplib.SMTP | None]] = asyncio.Queue()
        for _ in range(self.connections):
            self._free.put_nowait([None])  # a slot: its connection, opened when first used
        self._slots: list[list[aiosmtplib.SMTP | None]] = []

    async def _connection(self, slot: list[aiosmtplib.SMTP | None]) -> aiosmtplib.SMTP:
        smtp = slot[0]
        if smtp is not None and smtp.is_connected:
            return smtp
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            username=s.smtp_user,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=self.timeout,
        )
        await smtp.connect()
        slot[0] = smtp
        if slot not in self._slots:
            self._slots.append(slot)
        return smtp

    async def send(self, message: EmailMessage, delivery_id: str) -> str:
        return await self._converse(lambda smtp: smtp.send_message(message))

    async def send_raw(self, raw: bytes, sender: str, to: str, delivery_id: str) -> str:
        """A message already on the wire format (services.notify.mail): no flattening."""
        if b"\r\n." in raw or not raw.endswith(b"\r\n"):  # not as mail.build writes them: the general way
            return await self._converse(lambda smtp: smtp.sendmail(sender, [to], raw))
        return await self._converse(lambda smtp: send_prepared(smtp, sender, to, raw))

    async def _converse(self, send: Callable[[aiosmtplib.SMTP], Awaitable[tuple[object, str]]]) -> str:
        slot = await self._free.get()  # one SMTP conversation at a time on each connection
        try:
            try:
                smtp = await self._connection(slot)
                errors, response = await send(smtp)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [r.code for r in exc.recipients]
                if any(400 <= c < 500 for c in codes):
                    raise TemporaryFailure(f"recipient refused for now: {codes}") from exc
                raise PermanentFailure(f"recipient refused: {codes}") from exc
            except aiosmtplib.SMTPResponseException as exc:
                self._reset(slot)
                if 400 <= exc.code < 500:
                    raise TemporaryFailure(f"SMTP {exc.code}: {exc.message}") from exc
                raise PermanentFailure(f"SMTP {exc.code}: {exc.message}") from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                self._reset(slot)
                raise TemporaryFailure(f"SMTP unavailable: {type(exc).__name__}: {exc}") from exc
        finally:
            self._free.put_nowait(slot)
        return response[:200] if response else "sent"

    @staticmethod
    def _reset(slot: list[aiosmtplib.SMTP | None]) -> None:
        if slot[0] is not None:
            try:
                slot[0].close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass
        slot[0] = None

    async def close(self) -> None:
        for slot in self._slots:
            smtp = slot[0]
            if smtp is not None and smtp.is_connected:
                try:
                    await smtp.quit()
                except Exception:  # noqa: BLE001
                    smtp.close()
            slot[0] = None


class FileEmail:
    """`.eml` files under `<data dir>/outbox/email/` when no SMTP host is set (development,
    tests; docs/operations.md)."""

    transport = "file"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connections = settings.smtp_connections
        self.outbox = settings.outbox_dir / "email"

    async def send(self, message: EmailMessage, delivery_id: str) -> str:
        return await self.send_raw(bytes(message), "", "", delivery_id)

    async def send_raw(self, raw: bytes, sender: str, to: str, delivery_id: str) -> str:
        await asyncio.to_thread(_atomic_write, self.outbox / f"{delivery_id}.eml", raw)
        return f"file:{delivery_id}.eml"

    async def close(self) -> None:
        return None


class GatewaySms:
    """The HTTP SMS gateway of CONTRACT.md.

    One aiohttp session, its connections kept alive: aiohttp spends ~0.07 ms of CPU per request
    where httpx spent ~1.6 ms, which capped a fan-out at a few hundred SMS per second (make bench)."""

    transport = "gateway"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            headers = {"User-Agent": "kranj-za-vse-notify/1.0"}
            timeout = self.settings.sms_gateway_timeout_seconds
            if self.settings.sms_gateway_token:
                headers["Authorization"] = f"Bearer {self.settings.sms_gateway_token.get_secret_value()}"
            self._client = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0)),
                connector=aiohttp.TCPConnector(limit=0),  # as many as the window allows (window.py)
                # No cookies: the gateway needs none, and nothing of one request is kept for the next.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._client

    async def send(self, to: str, text: str, delivery_id: str) -> str:
        # orjson: the standard library's encoder was 5 % of notify's CPU in a fan-out, and
        # a ready payload spares aiohttp's look-up of a payload type (make bench, issue 20 §4)
        payload = aiohttp.BytesPayload(
            orjson.dumps({"to": to, "text": text, "reference": delivery_id}), content_type="application/json"
        )
        try:
            async with self._http().post(
                str(self.settings.sms_gateway_url), data=payload, headers={"Idempotency-Key": delivery_id}
            ) as response:
                status, body = response.status, await response.read()
                retry_after = response.headers.get("retry-after")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TemporaryFailure(f"gateway unreachable: {type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return _gateway_reference(body) or delivery_id
        if status == 429 or status >= 500:
            raise TemporaryFailure(f"gateway answered {status}", retry_after=_retry_after(retry_after))
        raise PermanentFailure(f"gateway refused with {status}: {body.decode(errors='replace')[:200]}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class FileSms:
    """One JSON line per SMS in `<data dir>/outbox/sms.jsonl` when no gateway is set."""

    transport = "file"

    def __init__(self, settings: Settings) -> None:
        self.outbox = settings.outbox_dir / "sms.jsonl"
        self._lock = asyncio.Lock()

    async def send(self, to: str, text: str, delivery_id: str) -> str:
        line = json.dumps({"to": to, "text": text, "reference": delivery_id, "at": utcnow().isoformat()},
                          ensure_ascii=False) + "\n"  # fmt: skip
        async with self._lock:
            await asyncio.to_thread(_append, self.outbox, line)
        return f"file:{delivery_id}"

    async def close(self) -> None:
        return None


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _gateway_reference(raw: bytes) -> str | None:
    try:
        body = orjson.loads(raw)
    except ValueError:  # orjson.JSONDecodeError is one
        return None
    if isinstance(body, dict):
        for key in ("id", "reference", "message_id"):
            if isinstance(body.get(key), (str, int)):
                return str(body[key])[:200]
    return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


EmailTransport = SmtpEmail | FileEmail
SmsTransport = GatewaySms | FileSms


def email_transport(settings: Settings) -> EmailTransport:
    return SmtpEmail(settings) if settings.smtp_host else FileEmail(settings)


def sms_transport(settings: Settings) -> SmsTransport:
    return GatewaySms(settings) if settings.sms_gateway_url else FileSms(settings)
