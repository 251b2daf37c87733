"""`kranj token` (staff API tokens) and `kranj staff` (staff accounts for the /login page)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

import typer

from shared import clock
from shared.settings import Settings

from .common import (
    err,
    fail,
    out,
)

token_app = typer.Typer(help="Staff API tokens (stored hashed, revocable).", no_args_is_help=True)
staff_app = typer.Typer(help="Staff accounts: email and password for the /login page of every service.", no_args_is_help=True)


class Role(str, Enum):
    admin = "admin"
    ks_staff = "ks-staff"
    organiser = "organiser"


# --------------------------------------------------------------------------------------
# kranj token create / list / revoke, kranj staff add / passwd / disable / enable / list
# --------------------------------------------------------------------------------------
def _accounts_run(settings: Settings, work: Any) -> Any:
    """Run `work(store)` against the identity store (migrated first), then close it."""
    from shared.accounts import AccountStore

    async def go() -> Any:
        store = AccountStore.from_settings(settings)
        try:
            await store.ready()
            return await work(store)
        finally:
            await store.dispose()

    return asyncio.run(go())


def _checked_ks(role: Role, ks: list[str] | None) -> list[str]:
    from shared.contracts.ks import ALL_KS, KS_NAMES

    ks = list(dict.fromkeys(ks or []))
    unknown = [k for k in ks if k != ALL_KS and k not in KS_NAMES]
    if unknown:
        raise fail(f"kranj: unknown KS {', '.join(unknown)}; use the KS slugs of Kranj (e.g. primskovo)", 2)
    if role is Role.ks_staff and not ks:
        raise fail("kranj: a ks-staff token needs at least one --ks", 2)
    return ks


def _scope(role: str, ks: Iterable[str]) -> str:
    ks = list(ks)
    return "every KS" if role == "admin" or "*" in ks else ", ".join(ks) or "no KS"


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _short(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="admin, ks-staff or organiser.")],
    ks: Annotated[list[str] | None, typer.Option("--ks", help="KS the token may act for (repeatable).")] = None,
    label: Annotated[
        str | None, typer.Option("--label", "--subject", help="Who or what the token is for (shown in lists and logs).")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=730, help="Days until the token expires (1–730).")] = 90,
) -> None:
    """Print a new staff API token to stdout, once. Only its SHA-256 is stored; it expires
    after --days (default 90); `kranj token revoke ID` ends it at once in every service."""
    ks = _checked_ks(role, ks)
    settings = Settings()
    token_id, token = _accounts_run(
        settings, lambda store: store.create_token(role=role.value, ks=ks, label=label or "", days=days)
    )
    out(token)
    err(
        f"kranj: {role.value} token {token_id} for {_scope(role.value, ks)}, valid {days} days. "
        f"Shown only now: keep it secret. "
        f"/ Žeton {token_id} je prikazan samo zdaj: hranite ga na varnem. Preklic: kranj token revoke {token_id}"
    )


@token_app.command("list")
def token_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The API tokens (never the tokens themselves): id, role, KS, label, created, expires, last used, revoked."""
    tokens = _accounts_run(Settings(), lambda store: store.list_tokens())
    if as_json:
        out(json.dumps([asdict(t) for t in tokens], ensure_ascii=False, indent=2, default=_json_value))
        return
    if not tokens:
        out("Ni žetonov. / No tokens.")
        return
    out(f"{'id':<13} {'role':<10} {'ks':<20} {'created':<17} {'expires':<17} {'last used':<17} {'revoked':<17} label")
    for t in tokens:
        out(
            f"{t.id:<13} {t.role:<10} {_scope(t.role, t.ks)[:20]:<20} {_short(t.created_at):<17} "
            f"{_short(t.expires_at):<17} {_short(t.last_used_at):<17} {_short(t.revoked_at):<17} {t.label}"
        )


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (kranj token list).")]) -> None:
    """Revoke a token: every service refuses it from the next request on."""
    if not _accounts_run(Settings(), lambda store: store.revoke_token(token_id)):
        raise fail(f"kranj: ni veljavnega žetona {token_id}. / No live token with id {token_id}.")
    out(f"Žeton {token_id} je preklican. / Token {token_id} revoked.")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Geslo / Password", hide_input=True, confirmation_prompt=True)
    return str(password)


@staff_app.command("add")
def staff_add(
    email: Annotated[str, typer.Option(help="The login: the staff member's email address.")],
    role: Annotated[Role, typer.Option(help="admin (city), ks-staff (their KS) or organiser.")],
    ks: Annotated[list[str] | None, typer.Option("--ks", help="KS the account may act for (repeatable).")] = None,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Create a staff account (the password is asked for, or read with --password-stdin; stored as an Argon2 hash)."""
    from shared.accounts import AccountError

    ks = _checked_ks(role, ks)
    password = _read_password(password_stdin)
    try:
        account = _accounts_run(
            Settings(),
            lambda store: store.add_account(email=email, password=password, role=role.value, ks=ks, display_name=name),
        )
    except AccountError as exc:
        raise fail(f"kranj: {exc}", 2) from None
    out(
        f"Račun {account.email} ({account.role}, {_scope(account.role, account.ks)}) je ustvarjen. "
        f"/ Account {account.email} created."
    )


@staff_app.command("passwd")
def staff_passwd(
    email: Annotated[str, typer.Option(help="The account's email address.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Set a new password; the account's open sessions end and a lockout is lifted."""
    from shared.accounts import AccountError

    password = _read_password(password_stdin)
    try:
        found = _accounts_run(Settings(), lambda store: store.set_password(email, password))
    except AccountError as exc:
        raise fail(f"kranj: {exc}", 2) from None
    if not found:
        raise fail(f"kranj: ni računa {email}. / No account {email}.")
    out(f"Geslo za {email} je spremenjeno; odprte seje so zaprte. / Password changed; open sessions ended.")


def _set_active(email: str, active: bool) -> None:
    if not _accounts_run(Settings(), lambda store: store.set_active(email, active)):
        raise fail(f"kranj: ni računa {email}. / No account {email}.")


@staff_app.command("disable")
def staff_disable(email: Annotated[str, typer.Option(help="The account's email address.")]) -> None:
    """Disable an account: it can no longer log in, and its sessions end at once."""
    _set_active(email, False)
    out(f"Račun {email} je onemogočen; seje so zaprte. / Account {email} disabled; sessions ended.")


@staff_app.command("enable")
def staff_enable(email: Annotated[str, typer.Option(help="The account's email address.")]) -> None:
    """Enable a disabled account again."""
    _set_active(email, True)
    out(f"Račun {email} je spet omogočen. / Account {email} enabled.")


@staff_app.command("list")
def staff_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The staff accounts (never their password hashes)."""
    accounts = _accounts_run(Settings(), lambda store: store.list_accounts())
    if as_json:
        out(json.dumps([asdict(a) for a in accounts], ensure_ascii=False, indent=2, default=_json_value))
        return
    if not accounts:
        out("Ni računov. / No accounts.")
        return
    now = clock.now()
    for a in accounts:
        state = "active" if a.active else "disabled"
        if a.locked_until and a.locked_until > now:
            state += f", locked until {_short(a.locked_until)}"
        out(f"{a.email:<32} {a.role:<10} {_scope(a.role, a.ks)[:30]:<30} {state:<10} last login {_short(a.last_login_at)}")

