"""Staff identity, one mechanism for every service.

Who a request comes from is decided once per request by `IdentityMiddleware`, against
the platform's identity store (`shared.accounts`, its own database): an API token in
`Authorization: Bearer <token>` (only its SHA-256 is stored; revoked means refused at
once, in every service), or the session cookie set by the `/login` page (staff accounts
with Argon2-hashed passwords). `KRANJ_ADMIN_TOKEN`, when set, is a bootstrap bearer token
with full rights. Roles: `admin` (everything), `ks-staff` (their KS), `organiser`.

Routes keep using `StaffDep`, `current_staff(request)` and `require_ks(staff, ks)`; a write
that changes an existing record uses `require_change(staff, current_ks, new_ks)` (or
`change_refusal` to report one row of an import): the KS the record belongs to now counts
as well as the one it is moved to.

What each role may do is the one table in `shared.permissions` (role × action × scope).
Every staff route declares its action with `Permit("events.publish", record=loader)`: one
dependency checks the credentials (401), the role's right to the action (403) and, with a
record loader, the record's KS and owner (403; 404 from the loader) — before the body is even
validated. Routes that residents use too (a staff token only adds powers) declare
`MaybeStaff("action")` and call `authorize(...)`, the same check. Both publish the action as
`x-permission` in the OpenAPI document.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Request, status
from starlette.types import ASGIApp, Receive, Scope, Send

from . import permissions
from .accounts import ROLES, AccountStore, Identity, sha256
from .errors import Bilingual
from .settings import Settings

log = logging.getLogger("kranj.auth")

Role = Literal["admin", "ks-staff", "organiser"]
COOKIE_NAME = "kranj_staff"  # the session cookie (services test for its presence)
STATE_KEY = "kranj_auth"

__all__ = [
    "COOKIE_NAME",
    "ROLES",
    "Auth",
    "Grant",
    "IdentityMiddleware",
    "MaybeStaff",
    "Permit",
    "Record",
    "Staff",
    "StaffDep",
    "StaffPage",
    "auth_of",
    "authorize",
    "change_refusal",
    "current_staff",
    "may",
    "optional_staff",
    "require_change",
    "require_ks",
]


@dataclass(frozen=True)
class Staff:
    subject: str
    role: str
    ks: tuple[str, ...] = ()

    def may_act_for(self, ks: str) -> bool:
        return self.role == "admin" or ks in self.ks or "*" in self.ks

    def may_change(self, current_ks: str | None, new_ks: str | None = None) -> bool:
        """A write to a record: allowed only where the staff member acts for the KS the record
        belongs to NOW (`current_ks`; None for a new record) and for the KS it will belong to
        afterwards (`new_ks`; None when the KS does not change)."""
        return next(self._refused(current_ks, new_ks), None) is None

    def _refused(self, current_ks: str | None, new_ks: str | None) -> Iterator[str]:
        for ks in dict.fromkeys(k for k in (current_ks, new_ks) if k is not None):
            if not self.may_act_for(ks):
                yield ks


@dataclass(frozen=True)
class Auth:
    """What `IdentityMiddleware` found on one request."""

    staff: Staff | None = None
    via: str | None = None  # "bearer" or "session"; None when no credentials came
    session_ref: str | None = None  # SHA-256 of the session cookie (also when it is not valid)
    problem: str | None = None  # why the credentials that came were refused


NO_AUTH = Auth()


def _staff(identity: Identity) -> Staff:
    return Staff(subject=identity.subject, role=identity.role, ks=identity.ks)


def bearer_of(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class IdentityMiddleware:
    """Pure ASGI: resolves the bearer token or the session cookie once per HTTP request
    (one indexed lookup; none when the request carries neither) into `request.state`."""

    def __init__(self, app: ASGIApp, *, accounts: AccountStore, settings: Settings) -> None:
        self.app = app
        self.accounts = accounts
        admin = settings.admin_token.get_secret_value() if settings.admin_token else None
        self._admin_token = admin or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[STATE_KEY] = await self.resolve(scope)
        await self.app(scope, receive, send)

    async def resolve(self, scope: Scope) -> Auth:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token = bearer_of(headers)
        if token is not None:
            if self._admin_token and hmac.compare_digest(token.encode(), self._admin_token.encode()):
                return Auth(Staff(subject="admin-token", role="admin", ks=("*",)), via="bearer")
            identity = await self._lookup(self.accounts.token_identity, token)
            if identity is None:
                return Auth(via="bearer", problem="invalid")
            return Auth(_staff(identity), via="bearer")
        cookie = _cookie(headers.get("cookie", ""), COOKIE_NAME)
        if not cookie:
            return NO_AUTH
        identity = await self._lookup(self.accounts.session_identity, cookie)
        if identity is None:
            return Auth(via="session", session_ref=sha256(cookie), problem="expired")
        return Auth(_staff(identity), via="session", session_ref=identity.ref)

    @staticmethod
    async def _lookup(fn: Any, value: str) -> Identity | None:
        try:
            return await fn(value)
        except Exception:  # noqa: BLE001 - the store is down: refuse, say so in the log
            log.exception("identity store lookup failed")
            return None


def _cookie(header: str, name: str) -> str | None:
    from http.cookies import CookieError, SimpleCookie

    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def auth_of(request: Request) -> Auth:
    return getattr(request.state, STATE_KEY, NO_AUTH)


def current_staff(request: Request) -> Staff:
    """FastAPI dependency: the staff member behind the request, or 401."""
    auth = auth_of(request)
    if auth.staff is not None:
        return auth.staff
    if auth.via is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Prijava je potrebna: pošljite glavo Authorization: Bearer <žeton> ali se prijavite na /login. "
            "/ A staff token is required (or log in at /login).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if auth.via == "session":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Seja je potekla ali je bila zaprta: prijavite se znova na /login. "
            "/ Your session has expired or was closed: log in again at /login.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "Žeton ni veljaven ali je bil preklican. / The token is invalid or expired (or was revoked).",
        headers={"WWW-Authenticate": "Bearer"},
    )


StaffDep = Annotated[Staff, Depends(current_staff)]


def require_ks(staff: Staff, ks: str) -> None:
    if not staff.may_act_for(ks):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Nimate pravic za KS {ks}. / You may not act for KS {ks}.",
        )


def change_refusal(staff: Staff, current_ks: str | None, new_ks: str | None = None) -> Bilingual | None:
    """Why `staff` may not write a record that belongs to `current_ks` now (None: a new
    record) and to `new_ks` afterwards (None: unchanged) — or None when they may. The one
    check for every write that changes an existing record (a room moved by an import, a
    booking approved, an event edited): the record's current KS counts, not only the KS the
    request names. Slovenian first, English second."""
    refused = next(staff._refused(current_ks, new_ks), None)
    if refused is None:
        return None
    if refused == current_ks and current_ks != new_ks and new_ks is not None:
        return Bilingual(f"zapis pripada KS {refused}, za katero nimate pravic", f"the record belongs to KS {refused}")
    return Bilingual(f"nimate pravic za KS {refused}", f"you may not act for KS {refused}")


def require_change(staff: Staff, current_ks: str | None, new_ks: str | None = None) -> None:
    """`change_refusal` as a 403 for routes and use cases."""
    _raise(change_refusal(staff, current_ks, new_ks))


# ======================================================================================
# The permission table, enforced (shared.permissions holds the table itself)
# ======================================================================================
@dataclass(frozen=True)
class Record:
    """What a permission check needs to know of one record: its KS now and who created it."""

    ks: str
    owner: str | None = None


RecordLoader = Callable[[Request], Awaitable[Record]]


@dataclass(frozen=True)
class Grant(Staff):
    """A staff member allowed `action` in `scope` (from the permission table): usable wherever
    a `Staff` is; `require(...)` checks one more record or KS against the same scope."""

    action: str = ""
    scope: str = ""

    def refusal(self, current_ks: str | None, new_ks: str | None = None, owner: str | None = None) -> Bilingual | None:
        refused = change_refusal(self, current_ks, new_ks)
        if refused is not None:
            return refused
        if self.scope == "own-record" and current_ks is not None and owner != self.subject:
            return Bilingual(
                "to ni vaš zapis: organizator ureja le dogodke, ki jih je ustvaril sam",
                "not your record: organisers act only on what they created",
            )
        return None

    def require(self, current_ks: str | None, new_ks: str | None = None, owner: str | None = None) -> None:
        _raise(self.refusal(current_ks, new_ks, owner))

    def require_record(self, record: Record, new_ks: str | None = None) -> None:
        self.require(record.ks, new_ks, record.owner)


def _raise(refusal: Bilingual | None) -> None:
    if refusal is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(refusal.sentence()))


def grant_refusal(staff: Staff, action: str) -> Grant | Bilingual:
    scope = permissions.scope_of(staff.role, action)
    if scope is None:
        return Bilingual(
            f"vloga {staff.role} tega ne sme ({action})", f"the role {staff.role} may not do this ({action})"
        )
    return Grant(subject=staff.subject, role=staff.role, ks=staff.ks, action=action, scope=scope)


def authorize(staff: Staff, action: str, record: Record | None = None, *, new_ks: str | None = None) -> Grant:
    """The one check of the permission table: `staff` may perform `action` (else 403) on
    `record` (its KS now, and its owner where the scope is own records) and, for a write that
    names a KS (a new record, a move), `new_ks`."""
    found = grant_refusal(staff, action)
    if isinstance(found, Bilingual):
        _raise(found)
        raise AssertionError  # unreachable
    if record is not None or new_ks is not None:
        found.require(record.ks if record else None, new_ks, record.owner if record else None)
    return found


def may(staff: Staff | None, action: str, record: Record | None = None) -> bool:
    """`authorize` as a yes/no (for what a page shows, or a reduced public view)."""
    if staff is None:
        return False
    try:
        authorize(staff, action, record)
    except HTTPException:
        return False
    return True


def Permit(action: str, record: RecordLoader | None = None) -> Any:  # noqa: N802 - reads as a declaration
    """`staff: Annotated[Grant, Permit("events.publish", record=event_record)]`: the route's
    declared action, checked before the handler (and before the body is validated)."""
    permissions.scope_of("admin", action)  # an action the table does not know fails at import

    async def permit(request: Request, staff: Annotated[Staff, Depends(current_staff)]) -> Grant:
        return authorize(staff, action, await record(request) if record is not None else None)

    permit.permission = action  # type: ignore[attr-defined]
    return Depends(permit)


def StaffPage(action: str, record: RecordLoader | None = None) -> Any:  # noqa: N802 - reads as a declaration
    """`Permit` for HTML pages: the same check (401, 403, the record's KS) and the same
    `x-permission` in the OpenAPI document; a browser without a valid session is sent to
    `/login?next=<this page>` instead of a 401. Every staff page of every service declares
    its action this way (`grant: Annotated[Grant, StaffPage("booking.read")]`)."""
    permissions.scope_of("admin", action)  # an action the table does not know fails at import

    async def staff_page(request: Request) -> Grant:
        if auth_of(request).staff is None and "text/html" in request.headers.get("accept", ""):
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(
                status.HTTP_303_SEE_OTHER,
                "Prijavite se. / Please log in.",
                headers={"Location": f"/login?{urlencode({'next': here})}"},
            )
        staff = current_staff(request)
        return authorize(staff, action, await record(request) if record is not None else None)

    staff_page.permission = action  # type: ignore[attr-defined]
    return Depends(staff_page)


def optional_staff(request: Request) -> Staff | None:
    """The staff member behind the request; None when it carries no credentials; 401 when it
    carries credentials that are not valid."""
    if auth_of(request).via is None:
        return None
    return current_staff(request)


def MaybeStaff(action: str) -> Any:  # noqa: N802 - reads as a declaration
    """A route residents use too, where a staff token adds powers (`action`): the staff member
    or None. The handler calls `authorize(staff, action, record)` where the power is used."""
    permissions.scope_of("admin", action)

    def maybe(request: Request) -> Staff | None:
        return optional_staff(request)

    maybe.permission = action  # type: ignore[attr-defined]
    maybe.optional = True  # type: ignore[attr-defined]
    return Depends(maybe)


def permission_of(dependant: Any) -> tuple[str, bool] | None:
    """The action a route declares (and whether staff is optional there), from its dependencies."""
    for sub in dependant.dependencies:
        action = getattr(sub.call, "permission", None)
        if action is not None:
            return action, bool(getattr(sub.call, "optional", False))
        found = permission_of(sub)
        if found is not None:
            return found
    return None
