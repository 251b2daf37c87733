"""Make each service's `/openapi.json` say what its error handlers really answer.

FastAPI documents a 422 whose `detail` is a list; ours (shared/web) is a readable string
with the list beside it in `errors`. And a staff route answers 401 and 403, a route with
an id in its path 404, a rate-limited route 429 with `Retry-After` — all as JSON with a
`detail`. `document_errors(app)` adds these to the generated document, once, from what
each route depends on, so no route has to repeat them (schemathesis checks that every
status code and body matches the document: tests/integration/test_schemathesis.py). It also publishes each staff
route's action in the permission table as `x-permission` (`x-permission-optional` where
residents use the route too): tests/security/test_permission_matrix.py reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, in Slovenian, then English."},
    },
}
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "title": "HTTPValidationError",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "Which fields are wrong and why, readable (`ks: unknown KS 'x'; …`)."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
DESCRIPTIONS = {
    400: "The body is not JSON (or not UTF-8), or a signed link or token in it is not valid.",
    401: "A staff token is required (`Authorization: Bearer …`), or the one sent is not valid.",
    403: "The token's role or KS does not allow this.",
    404: "No such resource.",
    409: "The request conflicts with the current state.",
    422: "Validation error: `detail` says which fields are wrong.",
    429: "Too many requests: wait `Retry-After` seconds.",
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every APIRoute of the app as the document sees it (path with the router's prefix,
    dependencies with the router's): FastAPI >= 0.16x nests included routers."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: routes are flat
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def permission_of(dependant: Dependant) -> tuple[str, bool] | None:
    from ..auth import permission_of as declared

    return declared(dependant)


def _needs_staff(route: Any) -> bool:
    from ..auth import current_staff

    return any(call is current_staff for call in _calls(route.dependant))


def _rate_limited(route: Any) -> bool:
    return any(getattr(call, "__name__", "").startswith("rate_limit_") for call in _calls(route.dependant))


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status, "Error."),
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {"description": "Seconds until a request is accepted again", "schema": {"type": "integer"}}
        }
    return response


def _patch(app: FastAPI, document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
    paths = document.get("paths", {})
    for route in _api_routes(app):
        if not route.include_in_schema:
            continue
        statuses: set[int] = set()
        if _needs_staff(route):
            statuses |= {401, 403}
        if route.dependant.path_params:
            statuses.add(404)
        if _rate_limited(route):
            statuses.add(429)
        if route.body_field is not None:
            statuses.add(400)  # a body that is not JSON at all (or not UTF-8)
        permission = permission_of(route.dependant)
        if permission is not None:
            statuses |= {401, 403}  # also where a staff token is optional: one that is not valid, or not allowed
        for method in route.methods or ():
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            if permission is not None:  # the route's action in the permission table (shared/permissions.py)
                operation["x-permission"] = permission[0]
                if permission[1]:
                    operation["x-permission-optional"] = True
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(str(status), _error_response(status))
            for code, response in responses.items():
                # An error documented by a route with a description only: the body is still our JSON error.
                if code[:1] in "45" and "content" not in response:
                    response["content"] = {"application/json": {"schema": ERROR_REF}}


def document_errors(app: FastAPI) -> None:
    """Wrap `app.openapi` so the document carries the error answers (idempotent)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        _patch(app, document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
