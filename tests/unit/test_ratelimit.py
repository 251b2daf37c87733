"""shared/web/ratelimit.py without I/O: the wording of the 429 answer, and a guard that
every public write of every service is rate limited (a new public form must opt in)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from shared.settings import Settings
from shared.web.ratelimit import too_many_detail

SERVICES = ("events", "booking", "surveys", "notify")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
# Writes that are not the public's: staff pages check the session inside the handler,
# and /login has its own lockout (shared/web, 429 after failed attempts).
NOT_PUBLIC = ("/login", "/logout", "/osebje", "/staff", "/paper")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (1, "čez 1 sekundo"),
        (2, "čez 2 sekundi"),
        (3, "čez 3 sekunde"),
        (5, "čez 5 sekund"),
        (101, "čez 101 sekundo"),
        (150, "čez 3 minute"),
        (3600, "čez 60 minut"),
    ],
)
def test_the_429_detail_says_when_to_try_again_in_slovenian_then_english(seconds: int, expected: str) -> None:
    detail = too_many_detail("address", seconds)
    sl, en = detail.split(" / ")
    assert sl.startswith("Prejeli smo preveč zahtev z vašega naslova.") and expected in sl
    assert en.startswith("Too many requests from your address; please try again in")


def test_every_public_write_of_every_service_is_rate_limited(tmp_path: Path) -> None:
    from fastapi.routing import iter_route_contexts

    from shared.auth import current_staff

    settings = Settings(data_dir=tmp_path, secret_key="k" * 40, accounts_database_url=None)
    unguarded = []
    for service in SERVICES:
        app = import_module(f"services.{service}.app").create_app(settings)
        for route in iter_route_contexts(app.routes):
            if not isinstance(route.original_route, APIRoute) or not (route.methods or set()) & WRITES:
                continue
            calls = set()
            stack = list(route.dependant.dependencies)
            while stack:
                dependency = stack.pop()
                calls.add(getattr(dependency.call, "__name__", ""))
                if dependency.call is current_staff:
                    calls.add("staff")
                stack.extend(dependency.dependencies)
            if "staff" in calls or any(part in route.path_format for part in NOT_PUBLIC):
                continue
            if not any(name.startswith("rate_limit_") for name in calls):
                unguarded.append(f"{service} {sorted(route.methods)} {route.path_format}")
    assert not unguarded, "public writes without rate_limit(...): " + ", ".join(unguarded)
