"""The local front door: the whole platform under one address, `http://127.0.0.1:8080`.

`kranj up` runs it as one more supervised process (`python -m kranj.gateway`) beside the
four services, on `KRANJ_GATEWAY_PORT` (default 8080; 0 runs without it). It routes with the
one route table (kranj/routes.py) that deploy/nginx/gateway.conf is generated from, and
behaves as that nginx does:

- the request goes to the service as the client sent it (method, path, query, headers,
  body streamed both ways), with `Host` kept and `X-Forwarded-For` / `X-Real-IP` set to the
  peer's address (never what the client wrote: the services trust the header and count
  rate limits by it), `X-Forwarded-Proto` and `X-Forwarded-Host`;
- a request with a body is never retried (a POST is never sent twice); a GET or HEAD that
  met a pooled connection the service had just closed goes once more, on a new one (the
  pool gives idle connections up long before the services close them, shared/serve.py);
  a service that does not answer is a 502 with a short Slovenian page (504 when it
  accepted but did not answer in time);
- bodies above 2 MB are refused (413), as `client_max_body_size 2m`;
- `/` redirects to /events, `/gateway/healthz` answers `ok`, `/docs/<service>/openapi.json`
  and `/asyncapi.json` are the service's documents, and everything else (the services'
  /metrics, /healthz, /readyz among them) is 404 at the door.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from email.utils import formatdate
from typing import Any

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.serve import KEEP_ALIVE_SECONDS
from shared.settings import SERVICES, Settings

from .routes import HEALTHZ, HOME, RouteTable, normalise

log = logging.getLogger("kranj.gateway")

DEFAULT_PORT = 8080
MAX_BODY = 2 * 1024 * 1024  # nginx: client_max_body_size 2m
ROUTES_ENV = "KRANJ_GATEWAY_ROUTES"  # internal: the table as JSON, from `kranj up`
FD_ENV = "KRANJ_GATEWAY_FD"  # internal: the listening socket `kranj up` bound for us

# Hop-by-hop headers (RFC 9110 7.6.1) and what the door sets itself: never passed on.
REPLAYABLE = frozenset({"GET", "HEAD"})  # safe to send twice, when sent without a body
# What a request meets on a pooled connection the other end has just closed.
STALE_CONNECTION = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect"}
)
FORWARDED = frozenset({"x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host", "forwarded"})


class GatewaySettings(BaseSettings):
    """`KRANJ_GATEWAY_PORT` (README "Configuration"): where `kranj up` serves the front door."""

    model_config = SettingsConfigDict(env_prefix="KRANJ_", extra="ignore", env_ignore_empty=True)

    gateway_port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)


def front_door_url(settings: Settings, port: int) -> str:
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    return f"http://{host}:{port}"


# --------------------------------------------------------------------------------------
# The door's own answers
# --------------------------------------------------------------------------------------
PAGE = """<!doctype html>
<html lang="sl">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – Kranj ZA vse</title>
<link rel="stylesheet" href="/static/shared/kranj.css">
</head>
<body>
<main>
<h1>{title}</h1>
<p>{text}</p>
<p><a href="/">Na začetno stran Kranj ZA vse</a></p>
</main>
</body>
</html>
"""

ANSWERS: dict[int, tuple[str, str, str]] = {
    # status: (title, text, English for the API)
    400: ("Napačen naslov", "Tega naslova ne razumemo.", "Bad request."),
    404: (
        "Strani ni mogoče najti",
        "Na tem naslovu ni ničesar. Preverite naslov ali začnite na začetni strani.",
        "Not found.",
    ),
    413: ("Zahtevek je prevelik", "Poslano je večje, kot lahko sprejmemo (največ 2 MB).", "Request too large."),
    502: (
        "Storitev trenutno ni dosegljiva",
        "Ta del spletišča se ravno zaganja ali je za trenutek nedosegljiv. Poskusite znova čez nekaj sekund.",
        "The service is unavailable.",
    ),
    504: (
        "Storitev se ni odzvala pravočasno",
        "Ta del spletišča se ni odzval dovolj hitro. Poskusite znova čez nekaj trenutkov.",
        "The service did not answer in time.",
    ),
}


def _own_answer(status: int, path: str, method: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    title, text, english = ANSWERS[status]
    if path.startswith("/api/"):
        # nginx's `location /api/` body for 404; the same shape for the others
        detail = "Ni takega naslova. / Not found." if status == 404 else f"{title}. / {english}"
        body = (json.dumps({"detail": detail}, ensure_ascii=False) + "\n").encode()
        content_type = b"application/json"
    else:
        body = PAGE.format(title=title, text=text).encode()
        content_type = b"text/html; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"date", formatdate(usegmt=True).encode()),
        (b"cache-control", b"no-store"),
    ]
    return headers, b"" if method == "HEAD" else body


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


# --------------------------------------------------------------------------------------
# The ASGI app
# --------------------------------------------------------------------------------------
class FrontDoor:
    """An ASGI reverse proxy routing by `table` to `upstreams` (service -> base URL)."""

    def __init__(
        self,
        table: RouteTable,
        upstreams: Mapping[str, str],
        *,
        max_body: int = MAX_BODY,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        missing = {s for s in table.prefixes.values()} - set(upstreams)
        if missing:
            raise ValueError(f"no upstream address for {', '.join(sorted(missing))}")
        self.table = table
        self.upstreams = {name: url.rstrip("/") for name, url in upstreams.items()}
        self.max_body = max_body
        self.timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    # ---- lifecycle -------------------------------------------------------------------
    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                trust_env=False,  # never through an HTTP(S)_PROXY of the environment
                limits=httpx.Limits(
                    max_connections=200,
                    max_keepalive_connections=40,
                    keepalive_expiry=KEEP_ALIVE_SECONDS / 3,  # given up long before the service closes it
                ),
                transport=self._transport,  # retries: see _send
                # No cookie jar: a door that kept the services' Set-Cookie would send one
                # resident's cookies (CSRF secret, a staff session) with the next request.
                cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":  # no service speaks it
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- one request ------------------------------------------------------------------
    async def _answer(self, send: Any, status: int, path: str, method: str) -> None:
        headers, body = _own_answer(status, path, method)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method: str = scope["method"]
        path = normalise(scope["path"])
        if path is None:
            await self._answer(send, 400, scope["path"], method)
            return
        if path == HEALTHZ:
            body = b"" if method == "HEAD" else b"ok\n"
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if path == "/":
            await send(
                {
                    "type": "http.response.start",
                    "status": 302,
                    "headers": [(b"location", HOME.encode()), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        resolved = self.table.resolve(path)
        if resolved is None:
            await self._answer(send, 404, path, method)
            return
        service, upstream_path = resolved
        if upstream_path == path and not path.startswith("/docs/"):
            target = scope.get("raw_path") or scope["path"].encode()  # as the client sent it, as nginx does
        else:
            target = httpx.URL(upstream_path).raw_path  # the /docs rewrite
        query: bytes = scope.get("query_string") or b""
        if query:
            target += b"?" + query
        await self._proxy(scope, receive, send, service, target, path)

    def _request_headers(self, scope: dict[str, Any]) -> tuple[list[tuple[bytes, bytes]], bool, int | None]:
        headers: list[tuple[bytes, bytes]] = []
        host = b""
        has_body = False
        length: int | None = None
        for name, value in scope["headers"]:
            lower = name.lower()
            if lower == b"host":
                host = value
            if lower == b"content-length":
                has_body = True
                with contextlib.suppress(ValueError):
                    length = int(value)
            if lower == b"transfer-encoding":
                has_body = True
            if lower.decode("latin-1") in HOP_BY_HOP or lower.decode("latin-1") in FORWARDED:
                continue
            headers.append((lower, value))
        client = scope.get("client")
        peer = (client[0] if client else "").encode()
        headers += [
            (b"x-real-ip", peer),
            (b"x-forwarded-for", peer),
            (b"x-forwarded-proto", scope.get("scheme", "http").encode()),
        ]
        if host:
            headers.append((b"x-forwarded-host", host))
        return headers, has_body, length

    async def _send(self, request: httpx.Request, *, retry: bool) -> httpx.Response:
        """Send `request`; a bodiless GET or HEAD that found its pooled connection closed
        under it (the service's keep-alive ran out as it was sent) goes once more. A
        request with a body never does: the service may have acted on it."""
        try:
            return await self.client.send(request, stream=True)
        except STALE_CONNECTION:
            if not retry:
                raise
        return await self.client.send(request, stream=True)

    async def _proxy(
        self, scope: dict[str, Any], receive: Any, send: Any, service: str, target: bytes, path: str
    ) -> None:
        method: str = scope["method"]
        headers, has_body, length = self._request_headers(scope)
        if length is not None and length > self.max_body:
            await self._answer(send, 413, path, method)
            return
        base = httpx.URL(self.upstreams[service])
        content = self._body(receive) if has_body else None
        try:
            url = base.copy_with(raw_path=target)
            # `headers` keep the client's Host, so the service sees the door's (nginx: Host $http_host)
            request = self.client.build_request(method, url, headers=headers, content=content)
        except (httpx.InvalidURL, ValueError, TypeError):
            await self._answer(send, 400, path, method)
            return
        try:
            response = await self._send(request, retry=content is None and method in REPLAYABLE)
        except _BodyTooLarge:
            await self._answer(send, 413, path, method)
            return
        except _ClientGone:
            return
        except httpx.TimeoutException as exc:
            status = 502 if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)) else 504
            log.warning("front door: %s (%s) did not answer %s %s: %s", service, base, method, path, type(exc).__name__)
            await self._answer(send, status, path, method)
            return
        except httpx.TransportError as exc:
            log.warning("front door: no answer from %s (%s) to %s %s: %r", service, base, method, path, exc)
            await self._answer(send, 502, path, method)
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (name.lower(), value)
                        for name, value in response.headers.raw
                        if name.lower().decode("latin-1") not in HOP_BY_HOP
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.TransportError as exc:  # the service went away mid-answer: cut the answer short
            log.warning("front door: %s broke off its answer to %s %s: %s", service, method, path, exc)
            raise
        finally:
            await response.aclose()

    async def _body(self, receive: Any) -> AsyncIterator[bytes]:
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


# --------------------------------------------------------------------------------------
# The process `kranj up` supervises
# --------------------------------------------------------------------------------------
def load_table() -> RouteTable:
    from .routes import load_table_subprocess

    text = os.environ.get(ROUTES_ENV)
    return RouteTable.from_json(text) if text else load_table_subprocess()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (`kranj up` binds it before starting the door, so a busy port is
    reported at once and a restarted door takes the same socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(app: FrontDoor, *, graceful_timeout: float = 20.0) -> Any:
    """How the door is served (uvicorn; `kranj up` and the tests alike)."""
    import uvicorn

    return uvicorn.Config(
        app,
        log_config=None,
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # the door is the edge: the peer is the resident
        server_header=False,  # the services' own Server and Date headers pass through
        date_header=False,
        timeout_graceful_shutdown=int(graceful_timeout),
    )


def serve(settings: Settings | None = None, table: RouteTable | None = None, sock: socket.socket | None = None) -> None:
    import uvicorn

    from shared import logs
    from shared.settings import load_or_exit

    settings = settings or load_or_exit("kranj gateway")
    logs.configure("gateway", fmt=settings.log_format, level=settings.log_level)
    table = table or load_table()
    if sock is None:
        fd = os.environ.get(FD_ENV)
        if fd:
            sock = socket.socket(fileno=int(fd))
        else:
            port = GatewaySettings().gateway_port or DEFAULT_PORT
            sock = bind(settings.http_host, port)
    app = FrontDoor(table, {name: settings.local_url(name) for name in SERVICES})
    config = uvicorn_config(app, graceful_timeout=settings.graceful_timeout)
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    log.info("front door on http://%s:%s", host, port)
    asyncio.run(server.serve(sockets=[sock]))


def main() -> None:  # `python -m kranj.gateway`
    try:
        serve()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(0)


if __name__ == "__main__":
    main()
