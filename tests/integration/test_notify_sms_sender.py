"""notify's SMS sender (one aiohttp session) against a real HTTP server on a free port: the
request of CONTRACT.md (bearer token, Idempotency-Key, JSON `to`/`text`/`reference`), the
gateway's reference taken from a 2xx answer, 429 and 5xx as temporary failures (with
Retry-After), 4xx as permanent ones with the gateway's words, and an unreachable gateway as
a temporary failure; the session is reused across sends."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from support.settings import free_port, make_settings

from services.notify.transports import GatewaySms, PermanentFailure, TemporaryFailure

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway():
    answers: list[web.Response] = []
    seen: list[dict] = []

    async def receive(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append({"headers": dict(request.headers), "body": json.loads(await request.read()), "peer": peer})
        return answers.pop(0) if answers else web.json_response({"id": "gw-42", "status": "accepted"})

    app = web.Application()
    app.router.add_post("/sms", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()  # the kernel picks the port: no race with others
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/sms", answers, seen
    await runner.cleanup()


async def test_the_contract_request_and_every_kind_of_answer(tmp_path, gateway):
    url, answers, seen = gateway
    sender = GatewaySms(make_settings(tmp_path, "amqp://unused/", sms_gateway_url=url, sms_gateway_token="tok-1"))
    try:
        assert await sender.send("+38640123456", "Izklop vode. Odjava: …", "d-1") == "gw-42"
        request = seen[0]
        assert request["headers"]["Authorization"] == "Bearer tok-1"
        assert request["headers"]["Idempotency-Key"] == "d-1"
        assert request["body"] == {"to": "+38640123456", "text": "Izklop vode. Odjava: …", "reference": "d-1"}

        answers.append(web.Response(status=429, headers={"Retry-After": "7"}))
        with pytest.raises(TemporaryFailure) as temporary:
            await sender.send("+38640123456", "x", "d-2")
        assert temporary.value.retry_after == 7.0

        answers.append(web.Response(status=503, text="maintenance"))
        with pytest.raises(TemporaryFailure, match="gateway answered 503"):
            await sender.send("+38640123456", "x", "d-3")

        answers.append(web.Response(status=422, text="number not allowed"))
        with pytest.raises(PermanentFailure, match="gateway refused with 422: number not allowed"):
            await sender.send("+38640123456", "x", "d-4")

        answers.append(web.Response(status=202, text="not json"))
        assert await sender.send("+38640123456", "x", "d-5") == "d-5"  # no reference: the delivery id
        # one kept-alive connection for all five requests: the same client port each time
        assert len(seen) == 5 and len({r["peer"] for r in seen}) == 1
    finally:
        await sender.close()


async def test_an_unreachable_gateway_is_a_temporary_failure(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/sms"  # nothing listens there
    sender = GatewaySms(make_settings(tmp_path, "amqp://unused/", sms_gateway_url=url, sms_gateway_token="t"))
    try:
        with pytest.raises(TemporaryFailure, match="gateway unreachable"):
            await sender.send("+38640123456", "x", "d-1")
    finally:
        await sender.close()


async def test_a_gateway_that_does_not_answer_in_time_is_a_temporary_failure(tmp_path):
    """KRANJ_SMS_GATEWAY_TIMEOUT_SECONDS: an answer later than that is not waited for; the SMS
    is a temporary failure (retried later with the same Idempotency-Key), and the next SMS
    goes as usual."""
    slow: list[float] = [4.0]

    async def receive(request: web.Request) -> web.Response:
        if slow:
            await asyncio.sleep(slow.pop())
        return web.json_response({"id": "gw-7"})

    app = web.Application()
    app.router.add_post("/sms", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/sms"
    settings = make_settings(tmp_path, "amqp://unused/", sms_gateway_url=url, sms_gateway_timeout_seconds=1)
    sender = GatewaySms(settings)
    try:
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match="TimeoutError"):
            await sender.send("+38640123456", "x", "d-1")
        assert time.monotonic() - started < 3  # the setting's second, not the gateway's four
        assert await sender.send("+38640123456", "x", "d-2") == "gw-7"
    finally:
        await sender.close()
        await runner.cleanup()
