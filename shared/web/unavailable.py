"""503 instead of a 500 with a trace when the database is down or restarting.

A request that meets a database that cannot be reached gets `503 Service Unavailable`
with a readable Slovenian/English `detail` and `Retry-After`, so residents' browsers,
the gateway and other systems know to try again. Its transaction never committed, so
nothing of it is half-written. Any other error is re-raised (a 500, logged as a bug).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..db import database_unavailable

log = logging.getLogger("kranj.web")
RETRY_AFTER_SECONDS = 5
DETAIL = (
    "Storitev je začasno nedosegljiva (podatkovna zbirka se ne odziva); poskusite znova čez nekaj sekund. "
    "/ The service is temporarily unavailable (the database is not answering); please try again in a few seconds."
)
# Exception classes a lost database connection surfaces as (SQLAlchemy's wrappers, the pool's
# timeout, and the socket errors asyncpg raises while connecting).
UNAVAILABLE_TYPES: tuple[type[Exception], ...] = (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError)


def install(app: FastAPI, templates: Any) -> None:
    """Register the handler on `app` (`templates` renders `error.html` for browsers)."""

    async def database_down(request: Request, exc: Exception) -> Response:
        if not database_unavailable(exc):
            raise exc
        log.warning("database unavailable: %s", f"{type(exc).__name__}: {exc}"[:300], extra={"path": request.url.path})
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        wants_html = "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/")
        if wants_html:
            return templates.TemplateResponse(
                request, "error.html", {"status": 503, "detail": DETAIL}, status_code=503, headers=headers
            )
        return JSONResponse({"detail": DETAIL}, status_code=503, headers=headers)

    async def unhandled(request: Request, exc: Exception) -> Response:
        """Last resort, for what a middleware raised (e.g. the staff identity check meeting a
        database that is down): 503 as above, else Starlette's plain 500 (the error is logged)."""
        if database_unavailable(exc):
            return await database_down(request, exc)
        return PlainTextResponse("Internal Server Error", status_code=500)

    for exc_type in UNAVAILABLE_TYPES:
        app.add_exception_handler(exc_type, database_down)
    app.add_exception_handler(Exception, unhandled)
