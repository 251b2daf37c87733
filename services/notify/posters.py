"""Printable A4 posters: a notice or an event in type readable from two metres, with a QR
code leading to it. HTML from a Jinja2 template (`templates/poster.html`), PDF by WeasyPrint.

Rendering is CPU work of a few hundred milliseconds: `render_poster_async` runs it in a
worker thread so the event loop keeps serving. Nothing is cached on disk; a poster is
made when it is asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import segno
from jinja2 import Environment

from shared.contracts import ALL_KS

from .models import Notice
from .render import from_label


@dataclass(frozen=True)
class Layout:
    """Type sizes in points; tried in order until the poster fits one page."""

    title_pt: int
    body_pt: int
    body_chars: int
    qr_mm: int
    title_chars: int = 200


# The title never goes below 48 pt: readable from two metres.
LAYOUTS = (
    Layout(title_pt=72, body_pt=24, body_chars=500, qr_mm=55),
    Layout(title_pt=60, body_pt=18, body_chars=900, qr_mm=45),
    Layout(title_pt=48, body_pt=14, body_chars=700, qr_mm=40),
    Layout(title_pt=48, body_pt=12, body_chars=300, qr_mm=35, title_chars=90),
)


def qr_data_uri(url: str, *, scale: int = 10) -> str:
    """A QR code as an SVG `data:` URI (dark on white, with its quiet zone)."""
    return segno.make(url, error="m").svg_data_uri(scale=scale, dark="#000", light="#fff")


def short_url(url: str) -> str:
    """What a person types: no scheme, no `www.`, no fragment."""
    parts = urlsplit(url)
    host = parts.netloc.removeprefix("www.")
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{host}{path}{query}" if host else url


def notice_link(notice: Notice, base: str) -> str:
    """Where the QR code leads: the notice's own link, or its card on the noticeboard."""
    if notice.url:
        return notice.url
    if len(notice.ks) == 1 and notice.ks[0] != ALL_KS:
        return f"{base}/noticeboard/{notice.ks[0]}#n-{notice.id}"
    return f"{base}/noticeboard#n-{notice.id}"


def shorten(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(None, 1)[0].rstrip(",;:-–")
    return f"{cut} …"


def title_size(title: str, largest: int) -> int:
    """The largest size up to `largest` at which the longest word still fits the line
    (about 0.7 em per bold letter on 180 mm); never below 48 pt."""
    longest = max((len(word) for word in title.split()), default=1)
    return max(48, min(largest, int(510 / (0.7 * longest))))


def poster_html(env: Environment, notice: Notice, base: str, layout: Layout = LAYOUTS[0]) -> str:
    link = notice_link(notice, base)
    title = shorten(notice.title, layout.title_chars)
    # The short address under the QR code: the board page itself when the link is its anchor.
    readable = short_url(link.split("#", 1)[0])
    return env.get_template("poster.html").render(
        notice=notice,
        title=title,
        title_pt=title_size(title, layout.title_pt),
        from_label=from_label(notice.ks),
        body=shorten(notice.body or "", layout.body_chars),
        layout=layout,
        link=link,
        qr=qr_data_uri(link),
        short_url=readable,
    )


def render_poster(env: Environment, notice: Notice, base: str) -> bytes:
    """The poster as PDF bytes: one A4 page, the largest layout that fits."""
    from weasyprint import HTML  # heavy import: only where posters are made

    document = None
    for layout in LAYOUTS:
        document = HTML(string=poster_html(env, notice, base, layout)).render()
        if len(document.pages) == 1:
            break
    assert document is not None
    if len(document.pages) > 1:  # an extreme text: keep the first page, the QR code leads to the rest
        document = document.copy(document.pages[:1])
    return document.write_pdf()


# Making a PDF takes WeasyPrint a good part of a second of CPU: one at a time per process,
# so public poster and bulletin links (rate-limited per address, `rate_limit("pdf")`) can
# never starve the deliveries of the same process, whoever asks how often.
PDF_RENDERS = asyncio.Semaphore(1)


async def render_pdf_async(render: Callable[..., bytes], *args: Any) -> bytes:
    """`render(*args)` in a worker thread, one PDF at a time (PDF_RENDERS)."""
    async with PDF_RENDERS:
        return await asyncio.to_thread(render, *args)


async def render_poster_async(env: Environment, notice: Notice, base: str) -> bytes:
    return await render_pdf_async(render_poster, env, notice, base)
