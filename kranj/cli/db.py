"""`kranj db upgrade`: the migrations of every service and of the accounts store."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from shared.settings import Settings

from .common import (
    DATABASES,
    Service,
    err,
    out,
    safe_db_url,
)

db_app = typer.Typer(help="Databases of the services.", no_args_is_help=True)


# --------------------------------------------------------------------------------------
# kranj db upgrade
# --------------------------------------------------------------------------------------
def migrate(settings: Settings, services: Iterable[str], *, quiet: bool = False) -> bool:
    """Upgrade each service's database to head, one line per service; False if any failed."""
    from alembic.script import ScriptDirectory

    from shared.migrations import alembic_config, upgrade

    ok = True
    for name in services:
        url = settings.database_url(name)
        try:
            cfg = alembic_config(name, url)
            location = Path(cfg.get_main_option("script_location") or "")
            if not location.is_dir():
                raise FileNotFoundError(f"no migrations at {location}")
            head = ScriptDirectory.from_config(cfg).get_current_head()
            upgrade(name, url)
        except Exception as exc:  # noqa: BLE001 - reported per service, the others still run
            ok = False
            err(f"{name}: migration failed: {type(exc).__name__}: {exc}")
            continue
        if not quiet:
            out(f"{name}: database at {head or 'base'} ({safe_db_url(url)})")
    return ok


@db_app.command("upgrade")
def db_upgrade(
    service: Annotated[Service | None, typer.Option("--service", "-s", help="Only this service.")] = None,
) -> None:
    """Run the migrations of every service (or one) and of the identity store (staff accounts,
    sessions, API tokens), bringing each database to the newest schema."""
    settings = Settings()
    names = [service.value] if service else list(DATABASES)
    if not migrate(settings, names):
        raise typer.Exit(1)

