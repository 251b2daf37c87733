"""Finding 5 (major): the organiser role could do all that KS staff can.

The whole matrix, generated from the services' live OpenAPI documents (`app.openapi()`):
every operation that declares an action of the permission table (`x-permission`, from
`shared.auth.Permit` / `MaybeStaff`) × every role (admin, ks-staff, organiser, no token) ×
the record of the path in the caller's own KS / another KS × the caller's own record /
another's (events, whose organisers act only on what they created). The expected answer
comes from `shared.permissions.TABLE` alone: where permitted, anything but 401/403 (and no
5xx); where not, 403; without a token, 401.

An operation with no declared action that is not in `PUBLIC` fails the test, so a new
endpoint cannot escape the matrix; an action whose path names a record this module cannot
seed fails too (add its seeding below). The four services run once for the module against
SQLite without a broker (their outboxes wait), with one record per KS / owner seeded per
operation (so one operation's writes do not change another's expectations).
"""

from __future__ import annotations

import itertools
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from support.settings import make_settings
from support.times import iso, local_day, weekday_ahead

from shared import permissions
from shared.permissions import scope_of

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SERVICES = ("events", "booking", "surveys", "notify")
ROLES = ("admin", "ks-staff", "organiser", None)  # None: no token
OWN_KS, OTHER_KS = "primskovo", "huje"
ROOMS = {OWN_KS: "ks-primskovo", OTHER_KS: "ks-huje"}  # seeded by the booking migrations
AMQP_UNUSED = "amqp://guest:guest@127.0.0.1:5672/"

# Operations anyone may call (no staff rights involved). Anything else must declare an action.
PUBLIC = {
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /asyncapi.json",
    "GET /api/v1/events",
    "GET /api/v1/rooms",
    "GET /api/v1/rooms/{room_id}",
    "GET /api/v1/rooms/{room_id}/availability",
    "GET /api/v1/surveys",
    "POST /api/v1/sms/inbound",  # the SMS gateway's own token, not staff
}
# Operations residents use too, where a staff token only adds powers (`x-permission-optional`):
# how a caller without the right is answered.
#   "strict":   as any staff route (the records are drafts, or the request needs staff: 401/403)
#   "resident": no token is a resident (not 401/403); staff without the right get 403
#   "as-resident": staff without the right are treated as residents (never 403)
#   "reduced":  never 401/403: without the right, a view without personal data
OPTIONAL = {
    "GET /api/v1/events/{event_id}": "strict",
    "POST /api/v1/events/{event_id}/registrations": "resident",
    "POST /api/v1/registrations/{registration_id}/cancel": "strict",
    "GET /api/v1/surveys/{survey_id}": "strict",
    "POST /api/v1/surveys/{survey_id}/responses": "strict",
    "POST /api/v1/bookings": "as-resident",
    "GET /api/v1/bookings/{booking_id}": "reduced",
    "POST /api/v1/bookings/{booking_id}/cancel": "strict",
}
# Path parameters whose record has an owner besides a KS (organisers: own records).
OWNED = {"event_id", "registration_id"}
PATH_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    permission: str | None
    optional: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def params(self) -> list[str]:
        return PATH_PARAM.findall(self.path)


def _create_app(service: str, settings: Any, **kwargs: Any) -> FastAPI:
    module = __import__(f"services.{service}.app", fromlist=["create_app"])
    return module.create_app(settings, **kwargs)  # type: ignore[no-any-return]


def _operations(apps: dict[str, FastAPI]) -> list[Operation]:
    found = []
    for service, app in apps.items():
        for path, item in app.openapi()["paths"].items():
            for method, op in item.items():
                found.append(
                    Operation(
                        service,
                        method.upper(),
                        path,
                        op.get("x-permission"),
                        bool(op.get("x-permission-optional")),
                    )
                )
    return found


def _documented() -> list[Operation]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), AMQP_UNUSED)
        return _operations({s: _create_app(s, settings, migrate=False, start_bus=False) for s in SERVICES})


OPERATIONS = _documented()
STAFF_OPERATIONS = [op for op in OPERATIONS if op.permission is not None]


