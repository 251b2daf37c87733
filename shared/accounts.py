"""The platform's identity store: staff accounts, login sessions and API tokens.

Its own database (`KRANJ_ACCOUNTS_DATABASE_URL`, default SQLite `<data dir>/accounts.db`),
not any service's: every service checks each staff request against it with one indexed
lookup, so a revoked token or a closed session stops working at once, everywhere.

- Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile).
- API tokens and session cookies are 256-bit random strings; only their SHA-256 is stored
  (a slow hash adds nothing to a random secret of that size, and lookups stay cheap).
- API tokens expire: 90 days by default (`kranj token create --days N`, at most 730).
- A session ends after 12 hours without use, after 7 days in any case, at logout, and when
  its account is disabled or its password changed.

`KRANJ_ADMIN_TOKEN` (CONTRACT.md) is checked in `shared.auth`, not here.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import clock
from .contracts.ks import ALL_KS, KS_NAMES
from .db import _sqlite_pragmas
from .models import UTCDateTime
from .settings import Settings

ROLES: tuple[str, ...] = ("admin", "ks-staff", "organiser")
TOKEN_PREFIX = "kzv2."
SESSION_PREFIX = "kzs."
TOKEN_DAYS_DEFAULT = 90
TOKEN_DAYS_MAX = 730
SESSION_IDLE = timedelta(hours=12)
SESSION_MAX = timedelta(days=7)
TOUCH_EVERY = timedelta(minutes=1)  # last-seen/last-used writes at most this often

metadata = sa.MetaData()
accounts_table = sa.Table(
    "staff_accounts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(400), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("ks", sa.Text(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("failed_attempts", sa.Integer(), nullable=False),
    sa.Column("locked_until", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("password_changed_at", UTCDateTime(), nullable=False),
    sa.Column("last_login_at", UTCDateTime(), nullable=True),
)
sessions_table = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("user_agent", sa.String(300), nullable=False),
)
tokens_table = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("ks", sa.Text(), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=True),  # accounts_0002; NULL is never written
)

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def utcnow() -> datetime:
    return clock.now()


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalise_email(email: str) -> str:
    return email.strip().lower()


class AccountError(ValueError):
    """A request the store refuses (unknown role or KS, duplicate email, weak password)."""


def check_scope(role: str, ks: Iterable[str]) -> list[str]:
    """The KS list for `role`, validated: known slugs (or "*"); ks-staff needs at least one."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    cleaned = list(dict.fromkeys(k.strip() for k in ks if k.strip()))
    unknown = [k for k in cleaned if k != ALL_KS and k not in KS_NAMES]
    if unknown:
        raise AccountError(f"unknown KS {', '.join(unknown)}; use the KS slugs of Kranj (e.g. primskovo)")
    if role == "ks-staff" and not cleaned:
        raise AccountError("ks-staff needs at least one KS")
    return sorted(cleaned)


def check_password(password: str) -> None:
    if len(password) < 10:
        raise AccountError("Geslo mora imeti vsaj 10 znakov. / The password needs at least 10 characters.")
    if len(password) > 1024:
        raise AccountError("Geslo je predolgo. / The password is too long.")


def _ks_text(ks: Iterable[str]) -> str:
    return ",".join(ks)


def _ks_tuple(text: str) -> tuple[str, ...]:
    return tuple(k for k in (text or "").split(",") if k)


@dataclass(frozen=True)
class Identity:
    """Who is behind a token or a session (`shared.auth.Staff` is built from it)."""

    subject: str
    role: str
    ks: tuple[str, ...]
    kind: str  # "token" or "session"
    ref: str  # token id, or session id (the SHA-256 of the cookie)


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    display_name: str
    role: str
    ks: tuple[str, ...]
    active: bool
    locked_until: datetime | None
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class TokenInfo:
    id: str
    role: str
    ks: tuple[str, ...]
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class LoginResult:
    """`account` on success, else None."""

    account: Account | None = None


def _account(row: sa.Row) -> Account:
    return Account(
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        role=row.role,
        ks=_ks_tuple(row.ks),
        active=bool(row.active),
        locked_until=row.locked_until,
        created_at=row.created_at,
        last_login_at=row.last_login_at,
    )


