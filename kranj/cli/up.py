"""`kranj up` (all four services, supervised) and `kranj run <service>` (one, in the foreground)."""

from __future__ import annotations

import asyncio
import os
import sys
from enum import Enum
from typing import Annotated

import typer

from shared.serve import broker_problem
from shared.settings import SERVICES, Settings

from .common import (
    DATABASES,
    Service,
    broker_unreachable_line,
    fail,
    out,
    quiet_broker_logs,
)
from .db import migrate


# --------------------------------------------------------------------------------------
# kranj up / kranj run
# --------------------------------------------------------------------------------------
class LogFormatChoice(str, Enum):
    json = "json"
    console = "console"
    auto = "auto"


LogFormat = Annotated[
    LogFormatChoice | None,
    typer.Option(
        "--log-format",
        help="json (one object per line), console (for people) or auto (console on a terminal). "
        "Default: KRANJ_LOG_FORMAT, else auto.",
    ),
]


def _log_format(value: LogFormatChoice | None) -> None:
    """Pass the choice to the service processes through their environment."""
    if value:
        os.environ["KRANJ_LOG_FORMAT"] = value.value


def up(log_format: LogFormat = None) -> None:
    """Migrate, then run all four services as supervised processes. Ctrl-C stops everything."""
    from kranj.supervisor import ChildSpec, Supervisor

    _log_format(log_format)
    settings = Settings()
    with quiet_broker_logs():
        problem = asyncio.run(broker_problem(settings.amqp_url))
    if problem:
        raise fail(broker_unreachable_line(settings, problem))
    if not migrate(settings, DATABASES):
        raise fail("kranj: not starting: the migrations above failed")
    settings.signing_key()  # create the local key once, before four processes race for it
    supervisor = Supervisor(
        [ChildSpec(name, [sys.executable, "-m", f"services.{name}"]) for name in SERVICES],
        stop_timeout=settings.graceful_timeout + 5,
    )
    out("Starting Kranj ZA vse:")
    for name in SERVICES:
        out(f"  {name:<8} {settings.local_url(name)}")
    out("Ctrl-C stops everything.")
    sys.stdout.flush()
    raise typer.Exit(supervisor.run())


def run(
    service: Annotated[Service, typer.Argument(help="events, booking, surveys or notify")],
    log_format: LogFormat = None,
) -> None:
    """Run one service in the foreground (what each container runs)."""
    from kranj.runner import run_service

    _log_format(log_format)
    run_service(service.value)



# --------------------------------------------------------------------------------------
# kranj gateway
# --------------------------------------------------------------------------------------
def gateway(
    nginx: Annotated[
        bool, typer.Option("--nginx", help="Print the compose nginx config (deploy/nginx/gateway.conf).")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Only check that deploy/nginx/gateway.conf is current; exit 1 if not.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """The front door's route table, derived from the services' own routes (kranj/routes.py).
    Regenerate the compose gateway with `kranj gateway --nginx > deploy/nginx/gateway.conf`."""
    from kranj import routes

    try:
        table = routes.route_table()
    except routes.RouteConflict as exc:
        raise fail(f"kranj: {exc}") from None
    if check:
        if routes.nginx_stale(table):
            raise fail(f"kranj: deploy/nginx/gateway.conf is not current; regenerate it:\n    {routes.REGENERATE}")
        out("kranj: deploy/nginx/gateway.conf is current.")
    elif nginx:
        sys.stdout.write(routes.nginx_config(table))
    elif as_json:
        out(table.to_json())
    else:
        out(routes.describe(table))
