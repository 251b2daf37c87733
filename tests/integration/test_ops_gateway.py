"""deploy/nginx/gateway.conf for real: Debian's nginx, started from the file as compose uses
it, in front of the four real service apps served locally, routes every prefix to the
right service.

Only what Docker provides is replaced in a temp copy: the upstream addresses
(`http://events:8001` -> `http://127.0.0.1:<free port>`), Docker's DNS resolver, and the
listening port. The test copy also adds a response header with nginx's `$upstream_addr`,
so each answer says which service it came from (the real gateway does not reveal that).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port, make_settings, serve_app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_CONF = ROOT / "deploy" / "nginx" / "gateway.conf"
SERVICES = ("events", "booking", "surveys", "notify")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# path through the gateway -> the service that must answer it
ROUTES = {
    "/events": "events",
    "/events/ks/primskovo/calendar.ics": "events",
    "/api/v1/events": "events",
    "/api/v1/registrations/x/cancel": "events",
    "/rooms": "booking",
    "/api/v1/rooms?ks=primskovo": "booking",
    "/api/v1/bookings": "booking",
    "/surveys": "surveys",
    "/surveys/1": "surveys",
    "/api/v1/surveys": "surveys",
    "/noticeboard": "notify",
    "/noticeboard/primskovo": "notify",
    "/noticeboard/primskovo/feed.atom": "notify",
    "/subscribe": "notify",
    "/unsubscribe/x": "notify",
    "/api/v1/subscribers": "notify",
    "/api/v1/notices": "notify",
    "/static/shared/kranj.css": "events",
    "/login": "events",
}


def local_config(ports: dict[str, int], listen: int, prefix: Path) -> str:
    """The main nginx.conf (Debian's nginx has no conf.d of ours) including a copy of
    gateway.conf with the Docker-only parts replaced."""
    conf = GATEWAY_CONF.read_text()
    conf, resolvers = re.subn(r"(?m)^\s*resolver(_timeout)?\s[^;]*;\s*$", "", conf)
    assert resolvers == 2, "gateway.conf: expected `resolver` and `resolver_timeout` lines"
    for service, port in ports.items():
        conf, n = re.subn(rf"http://{service}:\d+;", f"http://127.0.0.1:{port};", conf)
        assert n == 1, f"gateway.conf: expected one upstream http://{service}:<port>"
    conf, n = re.subn(r"(?m)^(\s*)listen\s+8080;", rf"\1listen 127.0.0.1:{listen};", conf)
    assert n == 1, "gateway.conf: expected `listen 8080;`"
    conf, n = re.subn(
        r"(?m)^(\s*server_tokens off;)$", r"\1\n    add_header X-Test-Upstream $upstream_addr always;", conf
    )
    assert n == 1
    (prefix / "gateway.conf").write_text(conf)
    temp = prefix / "temp"
    temp.mkdir()
    return f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
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
        deadline = time.monotonic() + 10
        async with httpx.AsyncClient() as client:
            while True:
                assert proc.poll() is None, f"nginx exited: {proc.stdout.read().decode() if proc.stdout else ''}"
                try:
                    if (await client.get(f"{base}/gateway/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "nginx did not answer within 10 s"
                await asyncio.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def gateway(tmp_path: Path, amqp_url: str) -> AsyncIterator[tuple[str, dict[str, str], dict[str, int]]]:
    assert Path(NGINX).exists(), "nginx is not installed (apt-get install nginx; .ci/run does it)"
    import importlib

    settings = make_settings(tmp_path, amqp_url)
    async with contextlib.AsyncExitStack() as stack:
        bases: dict[str, str] = {}
        for service in SERVICES:
            module = importlib.import_module(f"services.{service}.app")
            app = module.create_app(settings, start_bus=False)
            bases[service] = await stack.enter_async_context(serve_app(app))
        ports = {s: int(b.rsplit(":", 1)[1]) for s, b in bases.items()}
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        listen = free_port()
        base = await stack.enter_async_context(nginx(local_config(ports, listen, prefix), prefix, listen))
        yield base, bases, ports


async def test_every_prefix_reaches_its_service(gateway: tuple[str, dict[str, str], dict[str, int]]) -> None:
    base, direct, ports = gateway
    by_port = {port: service for service, port in ports.items()}
    wrong = []
    async with httpx.AsyncClient(timeout=10) as client:
        for path, service in ROUTES.items():
            through = await client.get(base + path, headers={"Accept": "text/html"})
            upstream = through.headers.get("x-test-upstream", "")
            answered = by_port.get(int(upstream.rsplit(":", 1)[1])) if upstream else None
            if answered != service:
                wrong.append(
                    f"{path}: answered by {answered or 'the gateway itself'} ({through.status_code}), not {service}"
                )
                continue
            same = await client.get(direct[service] + path, headers={"Accept": "text/html"})
            if same.status_code != through.status_code:
                wrong.append(f"{path}: {through.status_code} through the gateway, {same.status_code} direct")
        assert not wrong, "\n".join(wrong)

        # The public pages really are the services' pages.
        for path in ("/events", "/rooms", "/noticeboard"):
            response = await client.get(base + path)
            assert response.status_code == 200, path
            assert "text/html" in response.headers["content-type"]


async def test_documents_and_what_is_not_public(gateway: tuple[str, dict[str, str], dict[str, int]]) -> None:
    base, _direct, _ports = gateway
    async with httpx.AsyncClient(timeout=10) as client:
        for service in SERVICES:
            openapi = await client.get(f"{base}/docs/{service}/openapi.json")
            assert openapi.status_code == 200, service
            assert openapi.json()["openapi"].startswith("3.")
            asyncapi = await client.get(f"{base}/docs/{service}/asyncapi.json")
            assert asyncapi.status_code == 200, service
            assert service in asyncapi.json()["info"]["title"]
        assert (await client.get(f"{base}/gateway/healthz")).text == "ok\n"
        root = await client.get(f"{base}/")
        assert root.status_code == 302 and root.headers["location"].endswith("/events")
        for path in ("/metrics", "/healthz", "/readyz", "/api/v1/unknown", "/openapi.json"):
            response = await client.get(base + path)
            assert response.status_code == 404, path
            assert not response.headers.get("x-test-upstream"), f"{path} must not reach a service"
