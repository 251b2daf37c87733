"""The one route table of the platform's front door, derived from the services' own routes.

Both front doors follow it: the compose gateway (`deploy/nginx/gateway.conf`, generated
from this table by `kranj gateway --nginx`) and the local one that `kranj up` serves on
`KRANJ_GATEWAY_PORT` (kranj/gateway.py). A route a service adds is routed by both as soon
as the table is built again; nobody keeps a list by hand.

How a path is owned:

- Every route, page and static mount of a service claims its first path segment
  (`/events/{id}` claims `/events`), or, under the namespaces `/api/<version>/` and
  `/static/`, the segment after it (`/api/v1/figures.csv` claims `/api/v1/figures.csv`,
  `/static/events/…` claims `/static/events`). The gateway sends the claimed path and
  everything below it to that service.
- What every service serves alike (the staff login, the shared stylesheet: SHARED_PATHS,
  and any route whose endpoint lives in `shared/` that all four serve) goes to one of them,
  SHARED_OWNER.
- A prefix two services claim otherwise is a mistake: building the table fails with
  RouteConflict, naming the prefix and the routes that claim it.
- The services' own machinery (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`,
  `/asyncapi.json`, Swagger UI) is not public; each service's documents are published as
  `/docs/<service>/openapi.json` and `/docs/<service>/asyncapi.json`.
- `/` redirects to HOME; `/gateway/healthz` is the gateway's own liveness.

    kranj gateway --nginx      the compose nginx config (deploy/nginx/gateway.conf)
    kranj gateway --check      exits 1 when the committed config differs from the table
    kranj gateway              the table, one prefix a line
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.settings import SERVICES, Settings

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx" / "gateway.conf"
REGENERATE = "kranj gateway --nginx > deploy/nginx/gateway.conf   (or: make gateway-conf)"

HOME = "/events"  # where `/` sends a resident
SHARED_OWNER = "events"  # serves what every service serves alike
SHARED_PATHS = ("/login", "/logout", "/static/shared")
DOCUMENTS = ("openapi.json", "asyncapi.json")  # published as /docs/<service>/<document>
HEALTHZ = "/gateway/healthz"
EVERY_SERVICE = "every service (shared code)"
# Each service's own machinery: never through the gateway (scrape them on the service's port).
INTERNAL_PATHS = frozenset(
    {
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/asyncapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
)
NAMESPACES = {"api": 3, "static": 2}  # first segment -> how many segments a service owns
COMPOSE_UPSTREAMS = {
    name: f"http://{name}:{port}"
    for name, port in (("events", 8001), ("booking", 8002), ("surveys", 8003), ("notify", 8004))
}


class RouteConflict(RuntimeError):
    """Two services claim the same path prefix."""


@dataclass(frozen=True)
class ServiceRoute:
    """One route of one service, as the app declares it."""

    service: str
    path: str  # with `{parameters}`; a mount's path for static files
    methods: tuple[str, ...]  # () for a mount
    kind: str  # "api" (in the OpenAPI document), "page" (HTML, feeds, forms), "static", "internal"
    shared: bool = False  # served alike by every service

    def example(self) -> str:
        """The path with each `{parameter}` filled with a harmless value (for the sweeps)."""
        if self.kind == "static":
            return f"{self.path}/kranj.css" if self.path == "/static/shared" else f"{self.path}/"
        return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: _dummy(m.group(1)), self.path)


def _prefix_order(prefix: str) -> tuple[int, str]:
    return (2 if prefix.startswith("/api/") else 1 if prefix.startswith("/static/") else 0, prefix)


def _dummy(name: str) -> str:
    return "primskovo" if name == "ks" else "1" if name.endswith("_id") else "x"


@dataclass(frozen=True)
class RouteTable:
    """Path prefix -> service; the shared paths; each service's documents."""

    prefixes: dict[str, str]  # "/events" -> "events", "/api/v1/figures.csv" -> "booking"
    shared: tuple[str, ...] = SHARED_PATHS
    shared_owner: str = SHARED_OWNER
    documents: dict[str, tuple[str, ...]] = field(default_factory=dict)  # service -> ("openapi.json", …)
    routes: tuple[ServiceRoute, ...] = ()  # every route, for the tests' sweeps (not serialised)

    # ---- routing -----------------------------------------------------------------------
    def resolve(self, path: str) -> tuple[str, str] | None:
        """(service, path to ask it for) for a normalised request path; None: not routed.

        The same decisions as the generated nginx config: a prefix owns itself and all below
        it; the shared paths go to the shared owner; /docs/<service>/<document> is rewritten."""
        if path.startswith("/docs/"):
            parts = path.split("/")
            if len(parts) == 4 and parts[3] in self.documents.get(parts[2], ()):
                return parts[2], "/" + parts[3]
            return None
        for shared in self.shared:
            if path == shared if not shared.startswith("/static/") else path.startswith(shared + "/"):
                return self.shared_owner, path
        for prefix in self._longest_first:
            if path == prefix or path.startswith(prefix + "/"):
                return self.prefixes[prefix], path
        return None

    @property
    def _longest_first(self) -> list[str]:
        return sorted(self.prefixes, key=len, reverse=True)

    def of(self, service: str) -> list[str]:
        """The prefixes of one service: pages first, then static files, then the API."""
        return sorted((p for p, s in self.prefixes.items() if s == service), key=_prefix_order)

    # ---- serialisation (kranj up hands the table to the front door's process) ----------
    def to_json(self) -> str:
        return json.dumps(
            {
                "prefixes": self.prefixes,
                "shared": list(self.shared),
                "shared_owner": self.shared_owner,
                "documents": {s: list(d) for s, d in self.documents.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> RouteTable:
        data = json.loads(text)
        return cls(
            prefixes=dict(data["prefixes"]),
            shared=tuple(data["shared"]),
            shared_owner=data["shared_owner"],
            documents={s: tuple(d) for s, d in data["documents"].items()},
        )


# --------------------------------------------------------------------------------------
# Reading the services' routes
# --------------------------------------------------------------------------------------
def _table_settings(data_dir: str) -> Settings:
    """Fixed settings (the docs generator's): the routes never depend on the environment."""
    from kranj.docs import _settings

    return _settings(data_dir)


def build_apps(settings: Settings | None = None) -> dict[str, Any]:
    """Each service's FastAPI app as `kranj run` builds it (no migration, no bus)."""

    def make(settings: Settings) -> dict[str, Any]:
        return {
            name: importlib.import_module(f"services.{name}.app").create_app(settings, migrate=False, start_bus=False)
            for name in SERVICES
        }

    if settings is not None:
        return make(settings)
    with tempfile.TemporaryDirectory(prefix="kranj-routes-") as data_dir:
        return make(_table_settings(data_dir))


def service_routes(service: str, app: Any) -> Iterator[ServiceRoute]:
    """Every route of one app: API routes, pages, mounts."""
    from fastapi.routing import APIRoute, iter_route_contexts
    from starlette.routing import Mount

    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path
        if not path:
            continue
        if isinstance(route, Mount):
            yield ServiceRoute(service, path.rstrip("/"), (), "static", path.rstrip("/") in SHARED_PATHS)
            continue
        methods = tuple(sorted(set(context.methods or ()) - {"HEAD"}))
        endpoint = context.endpoint
        module = getattr(endpoint, "__module__", "") or ""
        if path in INTERNAL_PATHS:
            kind = "internal"
        elif isinstance(route, APIRoute) and getattr(context, "include_in_schema", False):
            kind = "api"
        else:
            kind = "page"
        yield ServiceRoute(service, path, methods, kind, path in SHARED_PATHS or module.startswith("shared."))


def owned_prefix(path: str) -> str:
    """The prefix a route claims: its first segment, or two/three under /static/ and /api/."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise RouteConflict(f"{path!r} claims the whole site")
    depth = NAMESPACES.get(parts[0], 1)
    if len(parts) < depth:
        raise RouteConflict(f"{path!r} claims the whole /{parts[0]}/ namespace")
    owned = parts[:depth]
    if "{" in owned[-1]:
        raise RouteConflict(f"{path!r} starts with a parameter: it would claim every path of /{'/'.join(owned[:-1])}")
    return "/" + "/".join(owned)


def table_from_routes(routes: Iterable[ServiceRoute]) -> RouteTable:
    routes = tuple(routes)
    services = {r.service for r in routes}
    # A route every service serves from shared code is shared, wherever it is declared.
    served_by: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for r in routes:
        served_by.setdefault((r.path, r.methods), set()).add(r.service)
    claims: dict[str, dict[str, list[str]]] = {}
    documents: dict[str, list[str]] = {}
    for r in routes:
        if r.kind == "internal":
            if r.path.lstrip("/") in DOCUMENTS:
                documents.setdefault(r.service, []).append(r.path.lstrip("/"))
            continue
        if r.path in SHARED_PATHS:
            continue
        owner = r.service
        if r.shared and len(services) > 1 and served_by[(r.path, r.methods)] == services:
            if r.service != SHARED_OWNER:
                continue  # counted once, for the shared owner
            owner = EVERY_SERVICE
        prefix = owned_prefix(r.path)
        if any(prefix == s or prefix.startswith(s + "/") for s in SHARED_PATHS):
            raise RouteConflict(f"{r.service} {r.path}: under the shared path {prefix}, which {SHARED_OWNER} serves")
        claims.setdefault(prefix, {}).setdefault(owner, []).append(f"{'|'.join(r.methods) or 'mount'} {r.path}")
    for owners in claims.values():  # shared code and the shared owner's own routes: one service
        if EVERY_SERVICE in owners and SHARED_OWNER in owners:
            owners[EVERY_SERVICE] += owners.pop(SHARED_OWNER)
    conflicts = [
        f"{prefix} is claimed by "
        + " and by ".join(f"{owner} ({', '.join(paths)})" for owner, paths in sorted(owners.items()))
        for prefix, owners in sorted(claims.items())
        if len(owners) > 1
    ]
    if conflicts:
        raise RouteConflict(
            "two services claim the same path prefix; the gateway can send it to one only:\n  " + "\n  ".join(conflicts)
        )
    order = {name: i for i, name in enumerate(SERVICES)}
    prefixes = {
        prefix: SHARED_OWNER if owner == EVERY_SERVICE else owner
        for prefix, (owner,) in ((p, tuple(o)) for p, o in claims.items())
    }
    prefixes = dict(sorted(prefixes.items(), key=lambda item: (order.get(item[1], 99), _prefix_order(item[0]))))
    return RouteTable(
        prefixes=prefixes,
        documents={
            s: tuple(sorted(d, key=lambda n: (DOCUMENTS.index(n), n)))
            for s, d in sorted(documents.items(), key=lambda i: order.get(i[0], 99))
        },
        routes=routes,
    )


def route_table(apps: dict[str, Any] | None = None) -> RouteTable:
    """The table of the services as they are now (builds their apps when none are given)."""
    apps = apps if apps is not None else build_apps()
    return table_from_routes(r for name, app in apps.items() for r in service_routes(name, app))


def load_table_subprocess(python: str = sys.executable, timeout: float = 120) -> RouteTable:
    """The table, built in a short-lived process (importing the four services costs ~100 MB
    that the front door's process need not keep)."""
    import subprocess

    done = subprocess.run(
        [python, "-m", "kranj.routes", "--json"], capture_output=True, text=True, timeout=timeout, cwd=str(ROOT)
    )
    if done.returncode != 0:
        raise RouteConflict(
            done.stderr.strip().removeprefix("kranj: ") or f"the route table failed ({done.returncode})"
        )
    return RouteTable.from_json(done.stdout)


# --------------------------------------------------------------------------------------
# Request paths as nginx sees them
# --------------------------------------------------------------------------------------
def normalise(path: str) -> str | None:
    """nginx's view of a (decoded) request path: merged slashes, `.` and `..` resolved;
    None for a path that climbs above the root (nginx answers 400)."""
    if not path.startswith("/"):
        return None
    parts: list[str] = []
    for part in path.split("/")[1:]:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    result = "/" + "/".join(parts)
    if result != "/" and (path.endswith("/") or path.endswith("/.") or path.endswith("/..")):
        result += "/"
    return result


# --------------------------------------------------------------------------------------
# The compose nginx config
# --------------------------------------------------------------------------------------
NGINX_HEADER = """\
# Kranj ZA vse — the one gateway on port 8080 (docker compose).
#
# GENERATED from the services' own routes by kranj/routes.py; do not edit by hand.
# Regenerate after adding or moving a route:
#     {regenerate}
# (tests/unit/test_gateway_routes.py fails while this file is out of date.)
#
# Goes into nginx's http{{}} block: the official nginx image includes
# /etc/nginx/conf.d/*.conf there, and docker-compose.yml mounts this file as
# /etc/nginx/conf.d/default.conf.
#
# Upstreams are variables resolved through Docker's embedded DNS at request time, so the
# gateway starts even while a service is down and finds a restarted container's new
# address (a plain `upstream` block would resolve once, at start).

resolver 127.0.0.11 valid=10s ipv6=off;
resolver_timeout 5s;

server {{
    listen 8080;
    server_name _;
    server_tokens off;

    client_max_body_size 2m;   # CSV sign-up lists are small; nothing else uploads

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Real-IP $remote_addr;
    # The gateway is the edge: the resident's address is the peer's, never what the client
    # wrote in its own X-Forwarded-For (the services trust this header, FORWARDED_ALLOW_IPS,
    # and count rate limits by it). Behind another load balancer, set real_ip_header there.
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_connect_timeout 5s;
    proxy_read_timeout 60s;
    proxy_next_upstream off;   # never replay a POST

{upstreams}

    # The gateway's own liveness (the services have /healthz and /readyz each).
    location = {healthz} {{
        access_log off;
        default_type text/plain;
        return 200 "ok\\n";
    }}

    location = / {{
        return 302 {home};
    }}
"""

NGINX_FOOTER = """
    # Anything else, including /metrics, /healthz and /readyz of the services, is not public.
    location /api/ {
        default_type application/json;
        return 404 '{"detail": "Ni takega naslova. / Not found."}\\n';
    }
    location / {
        return 404;
    }
}
"""


def _regex_alternative(prefix: str) -> str:
    return re.sub(r"([.+*?()\[\]{}|^$\\])", r"\\\1", prefix.lstrip("/"))


def nginx_config(table: RouteTable, upstreams: dict[str, str] | None = None) -> str:
    """deploy/nginx/gateway.conf for `table` (compose upstreams unless others are given)."""
    upstreams = upstreams or COMPOSE_UPSTREAMS
    width = max(len(s) for s in upstreams)
    lines = [
        NGINX_HEADER.format(
            regenerate=REGENERATE,
            upstreams="\n".join(f"    set ${s:<{width}} {u};" for s, u in upstreams.items()),
            healthz=HEALTHZ,
            home=HOME,
        )
    ]
    for service in upstreams:
        owned = table.of(service)
        if not owned:
            continue
        lines.append(f"    # {service}: {', '.join(owned)}")
        lines.append(f"    location ~ ^/({'|'.join(_regex_alternative(p) for p in owned)})(/|$) {{")
        lines.append(f"        proxy_pass ${service};")
        lines.append("    }")
        lines.append("")
    alternatives = [
        _regex_alternative(p) + "/" if p.startswith("/static/") else _regex_alternative(p) + "$" for p in table.shared
    ]
    lines.append(f"    # Served alike by every service ({', '.join(table.shared)}): {table.shared_owner} answers.")
    lines.append(f"    location ~ ^/({'|'.join(alternatives)}) {{")
    lines.append(f"        proxy_pass ${table.shared_owner};")
    lines.append("    }")
    lines.append("")
    lines.append("    # Each service's documents, under one host:")
    lines.append("    #   /docs/<service>/openapi.json  ->  <service>:/openapi.json")
    lines.append("    #   /docs/<service>/asyncapi.json ->  <service>:/asyncapi.json")
    for service, documents in table.documents.items():
        if service not in upstreams:
            continue
        names = "|".join(_regex_alternative(d.removesuffix(".json")) for d in documents)
        lines.append(f"    location ~ ^/docs/{service}/({names})\\.json$ {{")
        lines.append(f"        rewrite ^/docs/{service}/(.*)$ /$1 break;")
        lines.append(f"        proxy_pass ${service};")
        lines.append("    }")
    return "\n".join(lines) + "\n" + NGINX_FOOTER


def nginx_stale(table: RouteTable | None = None, path: Path = NGINX_CONF) -> bool:
    table = table or route_table()
    return not path.exists() or path.read_text(encoding="utf-8") != nginx_config(table)


def describe(table: RouteTable) -> str:
    docs = [f"/docs/{s}/{d}" for s, names in table.documents.items() for d in names]
    width = max(len(p) for p in [*table.prefixes, *table.shared, *docs])
    lines = [f"{prefix:<{width}}  {service}" for prefix, service in table.prefixes.items()]
    lines += [f"{path:<{width}}  {table.shared_owner} (served alike by every service)" for path in table.shared]
    lines += [f"{'/docs/' + s + '/' + d:<{width}}  {s} /{d}" for s, docs in table.documents.items() for d in docs]
    lines += [f"{'/':<{width}}  302 to {HOME}", f"{HEALTHZ:<{width}}  the gateway itself"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:  # `python -m kranj.routes --json` (kranj up)
    argv = sys.argv[1:] if argv is None else argv
    try:
        table = route_table()
    except RouteConflict as exc:
        print(f"kranj: {exc}", file=sys.stderr)
        return 1
    if "--json" in argv:
        print(table.to_json())
    elif "--nginx" in argv:
        sys.stdout.write(nginx_config(table))
    else:
        print(describe(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
