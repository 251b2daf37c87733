"""`kranj up` (all four services, supervised) and `kranj run <service>` (one, in the foreground)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from shared.serve import broker_problem
from shared.settings import SERVICES, Settings

from .common import (
    DATABASES,
    Service,
    broker_unreachable_line,
    err,
    fail,
    out,
    quiet_broker_logs,
)
from .db import migrate

if TYPE_CHECKING:
    import socket


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


def _front_door(settings: Settings) -> tuple[socket.socket | None, str | None, subprocess.Popen[str] | None]:
    """Bind the front door's port (KRANJ_GATEWAY_PORT; 0: none) and start building the route
    table in a short-lived process (it imports every service). A busy port is one warning
    line: the services still start, each on its own port."""
    from kranj.gateway import GatewaySettings, bind, front_door_url

    port = GatewaySettings().gateway_port
    if not port:
        return None, None, None
    taken = [name for name in SERVICES if settings.port(name) == port]
    if taken:
        raise fail(
            f"kranj: KRANJ_GATEWAY_PORT={port} is the port of {taken[0]}; choose another (or 0 for no front door)"
        )
    try:
        sock = bind(settings.http_host, port)
    except OSError as exc:
        err(
            f"kranj: the front door is not started: {settings.http_host}:{port} is not free ({exc.strerror or exc}) — "
            "set KRANJ_GATEWAY_PORT to a free port, or 0 to run without it"
        )
        return None, None, None
    table = subprocess.Popen(
        [sys.executable, "-m", "kranj.routes", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return sock, front_door_url(settings, port), table


def up(log_format: LogFormat = None) -> None:
    """Migrate, then run all four services as supervised processes, and the front door that
    serves them all under one address (KRANJ_GATEWAY_PORT, default 8080). Ctrl-C stops everything."""
    from kranj.gateway import FD_ENV, ROUTES_ENV, GatewaySettings
    from kranj.supervisor import ChildSpec, Supervisor

    _log_format(log_format)
    settings = Settings()
    GatewaySettings()  # a bad KRANJ_GATEWAY_PORT: one clear line (kranj.cli.main) before anything starts
    with quiet_broker_logs():
        problem = asyncio.run(broker_problem(settings.amqp_url))
    if problem:
        raise fail(broker_unreachable_line(settings, problem))
    sock, door, table = _front_door(settings)
    try:
        if not migrate(settings, DATABASES):
            raise fail("kranj: not starting: the migrations above failed")
        settings.signing_key()  # create the local key once, before four processes race for it
        children = [ChildSpec(name, [sys.executable, "-m", f"services.{name}"]) for name in SERVICES]
        if table is not None and sock is not None:
            routes, problem_text = table.communicate(timeout=120)
            if table.returncode != 0:
                raise fail(f"kranj: not starting: the front door's route table: {problem_text.strip()}")
            os.environ[ROUTES_ENV] = routes.strip()
            os.environ[FD_ENV] = str(sock.fileno())
            if not settings.public_url:
                # every link in an email, SMS, poster or feed leads through the front door
                os.environ["KRANJ_PUBLIC_URL"] = door or ""
            children.append(ChildSpec("gateway", [sys.executable, "-m", "kranj.gateway"], pass_fds=(sock.fileno(),)))
        supervisor = Supervisor(children, stop_timeout=settings.graceful_timeout + 5)
        out("Starting Kranj ZA vse:")
        if door:
            out(f"  {'front door':<10} {door}   every page and API under one address")
        for name in SERVICES:
            out(f"  {name:<10} {settings.local_url(name)}")
        out("Ctrl-C stops everything.")
        sys.stdout.flush()
        code = supervisor.run()
    finally:
        if table is not None and table.poll() is None:
            table.kill()
            table.wait()
        if sock is not None:
            sock.close()
    raise typer.Exit(code)


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
