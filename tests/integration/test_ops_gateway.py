"""Both front doors, for real, in front of the four real service apps: Debian's nginx running
deploy/nginx/gateway.conf as compose uses it, and the local front door of `kranj up`
(kranj/gateway.py). Every path of every service's OpenAPI document and every page and
static route (kranj/routes.py reads them from the apps) is requested through each door and
must be answered by the service that serves it — a service's own 401/403/404/405/422 is
fine, the door's 404 or 502 is not.

Each app is wrapped so that its answers carry `X-Test-Service: <name>` (the services do not
reveal themselves); an answer without it came from the door itself. For nginx only what
Docker provides is replaced in a temp copy of the config: the upstream addresses
(`http://events:8001` -> `http://127.0.0.1:<free port>`), Docker's DNS resolver, and the
listening port.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.browser import serve_app
from support.resident import serve_door
from support.settings import TEST_ADMIN_TOKEN, TEST_SECRET_KEY, free_port, make_settings, wait_until

from kranj.gateway import FrontDoor
from kranj.routes import NGINX_CONF, SHARED_OWNER, RouteTable, ServiceRoute, route_table

pytestmark = pytest.mark.integration

SERVICES = ("events", "booking", "surveys", "notify")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
KRANJ = Path(sys.executable).parent / "kranj"
TAG = "x-test-service"


class Tagged:
    """The app, with `X-Test-Service: <service>` on every answer it gives."""

    def __init__(self, app: Any, service: str) -> None:
        self.app, self.tag = app, service.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (TAG.encode(), self.tag)]}
            await send(message)

        await self.app(scope, receive, tagged)


# --------------------------------------------------------------------------------------
# nginx with the deploy config
# --------------------------------------------------------------------------------------
def local_config(ports: dict[str, int], listen: int, prefix: Path) -> str:
    """The main nginx.conf (Debian's nginx has no conf.d of ours) including a copy of
    gateway.conf with the Docker-only parts replaced."""
    conf = NGINX_CONF.read_text()
    conf, resolvers = re.subn(r"(?m)^\s*resolver(_timeout)?\s[^;]*;\s*$", "", conf)
    assert resolvers == 2, "gateway.conf: expected `resolver` and `resolver_timeout` lines"
    for service, port in ports.items():
        conf, n = re.subn(rf"http://{service}:\d+;", f"http://127.0.0.1:{port};", conf)
        assert n == 1, f"gateway.conf: expected one upstream http://{service}:<port>"
    conf, n = re.subn(r"(?m)^(\s*)listen\s+8080;", rf"\1listen 127.0.0.1:{listen};", conf)
    assert n == 1, "gateway.conf: expected `listen 8080;`"
    (prefix / "gateway.conf").write_text(conf)
    temp = prefix / "temp"
    temp.mkdir()
    return f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    default_type application/octet-stream;
    include {prefix}/gateway.conf;
}}
"""


@contextlib.asynccontextmanager
async def nginx(config: str, prefix: Path, port: int) -> AsyncIterator[str]:
    conf = prefix / "nginx.conf"
    conf.write_text(config)
    check = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, f"nginx -t refused the generated config:\n{check.stderr}"
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(base, proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _wait_healthy(base: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            if proc is not None:
                assert proc.poll() is None, f"exited: {proc.stdout.read().decode() if proc.stdout else ''}"
            try:
                if (await client.get(f"{base}/gateway/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{base} did not answer within {timeout} s"
            await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------
# The platform: four tagged apps, nginx and the local front door in front of them
# --------------------------------------------------------------------------------------
@dataclass
class Platform:
    direct: dict[str, str]  # service -> its own base URL
    doors: dict[str, str]  # "nginx" / "front door" -> base URL
    table: RouteTable
    openapi: dict[str, dict[str, Any]]


@pytest.fixture
async def platform(tmp_path: Path, amqp_url: str) -> AsyncIterator[Platform]:
    assert Path(NGINX).exists(), "nginx is not installed (apt-get install nginx; .ci/run does it)"
    settings = make_settings(tmp_path, amqp_url)
    apps = {
        service: importlib.import_module(f"services.{service}.app").create_app(settings, start_bus=False)
        for service in SERVICES
    }
    table = route_table(apps)
    async with contextlib.AsyncExitStack() as stack:
        direct = {s: await stack.enter_async_context(serve_app(Tagged(app, s))) for s, app in apps.items()}
        ports = {s: int(b.rsplit(":", 1)[1]) for s, b in direct.items()}
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        listen = free_port()
        doors = {"nginx": await stack.enter_async_context(nginx(local_config(ports, listen, prefix), prefix, listen))}
        doors["front door"] = await stack.enter_async_context(serve_door(FrontDoor(table, direct)))
        yield Platform(direct, doors, table, {s: app.openapi() for s, app in apps.items()})


def _fill(path: str) -> str:
    return ServiceRoute("", path, (), "api").example()


def _requests(platform: Platform) -> list[tuple[str, str, str]]:
    """(method, path, service that must answer): every operation of every OpenAPI document,
    every page and static route of every app."""
    wanted: dict[tuple[str, str], str] = {}
    for service, document in platform.openapi.items():
        for path, operations in document["paths"].items():
            if path in ("/healthz", "/readyz", "/metrics", "/asyncapi.json"):
                continue  # the services' own machinery: not public (test below)
            for method in operations:
                if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                    wanted[(method.upper(), _fill(path))] = service
    for route in platform.table.routes:
        if route.kind in ("page", "static"):
            owner = SHARED_OWNER if route.shared else route.service
            for method in route.methods or ("GET",):
                wanted.setdefault((method, route.example()), owner)
    for service in SERVICES:
        for document in ("openapi.json", "asyncapi.json"):
            wanted[("GET", f"/docs/{service}/{document}")] = service
    return [(method, path, service) for (method, path), service in sorted(wanted.items())]


async def _sweep(platform: Platform, door: str) -> list[str]:
    base = platform.doors[door]
    wrong: list[str] = []
    requests = _requests(platform)
    assert len(requests) > 100
    paths = {path for _m, path, _s in requests}
    for must in ("/manage/x", "/api/v1/sms/inbound", "/api/v1/preview", "/api/v1/ks/primskovo/contacts",
                 "/api/v1/figures", "/api/v1/figures.csv", "/login", "/logout", "/static/shared/kranj.css"):  # fmt: skip
        assert must in paths, must
    limit = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, method: str, path: str, service: str) -> None:
        async with limit:
            headers = {"Accept": "text/html"} if method == "GET" else {}
            through = await client.request(method, base + path, headers=headers)
            answered = through.headers.get(TAG)
            if answered != service:
                wrong.append(
                    f"{door}: {method} {path} answered by {answered or 'the door itself'} "
                    f"({through.status_code}), not {service}"
                )
                return
            if method == "GET" and not path.startswith("/docs/"):
                same = await client.request(method, platform.direct[service] + path, headers=headers)
                if same.status_code != through.status_code:
                    wrong.append(f"{door}: {path}: {through.status_code} through the door, {same.status_code} direct")

    async with httpx.AsyncClient(timeout=20) as client:
        await asyncio.gather(*(one(client, m, p, s) for m, p, s in requests))
    return wrong


async def test_every_route_of_every_service_through_both_doors(platform: Platform) -> None:
    for door in platform.doors:
        wrong = await _sweep(platform, door)
        assert not wrong, "\n".join(sorted(wrong))
    # The public pages really are the services' pages, through either door.
    async with httpx.AsyncClient(timeout=10) as client:
        for base in platform.doors.values():
            for path in ("/events", "/rooms", "/noticeboard", "/subscribe"):
                response = await client.get(base + path)
                assert response.status_code == 200, path
                assert "text/html" in response.headers["content-type"]


async def test_documents_and_what_is_not_public(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for door, base in platform.doors.items():
            for service in SERVICES:
                openapi = await client.get(f"{base}/docs/{service}/openapi.json")
                assert openapi.status_code == 200, (door, service)
                assert openapi.json()["openapi"].startswith("3.")
                asyncapi = await client.get(f"{base}/docs/{service}/asyncapi.json")
                assert asyncapi.status_code == 200, (door, service)
                assert service in asyncapi.json()["info"]["title"]
            assert (await client.get(f"{base}/gateway/healthz")).text == "ok\n"
            root = await client.get(f"{base}/")
            assert root.status_code == 302 and root.headers["location"].endswith("/events"), door
            for path in ("/metrics", "/healthz", "/readyz", "/openapi.json", "/asyncapi.json", "/docs", "/redoc",
                         "/events/../metrics", "/api/v1/unknown", "/docs/events/metrics"):  # fmt: skip
                response = await client.get(base + path)
                assert response.status_code in (400, 404), (door, path, response.status_code)
                assert not response.headers.get(TAG), f"{door}: {path} must not reach a service"
            unknown = await client.get(f"{base}/api/v1/unknown")
            assert unknown.json()["detail"] == "Ni takega naslova. / Not found.", door


# --------------------------------------------------------------------------------------
# The local front door's own behaviour, against a small echo service
# --------------------------------------------------------------------------------------
class Echo:
    """An upstream that answers with what it received (and counts requests)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the body was cut off: no request (Starlette raises ClientDisconnect)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({"method": scope["method"], "raw_path": scope["raw_path"].decode(), "headers": headers})
        if scope["path"] == "/echo/big":
            chunk = b"x" * 65536
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for _ in range(64):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        answer = json.dumps(
            {
                "method": scope["method"],
                "raw_path": scope["raw_path"].decode(),
                "query": scope["query_string"].decode(),
                "client": scope["client"][0],
                "headers": headers,
                "length": len(body),
                "sha": __import__("hashlib").sha256(body).hexdigest(),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 201 if scope["method"] == "POST" else 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"set-cookie", b"a=1; Path=/"),
                    (b"set-cookie", b"b=2; Path=/"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def echo_door() -> AsyncIterator[tuple[str, Echo, int]]:
    echo = Echo()
    dead_port = free_port()  # nothing listens there
    table = RouteTable(prefixes={"/echo": "events", "/gone": "booking"}, documents={"events": ("openapi.json",)})
    async with serve_app(echo) as upstream:
        door = FrontDoor(table, {"events": upstream, "booking": f"http://127.0.0.1:{dead_port}"})
        async with serve_door(door) as base:
            yield base, echo, dead_port


async def test_the_front_door_passes_requests_through_as_nginx_does(echo_door: tuple[str, Echo, int]) -> None:
    base, echo, _dead = echo_door
    body = os.urandom(1_500_000)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 100_000):
            yield body[i : i + 100_000]

    async with httpx.AsyncClient(timeout=10) as client:
        got = await client.post(
            f"{base}/echo/a%2Fb/%C4%8D?x=1&y=%20",
            content=chunks(),  # chunked: streamed through, not a Content-Length body
            headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "Cookie": "s=1", "Host": "kranj.test:8080"},
        )
        assert got.status_code == 201
        seen = got.json()
        assert seen["method"] == "POST"
        assert seen["raw_path"] == "/echo/a%2Fb/%C4%8D"  # as the client sent it
        assert seen["query"] == "x=1&y=%20"
        assert seen["length"] == len(body) and seen["sha"] == __import__("hashlib").sha256(body).hexdigest()
        assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"  # the peer, never the client's own header
        assert seen["headers"]["x-real-ip"] == "127.0.0.1"
        assert seen["headers"]["x-forwarded-proto"] == "http"
        assert seen["headers"]["host"] == "kranj.test:8080"
        assert seen["headers"]["x-forwarded-host"] == "kranj.test:8080"
        assert seen["headers"]["cookie"] == "s=1"
        assert got.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]

        for method in ("PUT", "PATCH", "DELETE", "GET", "HEAD"):
            answered = await client.request(method, f"{base}/echo")
            assert answered.status_code == 200, method
            if method != "HEAD":
                assert answered.json()["method"] == method

        big = await client.get(f"{base}/echo/big")
        assert big.status_code == 200 and len(big.content) == 64 * 65536

        too_big = await client.post(f"{base}/echo", content=b"x" * (2 * 1024 * 1024 + 1))
        assert too_big.status_code == 413
        assert "Zahtevek je prevelik" in too_big.text

        async def endless() -> AsyncIterator[bytes]:  # chunked, no Content-Length: counted as it comes
            for _ in range(30):
                yield b"x" * 100_000

        seen_before = len(echo.seen)
        too_big = await client.post(f"{base}/echo", content=endless())
        assert too_big.status_code == 413
        assert len(echo.seen) == seen_before  # the service never got a cut-off body as a whole one
        assert (await client.get(f"{base}/echo")).status_code == 200  # and the door still works


async def test_a_service_that_is_down_is_a_502_page_and_a_post_is_never_repeated(
    echo_door: tuple[str, Echo, int],
) -> None:
    base, echo, _dead = echo_door
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(f"{base}/gone/x")
        assert page.status_code == 502
        assert page.headers["content-type"].startswith("text/html")
        assert "Storitev trenutno ni dosegljiva" in page.text and 'lang="sl"' in page.text
        api = await client.post(f"{base}/gone/api", json={"a": 1})
        assert api.status_code == 502
        before = len(echo.seen)
        posted = await client.post(f"{base}/echo/once", json={"a": 1})
        assert posted.status_code == 201
        assert len(echo.seen) == before + 1


async def test_a_service_that_breaks_off_is_never_asked_twice() -> None:
    """A service that takes the request and drops the connection: one request reached it,
    the resident gets a 502 (nginx: proxy_next_upstream off), nothing is retried."""
    accepted: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]

    async def rude() -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(listener)
            accepted.append(await loop.sock_recv(conn, 65536))
            conn.close()

    server = asyncio.create_task(rude())
    try:
        door = FrontDoor(RouteTable(prefixes={"/x": "events"}), {"events": f"http://127.0.0.1:{port}"})
        async with serve_door(door) as base, httpx.AsyncClient(timeout=10) as client:
            answered = await client.post(f"{base}/x/pay", json={"amount": 1})
            assert answered.status_code == 502
            await asyncio.sleep(0.2)
            assert len(accepted) == 1, accepted
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        listener.close()


# --------------------------------------------------------------------------------------
# `kranj up` serves the front door and its links lead through it
# --------------------------------------------------------------------------------------
async def test_kranj_up_serves_the_platform_under_one_address(tmp_path: Path, amqp_url: str) -> None:
    ports = {s: free_port() for s in SERVICES}
    door_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KRANJ_")},
        "KRANJ_AMQP_URL": amqp_url,
        "KRANJ_DATA_DIR": str(tmp_path / "var"),
        "KRANJ_ADMIN_TOKEN": TEST_ADMIN_TOKEN,
        "KRANJ_SECRET_KEY": TEST_SECRET_KEY,
        "KRANJ_GRACEFUL_TIMEOUT": "5",
        "KRANJ_LOG_LEVEL": "WARNING",
        "KRANJ_GATEWAY_PORT": str(door_port),
        **{f"KRANJ_{s.upper()}_PORT": str(p) for s, p in ports.items()},
    }
    log = (tmp_path / "kranj-up.log").open("w+b")
    proc = subprocess.Popen([str(KRANJ), "up"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    door = f"http://127.0.0.1:{door_port}"
    try:

        async def ready() -> bool:
            async with httpx.AsyncClient(timeout=2) as client:
                try:
                    for s in SERVICES:
                        if (await client.get(f"{door}/docs/{s}/openapi.json")).status_code != 200:
                            return False
                    return True
                except httpx.HTTPError:
                    return False

        try:
            await wait_until(ready, timeout=60, interval=0.3, message="every service through the front door")
        except BaseException:
            log.seek(0)
            print(log.read().decode(errors="replace")[-5000:])
            raise
        async with httpx.AsyncClient(timeout=10) as client:
            for path in ("/events", "/rooms", "/surveys", "/noticeboard", "/subscribe"):
                assert (await client.get(door + path)).status_code == 200, path
            feed = await client.get(f"{door}/noticeboard/primskovo/feed.atom")
            links = set(re.findall(r'href="([^"]+)"', feed.text))
            assert f"{door}/noticeboard/primskovo/feed.atom" in links, links  # KRANJ_PUBLIC_URL: the front door
            # the services keep their own ports
            assert (await client.get(f"http://127.0.0.1:{ports['events']}/healthz")).status_code == 200
        log.seek(0)
        printed = log.read().decode(errors="replace")
        assert door in printed
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 15
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient(timeout=2) as client:
                await client.get(f"{door}/gateway/healthz")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
