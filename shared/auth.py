"""Staff identity, one mechanism for every service.

A staff token is signed with `KRANJ_SECRET_KEY` (shared by all services), so each service
verifies it alone, without calling anyone. `KRANJ_ADMIN_TOKEN`, when set, is a bootstrap
token with full rights. Staff web pages use the same token, kept in a secure cookie after
`/login`. Roles: `admin` (everything), `ks-staff` (their KS), `organiser`.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .settings import Settings

Role = Literal["admin", "ks-staff", "organiser"]
ROLES: tuple[str, ...] = ("admin", "ks-staff", "organiser")
COOKIE_NAME = "kranj_staff"
TOKEN_SALT = "kranj.staff-token.v1"
TOKEN_PREFIX = "kzv1."


@dataclass(frozen=True)
class Staff:
    subject: str
    role: str
    ks: tuple[str, ...] = ()

    def may_act_for(self, ks: str) -> bool:
        return self.role == "admin" or ks in self.ks or "*" in self.ks


class TokenSigner:
    def __init__(self, settings: Settings) -> None:
        self._serializer = URLSafeTimedSerializer(settings.signing_key(), salt=TOKEN_SALT)
        admin = settings.admin_token.get_secret_value() if settings.admin_token else None
        self._admin_token = admin or None

    def create(self, *, role: str, ks: list[str] | None = None, subject: str | None = None) -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        payload = {"sub": subject or f"{role}-{secrets.token_hex(4)}", "role": role, "ks": sorted(ks or [])}
        return TOKEN_PREFIX + self._serializer.dumps(payload)

    def verify(self, token: str, *, max_age_days: int = 365) -> Staff | None:
        if self._admin_token and hmac.compare_digest(token.encode(), self._admin_token.encode()):
            return Staff(subject="admin-token", role="admin", ks=("*",))
        if not token.startswith(TOKEN_PREFIX):
            return None
        try:
            payload = self._serializer.loads(token[len(TOKEN_PREFIX) :], max_age=max_age_days * 86400)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(payload, dict) or payload.get("role") not in ROLES:
            return None
        return Staff(subject=str(payload.get("sub")), role=payload["role"], ks=tuple(payload.get("ks") or ()))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE_NAME)


def current_staff(request: Request) -> Staff:
    """FastAPI dependency: the staff member behind the request, or 401."""
    signer: TokenSigner = request.app.state.signer
    token = _bearer(request)
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Prijava je potrebna: pošljite glavo Authorization: Bearer <žeton>. / A staff token is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    staff = signer.verify(token)
    if staff is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Žeton ni veljaven ali je potekel. / The token is invalid or expired.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return staff


StaffDep = Annotated[Staff, Depends(current_staff)]


def require_ks(staff: Staff, ks: str) -> None:
    if not staff.may_act_for(ks):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Nimate pravic za KS {ks}. / You may not act for KS {ks}.",
        )
