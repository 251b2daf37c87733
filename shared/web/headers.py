"""Security headers on every response of every service (issue 15), from one middleware.

- `Content-Security-Policy`: only this origin's resources; no script at all (the pages use
  none: forms, links and inline SVG charts only), no plugins, no `<base>` tricks, forms
  post only here, and no page may be framed (`frame-ancestors 'none'`; no page of the
  platform is meant to be embedded). Styles may be inline (`<style>` blocks and `style=`
  attributes in the templates): CSS cannot run code, and `script-src 'none'` stays strict.
  Images: this origin and `data:` (the QR codes of posters, kiosk and surveys).
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: strict-origin-when-cross-origin`
  (signed links in a path never leave in a Referer to another site), and the old
  `X-Frame-Options: DENY` for browsers without `frame-ancestors`.

A route that needs another policy (a page meant for embedding) sets its own
`Content-Security-Policy` header; the middleware never overwrites a header already set.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'none'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