# ======================================================================================
# The running platform, seeded
# ======================================================================================
@dataclass
class Platform:
    clients: dict[str, httpx.AsyncClient]
    apps: dict[str, FastAPI]
    headers: dict[str | None, dict[str, str]]
    other_organiser: dict[str, str]
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    cache: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def n(self) -> int:
        return next(self.counter)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    settings = make_settings(tmp_path_factory.mktemp("matrix"), AMQP_UNUSED)
    apps = {s: _create_app(s, settings, start_bus=False) for s in SERVICES}
    async with (
        apps["events"].router.lifespan_context(apps["events"]),
        apps["booking"].router.lifespan_context(apps["booking"]),
        apps["surveys"].router.lifespan_context(apps["surveys"]),
        apps["notify"].router.lifespan_context(apps["notify"]),
    ):
        clients = {
            s: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{s}.test")
            for s, app in apps.items()
        }
        accounts = apps["events"].state.ctx.accounts  # one identity store for all four

        async def token(role: str, ks: list[str], label: str) -> dict[str, str]:
            _id, value = await accounts.create_token(role=role, ks=ks, label=label)
            return {"Authorization": f"Bearer {value}"}

        headers: dict[str | None, dict[str, str]] = {
            "admin": await token("admin", [], "matrix admin"),
            "ks-staff": await token("ks-staff", [OWN_KS], "matrix tajnica KS Primskovo"),
            "organiser": await token("organiser", [OWN_KS], "matrix organizator A"),
            None: {},
        }
        other = await token("organiser", [OWN_KS], "matrix organizator B")
        try:
            yield Platform(clients, apps, headers, other)
        finally:
            for client in clients.values():
                await client.aclose()


def _ok(response: httpx.Response, what: str) -> dict[str, Any]:
    assert response.status_code in (200, 201), f"seeding {what}: {response.status_code} {response.text[:300]}"
    return response.json()  # type: ignore[no-any-return]


def _event_body(ks: str, n: int) -> dict[str, Any]:
    starts = local_day(20 + n % 40, hour=17)
    return {
        "ks": ks,
        "title": f"Delavnica {n}",
        "description": "Vabljeni vsi krajani.",
        "starts_at": iso(starts),
        "ends_at": iso(starts.replace(hour=19)),
        "venue": "Dom KS",
        "capacity": 10,
    }


def _owner_headers(p: Platform, variant: str) -> tuple[str, dict[str, str]]:
    """Who creates the record of `variant`, in which KS."""
    if variant == "own":
        return OWN_KS, p.headers["organiser"]
    if variant == "other-owner":
        return OWN_KS, p.other_organiser
    return OTHER_KS, p.headers["admin"]


async def _event(p: Platform, variant: str, *, published: bool = False) -> str:
    ks, headers = _owner_headers(p, variant)
    event = _ok(await p.clients["events"].post("/api/v1/events", json=_event_body(ks, p.n()), headers=headers), "event")
    if published:
        _ok(
            await p.clients["events"].post(f"/api/v1/events/{event['id']}/publish", headers=p.headers["admin"]),
            "publish",
        )
    return str(event["id"])


async def _registration(p: Platform, variant: str) -> str:
    event_id = await _event(p, variant, published=True)
    body = {"name": "Ana Novak", "email": f"ana{p.n()}@example.si"}
    return str(_ok(await p.clients["events"].post(f"/api/v1/events/{event_id}/registrations", json=body), "reg")["id"])