class AccountStore:
    """One handle on the identity store per process (a small connection pool)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict = {"connect_args": {"timeout": 30}} if self.is_sqlite else {
            "pool_size": 5,
            "max_overflow": 5,
            "pool_pre_ping": True,
        }
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._ready = False
        self._ready_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountStore:
        return cls(settings.database_url("accounts"))

    async def ready(self) -> None:
        """Bring the schema to the newest migration, once per process (cheap when current)."""
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                from .migrations import ACCOUNTS, upgrade_async

                await upgrade_async(ACCOUNTS, self.url)
                self._ready = True

    async def dispose(self) -> None:
        await self.engine.dispose()

    # ----------------------------------------------------------------------------------
    # accounts
    # ----------------------------------------------------------------------------------
    async def add_account(
        self, *, email: str, password: str, role: str, ks: Iterable[str] = (), display_name: str = ""
    ) -> Account:
        await self.ready()
        email = normalise_email(email)
        if "@" not in email or len(email) > 320:
            raise AccountError(f"not an email address: {email!r}")
        scope = check_scope(role, ks)
        check_password(password)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        now = utcnow()
        values = {
            "id": secrets.token_hex(8),
            "email": email,
            "display_name": display_name.strip()[:200],
            "password_hash": hashed,
            "role": role,
            "ks": _ks_text(scope),
            "active": True,
            "failed_attempts": 0,
            "locked_until": None,
            "created_at": now,
            "password_changed_at": now,
            "last_login_at": None,
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(accounts_table.insert().values(**values))
        except sa.exc.IntegrityError:
            raise AccountError(f"an account for {email} exists already") from None
        return await self.get_account(email)  # type: ignore[return-value]

    async def get_account(self, email: str) -> Account | None:
        await self.ready()
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(accounts_table).where(accounts_table.c.email == normalise_email(email)))
            ).first()
        return _account(row) if row else None

    async def password_hash(self, email: str) -> str | None:
        """The stored hash (for tests and audits: it is never the password)."""
        await self.ready()
        async with self.engine.connect() as conn:
            return await conn.scalar(
                sa.select(accounts_table.c.password_hash).where(accounts_table.c.email == normalise_email(email))
            )

    async def list_accounts(self) -> list[Account]:
        await self.ready()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(accounts_table).order_by(accounts_table.c.email))).all()
        return [_account(r) for r in rows]

    async def set_password(self, email: str, password: str) -> bool:
        """New password; ends the account's sessions and lifts a lockout. False if no such account."""
        await self.ready()
        check_password(password)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        now = utcnow()
        async with self.engine.begin() as conn:
            account_id = await conn.scalar(
                sa.update(accounts_table)
                .where(accounts_table.c.email == normalise_email(email))
                .values(password_hash=hashed, password_changed_at=now, failed_attempts=0, locked_until=None)
                .returning(accounts_table.c.id)
            )
            if account_id is None:
                return False
            await self._revoke_sessions_of(conn, account_id, now)
        return True

    async def set_active(self, email: str, active: bool) -> bool:
        """Disable (ending every session) or enable an account. False if no such account."""
        await self.ready()
        now = utcnow()
        async with self.engine.begin() as conn:
            account_id = await conn.scalar(
                sa.update(accounts_table)
                .where(accounts_table.c.email == normalise_email(email))
                .values(active=active)
                .returning(accounts_table.c.id)
            )
            if account_id is None:
                return False
            if not active:
                await self._revoke_sessions_of(conn, account_id, now)
        return True

    @staticmethod
    async def _revoke_sessions_of(conn: AsyncConnection, account_id: str, now: datetime) -> None:
        await conn.execute(
            sa.update(sessions_table)
            .where(sessions_table.c.account_id == account_id, sessions_table.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    # ----------------------------------------------------------------------------------
    # login and sessions
    # ----------------------------------------------------------------------------------
    async def authenticate(self, email: str, password: str) -> LoginResult:
        """Check a password: `LoginResult(account)` when right, else `LoginResult()`.

        No account is ever locked by wrong passwords (issue 15: an outsider could keep staff
        out, and the lockout told which accounts exist). Failed attempts are throttled per
        address and per (account, address) by `shared.web.ratelimit.LoginThrottle`. An
        unknown email costs the same Argon2 verification as a wrong password."""
        await self.ready()
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(accounts_table).where(accounts_table.c.email == normalise_email(email)))
            ).first()
        now = utcnow()
        if row is None or not row.active:
            await asyncio.to_thread(_verify, row.password_hash if row else _DUMMY_HASH, password)
            return LoginResult()
        if not await asyncio.to_thread(_verify, row.password_hash, password):
            return LoginResult()
        values: dict = {"failed_attempts": 0, "locked_until": None, "last_login_at": now}
        if _hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = await asyncio.to_thread(_hasher.hash, password)
        async with self.engine.begin() as conn:
            await conn.execute(sa.update(accounts_table).where(accounts_table.c.id == row.id).values(**values))
        return LoginResult(account=_account(row))

    async def create_session(self, account: Account, *, user_agent: str = "") -> str:
        """A new session; returns the cookie value (only its SHA-256 is stored)."""
        await self.ready()
        cookie = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                sessions_table.insert().values(
                    id=sha256(cookie),
                    account_id=account.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + SESSION_IDLE,
                    revoked_at=None,
                    user_agent=user_agent[:300],
                )
            )
        return cookie

    async def session_identity(self, cookie: str) -> Identity | None:
        """The staff member behind a session cookie, if the session is alive; slides its expiry."""
        if not cookie.startswith(SESSION_PREFIX) or len(cookie) > 200:
            return None
        await self.ready()
        session_id = sha256(cookie)
        now = utcnow()
        query = (
            sa.select(
                sessions_table.c.created_at,
                sessions_table.c.last_seen_at,
                sessions_table.c.expires_at,
                accounts_table.c.email,
                accounts_table.c.role,
                accounts_table.c.ks,
            )
            .join(accounts_table, accounts_table.c.id == sessions_table.c.account_id)
            .where(
                sessions_table.c.id == session_id,
                sessions_table.c.revoked_at.is_(None),
                sessions_table.c.expires_at > now,
                accounts_table.c.active.is_(True),
            )
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.created_at + SESSION_MAX <= now:
            return None
        if now - row.last_seen_at >= TOUCH_EVERY:
            async with self.engine.begin() as conn:
                await conn.execute(
                    sa.update(sessions_table)
                    .where(sessions_table.c.id == session_id)
                    .values(last_seen_at=now, expires_at=min(now + SESSION_IDLE, row.created_at + SESSION_MAX))
                )
        return Identity(subject=row.email, role=row.role, ks=_ks_tuple(row.ks), kind="session", ref=session_id)

    async def revoke_session(self, cookie: str) -> bool:
        await self.ready()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(sessions_table)
                .where(sessions_table.c.id == sha256(cookie), sessions_table.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return bool(result.rowcount)

    # ----------------------------------------------------------------------------------
    # API tokens
    # ----------------------------------------------------------------------------------
    async def create_token(
        self, *, role: str, ks: Iterable[str] = (), label: str = "", days: int = TOKEN_DAYS_DEFAULT
    ) -> tuple[str, str]:
        """A new API token valid for `days` (1–730): returns (id, token). The token is shown
        once; only its hash is kept."""
        if not 1 <= days <= TOKEN_DAYS_MAX:
            raise AccountError(f"a token lives 1 to {TOKEN_DAYS_MAX} days, not {days}")
        await self.ready()
        scope = check_scope(role, ks)
        now = utcnow()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        async with self.engine.begin() as conn:
            await conn.execute(
                tokens_table.insert().values(
                    id=token_id,
                    token_hash=sha256(token),
                    role=role,
                    ks=_ks_text(scope),
                    label=label.strip()[:200],
                    created_at=now,
                    last_used_at=None,
                    revoked_at=None,
                    expires_at=now + timedelta(days=days),
                )
            )
        return token_id, token

    async def token_identity(self, token: str) -> Identity | None:
        """The scope of a live API token (one lookup by its SHA-256; not revoked, not expired), else None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        await self.ready()
        now = utcnow()
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(tokens_table).where(
                        tokens_table.c.token_hash == sha256(token),
                        tokens_table.c.revoked_at.is_(None),
                        tokens_table.c.expires_at > now,
                    )
                )
            ).first()
        if row is None:
            return None
        if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
            async with self.engine.begin() as conn:
                await conn.execute(sa.update(tokens_table).where(tokens_table.c.id == row.id).values(last_used_at=now))
        subject = row.label or f"token-{row.id}"
        return Identity(subject=subject, role=row.role, ks=_ks_tuple(row.ks), kind="token", ref=row.id)

    async def list_tokens(self) -> list[TokenInfo]:
        await self.ready()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(tokens_table).order_by(tokens_table.c.created_at))).all()
        return [
            TokenInfo(
                id=r.id,
                role=r.role,
                ks=_ks_tuple(r.ks),
                label=r.label,
                created_at=r.created_at,
                last_used_at=r.last_used_at,
                revoked_at=r.revoked_at,
                expires_at=r.expires_at,
            )
            for r in rows
        ]

    async def revoke_token(self, token_id: str) -> bool:
        """Revoke at once (every service checks each request). False if unknown or already revoked."""
        await self.ready()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(tokens_table)
                .where(tokens_table.c.id == token_id.strip(), tokens_table.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return bool(result.rowcount)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
