"""The far ends of the benchmark, each a real server in a process of its own (so it shares
neither the benchmark's event loop nor its GIL): an SMTP server (aiosmtpd) and an HTTP SMS
gateway that follows CONTRACT.md (bearer token, Idempotency-Key, JSON body).

Both count what they accept in shared memory (`Counters`) and report the arrival time of
every message that carries a latency marker `LAT-<n>-` (see `bench.run`), so the benchmark
can read publish-to-inbox times without parsing anything on its own loop.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

MARKER = re.compile(rb"LAT-(\d+)-")
SMS_TOKEN = "bench-sms-token"


@dataclass
class Counters:
    """Shared-memory counters of one sink (written by the sink only)."""

    accepted: Any
    duplicates: Any
    refused: Any

    @classmethod
    def make(cls, ctx: Any) -> Counters:
        return cls(ctx.RawValue("q", 0), ctx.RawValue("q", 0), ctx.RawValue("q", 0))


def _uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass


# --------------------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------------------
def _smtp_main(host: str, port: int, counters: Counters, marks: Any, ready: Any) -> None:
    _uvloop()
    from aiosmtpd.smtp import SMTP

    seen: set[bytes] = set()
    message_id = re.compile(rb"(?im)^Message-ID:\s*(\S+)")

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            raw = envelope.original_content or envelope.content
            if isinstance(raw, str):
                raw = raw.encode()
            found = message_id.search(raw[:4096])
            key = found.group(1) if found else secrets.token_bytes(8)
            if key in seen:
                counters.duplicates.value += 1
            seen.add(key)
            counters.accepted.value += 1
            mark = MARKER.search(raw)
            if mark:
                marks.put(("email", int(mark.group(1)), time.time()))
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        handler = Handler()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="bench-smtp", data_size_limit=1 << 20), host=host, port=port
        )
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# --------------------------------------------------------------------------------------
# SMS gateway (plain ASGI on uvicorn: the gateway should not be the slow part)
# --------------------------------------------------------------------------------------
def _sms_main(host: str, port: int, counters: Counters, marks: Any, ready: Any, mode: str = "keepalive") -> None:
    """`keepalive`: uvicorn keeps connections open; `slow`: the same, answering after 100 ms
    (a provider across the internet); `close`: Python's threading HTTP server, HTTP/1.0,
    closing every connection after its answer."""
    if mode == "close":
        _sms_closing_main(host, port, counters, marks, ready)
        return
    import uvicorn

    seen: set[str] = set()
    expected = f"Bearer {SMS_TOKEN}".encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    ready.set()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        status, answer = 200, {"id": secrets.token_hex(8), "status": "accepted"}
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        key = headers.get(b"idempotency-key", b"").decode()
        if headers.get(b"authorization") != expected:
            status, answer = 401, {"error": "bad token"}
        elif not isinstance(payload, dict) or not all(payload.get(k) for k in ("to", "text", "reference")) or not key:
            status, answer = 422, {"error": "body or Idempotency-Key missing"}
        if status == 200:
            if key in seen:
                counters.duplicates.value += 1
            seen.add(key)
            counters.accepted.value += 1
            mark = MARKER.search(payload["text"].encode())
            if mark:
                marks.put(("sms", int(mark.group(1)), time.time()))
        else:
            counters.refused.value += 1
        data = json.dumps(answer).encode()
        if mode == "slow":
            await asyncio.sleep(0.1)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
        backlog=2048,
    )


def _sms_closing_main(host: str, port: int, counters: Counters, marks: Any, ready: Any) -> None:
    import http.server
    import threading

    seen: set[str] = set()
    lock = threading.Lock()
    expected = f"Bearer {SMS_TOKEN}"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection, as this server answers by default

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.headers.get("Idempotency-Key") or ""
            ok = self.headers.get("Authorization") == expected and bool(key)
            with lock:
                if ok:
                    if key in seen:
                        counters.duplicates.value += 1
                    seen.add(key)
                    counters.accepted.value += 1
                else:
                    counters.refused.value += 1
            mark = MARKER.search(body)
            if ok and mark:
                marks.put(("sms", int(mark.group(1)), time.time()))
            data = json.dumps({"id": secrets.token_hex(8), "status": "accepted"} if ok else {"error": "bad"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            return None

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 2048  # the listen backlog (set before the socket listens)
        daemon_threads = True

    server = Server((host, port), Handler)
    ready.set()
    server.serve_forever()


class Sink:
    """One far end in its own process: `.start()`, `.accepted`, `.stop()`."""

    def __init__(self, kind: str, port: int, marks: Any, host: str = "127.0.0.1", mode: str = "keepalive") -> None:
        ctx = mp.get_context("spawn")
        self.kind, self.host, self.port = kind, host, port
        self.counters = Counters.make(ctx)
        self._ready = ctx.Event()
        target, args = (_smtp_main, ()) if kind == "smtp" else (_sms_main, (mode,))
        self.process = ctx.Process(
            target=target,
            args=(host, port, self.counters, marks, self._ready, *args),
            name=f"bench-{kind}",
            daemon=True,
        )

    def start(self) -> None:
        import socket

        self.process.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"the bench {self.kind} sink did not start on port {self.port}")
        deadline = time.monotonic() + 30  # uvicorn reports its lifespan before it listens
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the bench {self.kind} sink does not listen on port {self.port}") from None
                time.sleep(0.05)

    @property
    def accepted(self) -> int:
        return int(self.counters.accepted.value)

    @property
    def duplicates(self) -> int:
        return int(self.counters.duplicates.value)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/sms"

    def settings_env(self) -> dict[str, str]:
        if self.kind == "smtp":
            return {"KRANJ_SMTP_HOST": self.host, "KRANJ_SMTP_PORT": str(self.port), "KRANJ_SMTP_STARTTLS": "false"}
        return {"KRANJ_SMS_GATEWAY_URL": self.url, "KRANJ_SMS_GATEWAY_TOKEN": SMS_TOKEN}


async def plain_sms_client(url: str, n: int, concurrency: int, text: str) -> float:
    """SMS per second a plain aiohttp client (what notify's GatewaySms transport uses) posts
    to the gateway at `url`, `concurrency` requests at a time: the ceiling notify is held to."""
    import aiohttp

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency), headers={"Authorization": f"Bearer {SMS_TOKEN}"}
    ) as client:
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                key = f"plain-{uuid.uuid4().hex}"
                payload = {"to": f"+3864{i:07d}", "text": text, "reference": key}
                async with client.post(url, json=payload, headers={"Idempotency-Key": key}) as r:
                    r.raise_for_status()
                    await r.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - started)
