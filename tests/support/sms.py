"""A real HTTP SMS gateway for tests, as CONTRACT.md describes it (`SmsGateway`)."""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from support.settings import free_port, wait_until


# ======================================================================================
# SMS gateway
# ======================================================================================
@dataclass
class SmsRequest:
    """One request the SMS gateway received, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int
    received_at: float = field(default_factory=time.monotonic)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class SmsGateway:
    """The SMS gateway of CONTRACT.md as a real HTTP server (uvicorn + Starlette in a thread).

    `POST <url>` with `Authorization: Bearer <token>`, `Idempotency-Key` and JSON
    `{"to", "text", "reference"}`. Answers:
    - the next code of `statuses` if any (e.g. `gw.statuses.extend([500, 429, 200])`);
    - else 401 for a wrong/missing bearer token, 422 for a body that breaks the contract
      (`problems` says why);
    - else 200 with `{"id": …, "status": "accepted"}`.
    `delay` (seconds) makes every answer slow (simulate "no answer" with a client timeout).
    `requests` keeps every request in order; `accepted` only the 2xx ones;
    `await wait_for(count, timeout)` waits for `count` requests of any outcome.
    """

    token = "test-sms-token"

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.url = f"http://{self.host}:{self.port}/sms"
        self.statuses: collections.deque[int] = collections.deque()
        self.requests: list[SmsRequest] = []
        self.problems: list[str] = []
        self.delay = 0.0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def receive(request: Request) -> JSONResponse:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            status, answer = self._decide(headers, payload)
            if self.delay:
                await asyncio.sleep(self.delay)
            self.requests.append(
                SmsRequest(path=request.url.path, headers=headers, body=body, json=payload, status=status)
            )
            return JSONResponse(answer, status_code=status)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])

    def _decide(self, headers: dict[str, str], payload: Any) -> tuple[int, dict[str, Any]]:
        if self.statuses:
            status = self.statuses.popleft()
            return status, {"status": "programmed", "code": status}
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "bad or missing bearer token"}
        problems = []
        if not isinstance(payload, dict):
            problems.append("body is not a JSON object")
        else:
            for key in ("to", "text", "reference"):
                if not isinstance(payload.get(key), str) or not payload.get(key):
                    problems.append(f"{key} missing")
            to = payload.get("to")
            if isinstance(to, str) and not (to.startswith("+") and to[1:].isdigit()):
                problems.append(f"to is not E.164: {to!r}")
        if not headers.get("idempotency-key"):
            problems.append("Idempotency-Key header missing")
        if problems:
            self.problems.extend(problems)
            return 422, {"error": "; ".join(problems)}
        return 200, {"id": secrets.token_hex(8), "status": "accepted"}

    @property
    def accepted(self) -> list[SmsRequest]:
        return [r for r in self.requests if r.accepted]

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self._app(), host=self.host, port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="sms-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test SMS gateway did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[SmsRequest]:
        await wait_until(
            lambda: len(self.requests) >= count,
            timeout=timeout,
            message=f"{count} request(s) at the SMS gateway (got {len(self.requests)})",
        )
        return self.requests[:count]

    def settings(self) -> dict[str, Any]:
        return {"sms_gateway_url": self.url, "sms_gateway_token": self.token}
