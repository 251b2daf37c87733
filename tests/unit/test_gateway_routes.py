"""The one route table (kranj/routes.py): derived from the services' own routes, no prefix
claimed twice, every route of every service reachable, and deploy/nginx/gateway.conf
generated from it (the committed file must be what the table says)."""

from __future__ import annotations

import re

import pytest

from kranj.routes import (
    NGINX_CONF,
    REGENERATE,
    SHARED_OWNER,
    RouteConflict,
    RouteTable,
    ServiceRoute,
    nginx_config,
    normalise,
    route_table,
    table_from_routes,
)

# The routes the hand-written gateway.conf missed (issue 18): each must reach its service.
ONCE_MISSED = {
    "/manage/x": "notify",
    "/api/v1/sms/inbound": "notify",
    "/api/v1/preview": "notify",
    "/api/v1/ks/primskovo/contacts": "notify",
    "/api/v1/figures": "booking",
    "/api/v1/figures.csv": "booking",
}


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return route_table()


def test_the_committed_nginx_config_is_generated_from_the_table(table: RouteTable) -> None:
    committed = NGINX_CONF.read_text(encoding="utf-8")
    assert committed == nginx_config(table), (
        "deploy/nginx/gateway.conf is not what the services' routes say (a route was added or moved). "
        f"Regenerate it and commit the file:\n    {REGENERATE}"
    )


def test_the_routes_the_hand_written_gateway_missed_are_routed(table: RouteTable) -> None:
    for path, service in ONCE_MISSED.items():
        assert table.resolve(path) == (service, path), path


def test_every_route_of_every_service_reaches_that_service(table: RouteTable) -> None:
    wrong = []
    public = [r for r in table.routes if r.kind != "internal"]
    assert len(public) > 100  # the table really read the services (API, pages, mounts)
    assert {r.kind for r in public} == {"api", "page", "static"}
    for route in public:
        path = normalise(route.example())
        assert path is not None
        expected = SHARED_OWNER if route.shared else route.service
        found = table.resolve(path)
        if found is None or found[0] != expected:
            wrong.append(f"{route.service} {route.path}: {found}")
    assert not wrong, "\n".join(wrong)


def test_shared_internal_and_document_paths(table: RouteTable) -> None:
    for path in ("/login", "/logout", "/static/shared/kranj.css"):
        assert table.resolve(path) == (SHARED_OWNER, path)
    for service in ("events", "booking", "surveys", "notify"):
        assert table.resolve(f"/docs/{service}/openapi.json") == (service, "/openapi.json")
        assert table.resolve(f"/docs/{service}/asyncapi.json") == (service, "/asyncapi.json")
    for path in ("/metrics", "/healthz", "/readyz", "/openapi.json", "/asyncapi.json", "/docs", "/redoc",
                 "/docs/nobody/openapi.json", "/docs/events/metrics", "/api/v1/unknown", "/login/x"):  # fmt: skip
        assert table.resolve(path) is None, path
    # the contract's prefixes
    for path, service in {"/events": "events", "/rooms": "booking", "/surveys": "surveys",
                          "/noticeboard": "notify", "/subscribe": "notify"}.items():  # fmt: skip
        assert table.resolve(path) == (service, path)


def test_the_staff_home_is_routed_when_a_service_serves_it(table: RouteTable) -> None:
    served = [r for r in table.routes if r.path == "/osebje" or r.path.startswith("/osebje/")]
    if served:
        assert table.resolve("/osebje") is not None
    made_up = table_from_routes(
        [ServiceRoute("events", "/osebje", ("GET",), "page"), ServiceRoute("notify", "/subscribe", ("GET",), "page")]
    )
    assert made_up.resolve("/osebje") == ("events", "/osebje")


def test_a_prefix_claimed_by_two_services_fails_loudly() -> None:
    with pytest.raises(RouteConflict, match=r"/api/v1/things is claimed by booking .* and by events"):
        table_from_routes(
            [
                ServiceRoute("events", "/api/v1/things", ("GET",), "api"),
                ServiceRoute("booking", "/api/v1/things/{id}", ("POST",), "api"),
            ]
        )
    with pytest.raises(RouteConflict, match="starts with a parameter"):
        table_from_routes([ServiceRoute("events", "/{slug}", ("GET",), "page")])
    with pytest.raises(RouteConflict, match="shared path"):
        table_from_routes([ServiceRoute("booking", "/static/shared/x", ("GET",), "page")])


def test_shared_code_served_by_every_service_goes_to_one() -> None:
    routes = [ServiceRoute(s, "/pomoc", ("GET",), "page", shared=True) for s in ("events", "booking", "notify")]
    assert table_from_routes(routes).resolve("/pomoc/x") == (SHARED_OWNER, "/pomoc/x")
    # the shared owner may serve more below it; another service may not
    mine = ServiceRoute(SHARED_OWNER, "/pomoc/dogodki", ("GET",), "page")
    assert table_from_routes([*routes, mine]).resolve("/pomoc/dogodki") == (SHARED_OWNER, "/pomoc/dogodki")
    with pytest.raises(RouteConflict, match="/pomoc is claimed by"):
        table_from_routes([*routes, ServiceRoute("booking", "/pomoc/prostori", ("GET",), "page")])


def test_paths_are_normalised_as_nginx_does() -> None:
    assert normalise("/events/../metrics") == "/metrics"
    assert normalise("//events//1") == "/events/1"
    assert normalise("/events/./1/") == "/events/1/"
    assert normalise("/../etc/passwd") is None
    assert normalise("/") == "/"


def _nginx_locations(conf: str) -> list[tuple[str, str, str | None]]:
    """(kind, pattern, upstream service or None) of each location, in file order."""
    found = []
    for match in re.finditer(r"location\s+(=|~)?\s*(\S+)\s*\{(.*?)\n    \}", conf, re.S):
        kind, pattern, body = match.group(1) or "prefix", match.group(2), match.group(3)
        upstream = re.search(r"proxy_pass \$(\w+);", body)
        found.append((kind, pattern, upstream.group(1) if upstream else None))
    return found


def test_the_nginx_config_routes_as_the_table_does(table: RouteTable) -> None:
    """nginx's choice (exact, then the first matching regex, else a prefix location), read
    from the generated file, agrees with `resolve` for every example path."""
    locations = _nginx_locations(nginx_config(table))

    def nginx_choice(path: str) -> str | None:
        for kind, pattern, upstream in locations:
            if kind == "=" and path == pattern:
                return upstream
        for kind, pattern, upstream in locations:
            if kind == "~" and re.search(pattern, path):
                return upstream
        return None

    paths = [normalise(r.example()) or "" for r in table.routes]
    paths += ["/metrics", "/api/v1/unknown", "/docs/events/openapi.json", "/eventsx", "/api/v1/figuresx", "/login/x"]
    wrong = [
        f"{path}: nginx {nginx_choice(path)}, table {table.resolve(path)}"
        for path in paths
        if path != "/" and nginx_choice(path) != (table.resolve(path) or (None,))[0]
    ]
    assert not wrong, "\n".join(wrong)
