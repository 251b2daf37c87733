"""schemathesis against each service's own OpenAPI document (issue #8).

Each service is served by uvicorn on a real port with its real database and a broker
vhost of its own; schemathesis (its CLI, in a child process) reads `/openapi.json` and
sends generated requests — valid and invalid — to every operation, once without and once
with the staff bearer token. Checks: no 5xx, every status code documented, content types
and bodies as documented. Deterministic (fixed seed, derandomised) and bounded
(`MAX_EXAMPLES` per operation), so the whole file stays within about a minute and a half.
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path

import httpx
import pytest
from support.browser import serve_app
from support.settings import TEST_ADMIN_TOKEN, make_settings

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 6
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
STAFF = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


async def _seed(service: str, client: httpx.AsyncClient) -> None:
    """A little real data, so that reads and writes on existing ids are tried too."""
    if service == "events":
        starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
        created = await client.post(
            "/api/v1/events",
            headers=STAFF,
            json={
                "ks": "primskovo",
                "title": "Delavnica",
                "description": "Vabljeni.",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(),
                "venue": "Dom KS",
                "capacity": 10,
            },
        )
        assert created.status_code == 201, created.text
        await client.post(f"/api/v1/events/{created.json()['id']}/publish", headers=STAFF)
    elif service == "surveys":
        created = await client.post(
            "/api/v1/surveys", headers=STAFF, json={"template": "needs-assessment", "ks": "primskovo"}
        )
        assert created.status_code == 201, created.text
        await client.post(f"/api/v1/surveys/{created.json()['id']}/open", headers=STAFF)


async def _schemathesis(base: str, workdir: Path, *headers: str) -> tuple[int, str]:
    args = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
        "--checks", CHECKS,
        "--mode", "all",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", "20261124",
        "--generation-deterministic",
        "--suppress-health-check", "all",
        "--workers", "1",
        "--request-timeout", "20",
        "--no-color",
        "--output-truncate", "false",
    ]
    for header in headers:
        args += ["-H", header]
    process = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )  # in the test's own directory: schemathesis keeps a crash cache (.schemathesis/) where it runs
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")


@pytest.mark.parametrize("service", ["events", "booking", "surveys", "notify"])
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(service, tmp_path, amqp_url):
    settings = make_settings(tmp_path, amqp_url, sms_gateway_token="gateway-secret")
    app = import_module(f"services.{service}.app").create_app(settings)
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())
    async with serve_app(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await _seed(service, client)
        for who, headers in (("resident", ()), ("staff", (f"Authorization: Bearer {TEST_ADMIN_TOKEN}",))):
            code, report = await _schemathesis(base, tmp_path, *headers)
            assert code == 0, f"schemathesis as {who} against {service}:\n{report[-20000:]}"
            tested = re.search(r"Tested: (\d+)", report)
            assert tested and int(tested[1]) == operations, f"not every operation was tested:\n{report[-5000:]}"