async def _booking(p: Platform, variant: str) -> str:
    ks = OWN_KS if variant == "own" else OTHER_KS
    n = p.n()
    starts = weekday_ahead(3, weeks=2 + n % 6, hour=8 + (n // 6) % 10)
    body = {
        "room_id": ROOMS[ks],
        "starts_at": iso(starts),
        "ends_at": iso(starts.replace(hour=starts.hour + 1)),
        "purpose": "Vaje pevskega zbora",
        "name": "Janez Kranjc",
        "email": f"janez{n}@example.si",
        "phone": "041 222 333",
        "attendees": 10,
    }
    return str(
        _ok(await p.clients["booking"].post("/api/v1/bookings", json=body, headers=p.headers["admin"]), "booking")["id"]
    )


async def _survey(p: Platform, variant: str) -> str:
    ks = OWN_KS if variant == "own" else OTHER_KS
    body = {"template": "needs-assessment", "ks": ks}
    return str(
        _ok(await p.clients["surveys"].post("/api/v1/surveys", json=body, headers=p.headers["admin"]), "survey")["id"]
    )


async def _notice(p: Platform, variant: str) -> str:
    from services.notify.models import Delivery, Notice

    ks = OWN_KS if variant == "own" else OTHER_KS
    notice = Notice(
        source="/matrix", source_id=f"m-{p.n()}", title="Zapora ceste", body="Zapora.", ks=[ks], channels=["sms"]
    )
    async with p.apps["notify"].state.ctx.db.session() as session:
        session.add(notice)
        await session.flush()
        session.add(
            Delivery(
                notice_id=notice.id,
                channel="sms",
                address="+38640123456",
                status="failed-permanent",
                last_error="gateway refused +38640123456 (janez.kranjc@example.si)",
            )
        )
        await session.commit()
        return notice.id


async def _scheduled(p: Platform, variant: str) -> str:
    from datetime import timedelta

    from services.notify.models import ScheduledNotice
    from shared import clock

    ks = OWN_KS if variant == "own" else OTHER_KS
    row = ScheduledNotice(
        source="/kranj/notify/staff/matrix",
        ks=ks,
        title="Zapora ceste",
        data={"title": "Zapora ceste", "body": "Zapora.", "ks": [ks]},
        send_at=clock.now() + timedelta(days=30),
        created_by="matrix",
    )
    async with p.apps["notify"].state.ctx.db.session() as session:
        session.add(row)
        await session.commit()
        return row.id


SEEDERS: dict[str, Callable[[Platform, str], Any]] = {
    "event_id": _event,
    "registration_id": _registration,
    "booking_id": _booking,
    "survey_id": _survey,
    "notice_id": _notice,
    "scheduled_id": _scheduled,
}


async def _path_value(p: Platform, op: Operation, param: str, variant: str) -> str:
    if param == "ks":
        return OWN_KS if variant == "own" else OTHER_KS
    if param == "room_id":
        return ROOMS[OWN_KS if variant == "own" else OTHER_KS]
    assert param in SEEDERS, f"{op.key}: no seeding for the path parameter {param!r}: add it to SEEDERS"
    key = (op.key, param, variant)  # one record per operation and variant
    if key not in p.cache:
        p.cache[key] = await SEEDERS[param](p, variant)
    return p.cache[key]


# Requests whose KS is in the body or the query (no record in the path): own KS / another.
def _ks_of(variant: str) -> str:
    return OWN_KS if variant == "own" else OTHER_KS


BODY_SCOPED: dict[str, Callable[[Platform, str], dict[str, Any]]] = {
    "POST /api/v1/events": lambda p, v: {"json": _event_body(_ks_of(v), p.n())},
    "POST /api/v1/surveys": lambda p, v: {"json": {"template": "needs-assessment", "ks": _ks_of(v)}},
    "POST /api/v1/subscribers": lambda p, v: {
        "json": {"email": f"krajan{p.n()}@example.si", "ks": [_ks_of(v)], "topics": ["general"], "channels": ["email"]}
    },
    "POST /api/v1/preview": lambda p, v: {"json": {"title": "Zapora", "body": "Cesta je zaprta.", "ks": [_ks_of(v)]}},
    # notify's staff page (a form; the same fields as JSON): the preview step of a notice to the KS
    "POST /osebje/obvestila": lambda p, v: {
        "json": {"ks": _ks_of(v), "title": "Zapora", "body": "Cesta je zaprta.", "channels": ["noticeboard"]}
    },
    # notify's subscribers page: a resident from a paper form, to the KS (tests/integration/test_staff_subscribers.py)
    "POST /osebje/narocniki": lambda p, v: {
        "json": {"ks": _ks_of(v), "email": f"papir{p.n()}@example.si", "topics": ["general"], "channels": ["email"]}
    },
    "GET /api/v1/bookings": lambda p, v: {"params": {"ks": _ks_of(v)}},
    "GET /api/v1/figures": lambda p, v: {"params": {"ks": _ks_of(v)}},
    "GET /api/v1/figures.csv": lambda p, v: {"params": {"ks": _ks_of(v)}},
    "POST /api/v1/bookings": lambda p, v: {
        "json": {
            "room_id": ROOMS[_ks_of(v)],
            "starts_at": iso(weekday_ahead(2, weeks=3 + p.n() % 5, hour=9)),
            "ends_at": iso(weekday_ahead(2, weeks=3 + p.n() % 5, hour=10)),
            "purpose": "Sestanek",
            "name": "Mojca",
            "email": f"mojca{p.n()}@example.si",
            "attendees": 5,
        }
    },
}
# Bodies the route needs to reach its permission check (the rest get `{}`: 422 where permitted).
BODIES: dict[str, dict[str, Any]] = {
    "POST /api/v1/surveys/{survey_id}/responses": {"answers": {}, "channel": "paper"},
    "POST /api/v1/events/{event_id}/registrations": {"name": "Ana Novak", "email": "ana.matrix@example.si"},
}


def _variants(op: Operation) -> list[str]:
    if any(p in OWNED for p in op.params):
        return ["own", "other-owner", "other-ks"]
    if op.params or op.key in BODY_SCOPED:
        return ["own", "other-ks"]
    return ["any"]


def expected(role: str | None, action: str, variant: str) -> str:
    """What the permission table says: "ok" (anything but 401/403), "403" or "401"."""
    if role is None:
        return "401"
    scope = scope_of(role, action)
    if scope is None:
        return "403"
    if variant == "other-ks" and scope != "all":
        return "403"
    if variant == "other-owner" and scope == "own-record":
        return "403"
    return "ok"


# ======================================================================================
# The tests
# ======================================================================================
async def test_every_operation_declares_a_permission_or_is_public() -> None:
    undeclared = sorted(op.key for op in OPERATIONS if op.permission is None and op.key not in PUBLIC)
    assert not undeclared, f"staff routes must declare their action (shared.auth.Permit): {undeclared}"
    unknown = sorted(op.key for op in STAFF_OPERATIONS if op.permission not in permissions.TABLE)
    assert not unknown, unknown
    optional = {op.key for op in OPERATIONS if op.optional}
    assert optional == set(OPTIONAL), f"declare how these answer callers without the right: {optional ^ set(OPTIONAL)}"
    assert not {op.key for op in STAFF_OPERATIONS} & PUBLIC


async def test_every_action_of_the_table_is_used_and_documented() -> None:
    used = {op.permission for op in STAFF_OPERATIONS}
    pages_only = {"events.list"}  # staff pages (not in the OpenAPI documents) use it
    # checked inside POST /osebje/obvestila for what the form asks (tests/integration/test_staff_notices.py)
    pages_only |= {"notify.notices.urgent", "notify.notices.city-wide"}
    assert set(permissions.TABLE) - used - pages_only == set()
    doc = (Path(__file__).parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    assert permissions.markdown() in doc, "docs/security.md: paste shared.permissions.markdown() (table changed)"


async def test_live_documents_are_the_ones_the_matrix_was_built_from(platform: Platform) -> None:
    assert _operations(platform.apps) == OPERATIONS


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "no-token")
@pytest.mark.parametrize("op", STAFF_OPERATIONS, ids=lambda op: f"{op.service}:{op.key}")
async def test_permission_matrix(platform: Platform, op: Operation, role: str | None) -> None:
    assert op.permission is not None
    client = platform.clients[op.service]
    mode = OPTIONAL.get(op.key, "strict")
    for variant in _variants(op):
        path = op.path
        for param in op.params:
            path = path.replace(f"{{{param}}}", await _path_value(platform, op, param, variant))
        kwargs: dict[str, Any] = {}
        if op.key in BODY_SCOPED:
            kwargs = BODY_SCOPED[op.key](platform, variant)
        elif op.method in ("POST", "PUT", "PATCH"):
            kwargs = {"json": BODIES.get(op.key, {})}
        response = await client.request(op.method, path, headers=platform.headers[role], **kwargs)
        want = expected(role, op.permission, variant)
        if mode == "resident" and role is None:
            want = "ok"
        elif mode == "as-resident" or (mode == "reduced" and want != "ok"):
            want = "public"
        where = f"{role or 'no token'} {op.method} {path} ({variant}, {op.permission}): {response.status_code} {response.text[:200]}"
        assert response.status_code < 500, where
        if want == "ok":
            assert response.status_code not in (401, 403), where
            if mode == "reduced":
                assert response.json()["name"] is not None, where
        elif want == "public":
            assert response.status_code not in (401, 403), where
            if mode == "reduced":
                body = response.json()
                assert body["name"] is None and body["email"] is None and body["purpose"] == "", where
        else:
            assert response.status_code == int(want), where
            detail = response.json()["detail"]
            assert isinstance(detail, str) and " / " in detail, where  # Slovenian / English
