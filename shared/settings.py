"""Configuration: every variable of CONTRACT.md, plus a few documented extensions.

All variables carry the `KRANJ_` prefix. Nothing here reads the environment at import
time: `Settings()` is built by each entry point and passed down (tests build their own).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import tempfile
import time as _time
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contact import country_code

SERVICES: tuple[str, ...] = ("events", "booking", "surveys", "notify")
DEFAULT_PORTS: dict[str, int] = {"events": 8001, "booking": 8002, "surveys": 8003, "notify": 8004}

ADMIN_TOKEN_MIN_LENGTH = 16  # KRANJ_ADMIN_TOKEN: full staff rights, so no short guessable value

ServiceName = Literal["events", "booking", "surveys", "notify"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KRANJ_", extra="ignore", env_ignore_empty=True)

    # --- CONTRACT.md ---------------------------------------------------------------
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    data_dir: Path = Path("./var")
    events_database_url: str | None = None
    booking_database_url: str | None = None
    surveys_database_url: str | None = None
    notify_database_url: str | None = None
    admin_token: SecretStr | None = None
    public_url: str | None = None
    secret_key: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "Kranj ZA vse <obvestila@kranj.si>"
    sms_gateway_url: str | None = None
    sms_gateway_token: SecretStr | None = None
    quiet_hours: str = "21:00-07:00"

    # --- extensions (documented in the README) ---------------------------------------
    accounts_database_url: str | None = Field(
        default=None,
        description="The identity store (staff accounts, sessions, API tokens) every service checks; "
        "default SQLite <data dir>/accounts.db",
    )
    http_host: str = "127.0.0.1"
    events_port: int = DEFAULT_PORTS["events"]
    booking_port: int = DEFAULT_PORTS["booking"]
    surveys_port: int = DEFAULT_PORTS["surveys"]
    notify_port: int = DEFAULT_PORTS["notify"]
    # Twice a group commit (shared.inbox, batches of up to 100): the next batch arrives while
    # one commits. With 100 the broker waited for each commit's ack before sending more
    # (ingest, five alternating pairs of make bench runs: 2,065-2,383 notices/s at 200,
    # 1,816-2,156 at 100; issue 20 §4).
    prefetch: int = Field(default=200, ge=1, le=1000)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    graceful_timeout: float = Field(default=20.0, gt=0)
    delivery_attempts: int = Field(default=8, ge=1, le=50)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    delivery_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description="The last resort for a claimed delivery that names no live worker (claims made before "
        "notify_0009): claimable again after this. A worker that stops heartbeating loses its claims after "
        "KRANJ_DELIVERY_STALE_SECONDS instead",
    )
    delivery_stale_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A notify process whose delivery worker has not heartbeat for this long is taken as gone: "
        "what it had claimed is claimed again at once, not after the lease (never longer than the lease). It "
        "heartbeats every sixth of this (5 s by default), and a living one keeps its claims however long its "
        "sending takes",
    )
    delivery_facts_v1: bool = Field(
        default=True,
        description="Deprecated: also publish one `notify.delivery.sent|failed` v1 event per delivery beside the "
        "v2 pages `notify.delivery.outcomes` (one per group commit of outcomes). The default turns false after "
        "2027-06-30; set it false once no consumer reads v1 (docs/operations.md)",
    )
    smtp_connections: int = Field(
        default=1,
        ge=1,
        le=50,
        description="SMTP connections notify sends over at once, per process (each reused). A process killed "
        "mid-send may repeat one email per connection (SMTP has no idempotency key); more connections send "
        "faster where the mail server takes them (make bench uses 16)",
    )
    smtp_timeout_seconds: float = Field(
        default=30,
        ge=1,
        le=600,
        description="Seconds notify waits for the SMTP server: to connect, for each reply, and for one email from "
        "MAIL to its last reply; then the email is a temporary failure, retried, and that connection is closed",
    )
    sms_gateway_timeout_seconds: float = Field(
        default=15,
        ge=1,
        le=120,
        description="Seconds notify waits for the SMS gateway's answer to one SMS (of them at most 5 to connect); "
        "then the SMS is a temporary failure, retried with the same Idempotency-Key",
    )
    sms_country_codes: str = Field(
        default="386",
        description="Comma-separated country calling codes that may receive SMS ('*' = any): stops SMS pumping; "
        "the APIs refuse (422) a phone of any other country",
    )
    sms_max_segments: int = Field(default=3, ge=1, le=10)
    sms_per_second: float = Field(default=10, ge=1, description="SMS handed to the gateway per second, per process")
    email_per_second: float = Field(default=50, ge=1, description="emails handed to SMTP per second, per process")
    sms_price_per_segment: float = Field(default=0.04, ge=0, description="EUR, for cost estimates")
    contact_retention_days: int = Field(
        default=90,
        ge=1,
        description="Finished deliveries (and file-outbox messages) older than this lose their contact data",
    )
    record_retention_days: int = Field(
        default=90,
        ge=1,
        description="Registrations and bookings lose the person's name and contacts this many days after the event "
        "or booking ended; the services' outbox copies of sent messages are deleted this many days after sending, "
        "and their inbox records of handled messages this many days after handling",
    )
    unconfirmed_signup_days: int = Field(
        default=7,
        ge=1,
        description="A sign-up nobody confirmed is deleted after this many days, and so is a contact added to a "
        "subscription but never confirmed",
    )

    # What an unconfirmed room request may hold (booking; docs/security.md): a resident's
    # pending requests per email or phone, and how long one holds its slot at most (a
    # room's own `request_ttl_hours` may be shorter; a request never holds past its start).
    booking_pending_per_contact: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Room requests awaiting a decision that one email address or phone number may hold at once",
    )
    booking_pending_max_hours: int = Field(
        default=7 * 24,
        ge=1,
        le=24 * 30,
        description="Hours an unapproved room request holds its slot at most before it expires (default 7 days)",
    )

    # Personal messages (a booking's or a registration's) to a contact nobody confirmed
    # (notify, services/notify/relay.py; docs/security.md): at most this many a day across
    # the platform, and per email address or phone number; the rest are not sent (counted).
    unconfirmed_daily_cap: int = Field(
        default=500,
        ge=0,
        description="Personal messages a day (Europe/Ljubljana) to contacts nobody confirmed, across the platform",
    )
    unconfirmed_per_contact_daily: int = Field(
        default=3,
        ge=0,
        description="Personal messages a day to one email address or phone number nobody confirmed",
    )

    # Who may publish what on the bus (shared/senders.py, README "Configuration"): a JSON
    # object {"<broker user>": {"ks", "topics", "urgent", "city_wide", "services", "facts"}},
    # "*" for everyone else. The file is read first, then the variable (an entry replaces
    # the default or file entry of the same user).
    senders: str | None = Field(
        default=None,
        description="JSON registry of bus senders and their rights, keyed by broker user (see shared/senders.py)",
    )
    senders_file: Path | None = Field(
        default=None, description="A JSON file in the format of KRANJ_SENDERS, read before KRANJ_SENDERS"
    )

    # Rate limits of the public forms and endpoints (shared/web/ratelimit.py), in the
    # notation of the `limits` library: "5/minute", "10 per 10 minutes", several joined
    # by ";". Counted per client address (X-Forwarded-For only from a trusted proxy,
    # uvicorn's FORWARDED_ALLOW_IPS) and, where the request carries one, per phone number
    # (E.164) and email address. Staff calls are never limited.
    rate_limit_enabled: bool = True
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where the counters live: memory:// (per process: every replica counts on its own, "
        "so N replicas allow N times the limit) or redis://host:6379/0 (shared by all replicas)",
    )
    rate_limit_subscribe: str = "5/minute"
    rate_limit_subscribe_contact: str = "3/hour"
    rate_limit_sms_code: str = "10/10 minutes"
    # Issue 15 (docs/security.md "Limits that stop abuse, not crowds"): registrations, room
    # requests and survey answers are limited per contact / per browser first; per address
    # only against floods (a class of 30 on one school address gets through).
    rate_limit_registration: str = "120/minute; 600/hour"
    rate_limit_registration_contact: str = "5/minute; 20/hour"
    rate_limit_booking: str = "120/minute; 600/hour"
    rate_limit_booking_contact: str = "5/minute; 20/hour"
    rate_limit_survey_answer: str = "120/minute; 600/hour"
    rate_limit_survey_answer_browser: str = "10/10 minutes; 30/day"
    rate_limit_link: str = "30/minute"
    rate_limit_link_address: str = "120/minute; 600/hour"
    # Staff login (shared/web/ratelimit.py LoginThrottle): failed attempts only; never a lockout.
    rate_limit_login: str = "10/minute; 100/hour"
    rate_limit_login_account: str = "5/15 minutes"
    rate_limit_login_account_global: str = "20/15 minutes"
    rate_limit_sms_inbound: str = "20/minute"
    rate_limit_pdf: str = "20/minute; 200/hour"

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        # Issue 15: a one-character bearer token with full rights was accepted.
        if value is not None and len(value.get_secret_value().strip()) < ADMIN_TOKEN_MIN_LENGTH:
            raise ValueError(
                f"must be at least {ADMIN_TOKEN_MIN_LENGTH} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or unset"
            )
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet_hours(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value

    @field_validator("senders")
    @classmethod
    def _check_senders(cls, value: str | None) -> str | None:
        if value:
            from .senders import parse_senders

            parse_senders(value)
        return value

    @field_validator(
        "rate_limit_subscribe",
        "rate_limit_subscribe_contact",
        "rate_limit_sms_code",
        "rate_limit_registration",
        "rate_limit_registration_contact",
        "rate_limit_booking",
        "rate_limit_booking_contact",
        "rate_limit_survey_answer",
        "rate_limit_survey_answer_browser",
        "rate_limit_link",
        "rate_limit_link_address",
        "rate_limit_sms_inbound",
        "rate_limit_pdf",
        "rate_limit_login",
        "rate_limit_login_account",
        "rate_limit_login_account_global",
    )
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"a rate limit must look like '5/minute' or '3 per hour; 20 per day', not {value!r}") from exc
        return value

    # --- derived values -------------------------------------------------------------
    def database_url(self, service: str) -> str:
        """The database of `service`, or of the identity store when `service` is "accounts"."""
        url = getattr(self, f"{service}_database_url")
        if not url:
            return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').resolve()}"
        return normalise_database_url(url)

    def port(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def local_url(self, service: str) -> str:
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.port(service)}"

    def public_base(self, service: str) -> str:
        """Where residents reach `service`; every link in a notice is built from this."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return self.local_url(service)

    def signing_key(self) -> str:
        """`KRANJ_SECRET_KEY`, or a key generated once into the data dir (local runs).

        Several processes may start together on a fresh data dir (`kranj up`): each writes
        a whole candidate key to a temporary file of its own and hard-links it to
        `secret.key`, which fails when the name exists. The link is atomic, so a reader sees
        either no file or a complete key, and every process ends up with the first one."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret.key"
        key = _read_key(path)
        if key:
            return key
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".secret.key.", dir=self.data_dir)  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # atomic, and never replaces: the first process wins
            except FileExistsError:
                stale = _read_key(path) == "" and _time.time() - path.stat().st_mtime > 10
                if stale:  # an empty file an older, non-atomic version left behind
                    os.replace(tmp, path)
            except OSError:  # a file system without hard links: exclusive create, then write
                with contextlib.suppress(FileExistsError):
                    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(out, "w") as f:
                        f.write(Path(tmp).read_text())
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        key = _read_key(path)
        for _ in range(40):  # only on the fallback path can a reader catch the writer mid-write
            if key:
                break
            _time.sleep(0.05)
            key = _read_key(path)
        if not key:
            raise RuntimeError(f"{path} is empty; delete it (a new key is then generated) or set KRANJ_SECRET_KEY")
        return key

    @property
    def quiet_window(self) -> tuple[time, time] | None:
        return parse_quiet_hours(self.quiet_hours)

    @property
    def sms_countries(self) -> list[str]:
        """`KRANJ_SMS_COUNTRY_CODES` as a list of calling codes without `+` (`["386"]`; `["*"]` = any)."""
        return list(_calling_codes(self.sms_country_codes))

    def sms_allowed(self, e164: str) -> bool:
        """May this E.164 number receive SMS? Only the configured countries (default +386)."""
        return self.sms_allowed_country(country_code(e164))

    def sms_allowed_country(self, code: int | None) -> bool:
        """May numbers of this country calling code (None: not a number) receive SMS?"""
        codes = _calling_codes(self.sms_country_codes)  # asked once per SMS: the setting read once
        return "*" in codes or str(code) in codes

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"


@functools.lru_cache(maxsize=8)
def _calling_codes(spec: str) -> tuple[str, ...]:
    return tuple(c.strip().lstrip("+") for c in spec.split(",") if c.strip())


def _read_key(path: Path) -> str | None:
    """The key in `path`; None when there is no such file."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def normalise_database_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async drivers."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgresql+psycopg://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """`"21:00-07:00"` -> (21:00, 07:00); `""`, `"off"` or `"none"` -> no quiet hours."""
    text = value.strip().lower()
    if text in ("", "off", "none"):
        return None
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError as exc:
        raise ValueError(f"KRANJ_QUIET_HOURS must look like 21:00-07:00, not {value!r}") from exc
    return start, end


def settings_problem(exc: Exception) -> str:
    """One line naming each bad `KRANJ_*` variable of a settings ValidationError."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    return "; ".join(
        f"KRANJ_{'_'.join(str(p) for p in e['loc']).upper()}: {str(e['msg']).removeprefix('Value error, ')}"
        for e in errors()
    )


def load_or_exit(who: str = "kranj") -> Settings:
    """`Settings()` from the environment; a bad variable ends the process with one clear line."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        raise SystemExit(f"{who}: invalid configuration: {settings_problem(exc)}") from None
