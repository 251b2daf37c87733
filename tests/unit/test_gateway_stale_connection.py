"""The front door and a connection the service has just closed (kranj/gateway.py).

A service closes an idle keep-alive connection after its timeout; the door's pool may send
the next request on it at that very moment. With uvicorn's default of 5 s, exactly httpx's
pool expiry, that happened in CI: a resident's GET /rooms came back as the door's 502.
Here an upstream answers the first request on a connection and closes the connection
without answering the second, every time: a GET goes once more on a new connection, a
POST is never sent twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from kranj.gateway import FrontDoor
from kranj.routes import RouteTable


class ClosingUpstream:
    """HTTP/1.1 on a real socket: one answer per connection, then it drops the next request."""

    def __init__(self) -> None:
        self.requests: list[str] = []  # request lines, in the order they arrived
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                self.requests.append(lines[0])
                length = next(
                    (int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"), 0
                )
                if length:
                    await reader.readexactly(length)
                if answered:  # the keep-alive ran out just as this request came
                    break
                body = b"ok"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n" + body)
                await writer.drain()
                answered = True
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[ClosingUpstream, httpx.AsyncClient]]:
    """The closing service, and a resident's client of the front door in front of it."""
    service = ClosingUpstream()
    server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    door = FrontDoor(RouteTable(prefixes={"/rooms": "booking"}), {"booking": f"http://127.0.0.1:{port}"})
    async with server, httpx.AsyncClient(transport=httpx.ASGITransport(app=door), base_url="http://door") as resident:
        try:
            yield service, resident
        finally:
            await door.aclose()


async def test_a_get_on_a_connection_the_service_just_closed_goes_again(upstream) -> None:
    service, resident = upstream
    first = await resident.get("/rooms")
    second = await resident.get("/rooms?ks=huje")  # on the pooled connection: dropped, then sent anew
    assert (first.status_code, first.text) == (200, "ok")
    assert (second.status_code, second.text) == (200, "ok")
    assert service.requests == ["GET /rooms HTTP/1.1", "GET /rooms?ks=huje HTTP/1.1", "GET /rooms?ks=huje HTTP/1.1"]
    assert service.connections == 2


async def test_a_post_is_never_sent_twice(upstream) -> None:
    service, resident = upstream
    first = await resident.get("/rooms")
    booking = await resident.post("/rooms/huje-dvorana/rezervacija", data={"ime": "Ana"})
    assert first.status_code == 200
    assert booking.status_code == 502  # the service may have acted on it: the resident is told, not replayed
    assert "Storitev trenutno ni dosegljiva" in booking.text
    assert service.requests == ["GET /rooms HTTP/1.1", "POST /rooms/huje-dvorana/rezervacija HTTP/1.1"]
    assert service.connections == 1
