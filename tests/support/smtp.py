"""A real SMTP server for tests (aiosmtpd) that keeps what it receives (`SmtpSink`)."""

from __future__ import annotations

import asyncio
import collections
import email
import email.message
import email.policy
from dataclasses import dataclass
from typing import Any

from support.settings import free_port, wait_until


# ======================================================================================
# SMTP sink
# ======================================================================================
@dataclass
class ReceivedMail:
    """One message the SMTP sink accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: email.message.EmailMessage
    auth_login: str | None = None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def part(self, content_type: str) -> str | None:
        """The decoded text of the first `text/plain` / `text/html` part, if any."""
        for part in self.message.walk():
            if part.get_content_type() == content_type and not part.is_multipart():
                return str(part.get_content())
        return None


class SmtpSink:
    """A real SMTP server (aiosmtpd, own thread) on 127.0.0.1:`port`.

    - `messages`: every accepted `ReceivedMail` (parsed with `email.policy.default`).
    - `await wait_for(count, timeout=10)`: the first `count` messages, or the test fails.
    - `replies`: a queue of SMTP replies for the next DATA commands, e.g.
      `sink.replies.extend(["451 4.3.0 try later", "550 5.1.1 no such user"])`; when empty
      messages are accepted with "250 OK". Refused messages are not in `messages` but are
      counted in `refused`.
    - `rcpt_replies`: likewise for the next RCPT commands (`"550 5.1.1 no such user"`).
    - `stalls`: seconds to wait before answering each of the next DATA commands (a server
      that hangs: `sink.stalls.append(5.0)`); the message is then taken as usual.
    - Authentication is optional; a client that logs in must use `username`/`password`
      (the login is recorded on each message).
    - `settings()`: the `Settings` overrides that point a service at this server.
    """

    username = "kranj"
    password = "smtp-test-password"

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.messages: list[ReceivedMail] = []
        self.replies: collections.deque[str] = collections.deque()
        self.refused: list[bytes] = []
        self.rcpt_replies: collections.deque[str] = collections.deque()
        self.stalls: collections.deque[float] = collections.deque()
        self._controller: Any = None

    # aiosmtpd handler hook
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.rcpt_replies:
            reply = self.rcpt_replies.popleft()
            if not reply.startswith("2"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    # aiosmtpd handler hook
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        if self.stalls:
            await asyncio.sleep(self.stalls.popleft())
        if self.replies:
            reply = self.replies.popleft()
            if not reply.startswith("2"):
                self.refused.append(raw)
                return reply
        login = getattr(session, "login_data", None) or getattr(session, "auth_data", None)
        if isinstance(login, bytes):
            login = login.decode(errors="replace")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.messages.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw,
                message=message,  # type: ignore[arg-type]
                auth_login=str(login) if login else None,
            )
        )
        return "250 OK"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        login = getattr(auth_data, "login", b"") or b""
        password = getattr(auth_data, "password", b"") or b""
        ok = login == self.username.encode() and password == self.password.encode()
        return AuthResult(success=ok, handled=False, auth_data=login.decode() if ok else None)

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(
            self,
            hostname=self.host,
            port=self.port,
            authenticator=self._authenticate,
            auth_require_tls=False,
            auth_required=False,
            ready_timeout=10,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        await wait_until(
            lambda: len(self.messages) >= count,
            timeout=timeout,
            message=f"{count} email(s) at the SMTP sink (got {len(self.messages)})",
        )
        return self.messages[:count]

    def settings(self) -> dict[str, Any]:
        return {"smtp_host": self.host, "smtp_port": self.port, "smtp_starttls": False}
