"""The front door never carries one visitor's cookies to another (kranj/gateway.py).

httpx's client keeps a cookie jar by default: a door built on it stored every Set-Cookie of
the services and sent it with the next request that came without cookies — one resident's
CSRF secret, or a staff member's session, handed to whoever came next (found by the
resident journeys through the front door, issue 18)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kranj.gateway import FrontDoor
from kranj.routes import RouteTable


async def _prijava(request: Request) -> Response:  # a service setting a session cookie
    answer = JSONResponse({})
    answer.set_cookie("kranj_staff", "secret-session", path="/", httponly=True)
    return answer


async def _kdo(request: Request) -> Response:  # what the service was sent
    return JSONResponse({"cookie": request.headers.get("cookie")})


SERVICE = Starlette(routes=[Route("/events/prijava", _prijava), Route("/events/kdo", _kdo)])


async def test_a_cookie_set_for_one_visitor_never_reaches_the_next() -> None:
    door = FrontDoor(
        RouteTable(prefixes={"/events": "events"}),
        {"events": "http://events.internal"},
        transport=httpx.ASGITransport(app=SERVICE),
    )
    asgi = httpx.ASGITransport(app=door)
    async with httpx.AsyncClient(transport=asgi, base_url="http://door") as first:
        answer = await first.get("/events/prijava")
        assert answer.status_code == 200
        assert "secret-session" in answer.headers["set-cookie"]  # the visitor gets their cookie
        own = await first.get("/events/kdo", headers={"cookie": "kranj_staff=secret-session"})
        assert own.json()["cookie"] == "kranj_staff=secret-session"  # and sends it themselves
    async with httpx.AsyncClient(transport=asgi, base_url="http://door") as stranger:
        answer = await stranger.get("/events/kdo")
    assert answer.json()["cookie"] is None  # the door added nothing
