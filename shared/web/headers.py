"""Security headers on every response of every service (issue 15), from one middleware.

- `Content-Security-Policy`: only this origin's resources; no script at all (the pages use
  none: forms, links and inline SVG charts only), no plugins, no `<base>` tricks, forms
  post only here, and no page may be framed (`frame-ancestors 'none'`) but the one page
  made for it (below). Styles may be inline (`<style>` blocks and `style=`
  attributes in the templates): CSS cannot run code, and `script-src 'none'` stays strict.
  Images: this origin and `data:` (the QR codes of posters, kiosk and surveys).
- `X-Content-Type-Options: nosniff`, `Referrer-Policy: strict-origin-when-cross-origin`
  (signed links in a path never leave in a Referer to another site), and the old
  `X-Frame-Options: DENY` for browsers without `frame-ancestors`.

A route that needs another policy sets its own `Content-Security-Policy` header; the
middleware never overwrites a header already set. The one page made to be framed by other
sites (the "Kaj se dogaja v KS …" widget that KS and municipal websites paste in, issue 18)
answers with `EMBEDDABLE_HEADERS`: the same policy with `frame-ancestors *`, and then no
`X-Frame-Options` (its only values forbid framing; a browser that knows `frame-ancestors`
ignores it anyway). Every other answer keeps `DENY` and `frame-ancestors 'none'`.
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
# The widget page: framed by any site (KS and municipal websites), otherwise as strict.
EMBEDDABLE_POLICY = CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", "frame-ancestors *")
EMBEDDABLE_HEADERS: dict[str, str] = {"Content-Security-Policy": EMBEDDABLE_POLICY}
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
                framable = headers.get("Content-Security-Policy") == EMBEDDABLE_POLICY
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers and not (framable and name == "X-Frame-Options"):
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
