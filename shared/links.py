"""Signed links residents use without logging in (cancel a booking or a registration,
see a request's status). One key for the platform, one salt per kind of link, so a link
of one kind never opens another."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer

from .settings import Settings


class SignedIds:
    """Signs one id into a URL-safe token and reads it back (None when forged or altered)."""

    def __init__(self, settings: Settings, salt: str) -> None:
        self._serializer = URLSafeSerializer(settings.signing_key(), salt=salt)

    def sign(self, value: str) -> str:
        return str(self._serializer.dumps(value))

    def read(self, token: str) -> str | None:
        try:
            value = self._serializer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None
