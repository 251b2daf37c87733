"""QR codes for the paper version: inline SVG drawn by segno, sized for print."""

from __future__ import annotations

from html import escape

import segno
from markupsafe import Markup

PRINT_SIZE_MM = 40  # at least 3 cm on paper, so an older phone camera reads it at arm's length


def qr_svg(url: str, *, size_mm: int = PRINT_SIZE_MM, label: str | None = None) -> Markup:
    """`url` as an inline SVG QR code (error correction M, with its quiet zone), black on
    white, `size_mm` millimetres wide on paper whatever the QR version. One SVG unit is
    one module, so the path is exactly segno's own (`segno.make(url, error="m")`)."""
    qr = segno.make(url, error="m")
    svg = qr.svg_inline(scale=1, dark="#000", light="#fff", omitsize=True, svgclass="qr", lineclass="qr-modules")
    title = escape(label or f"QR koda: {url}")
    attributes = f'<svg width="{size_mm}mm" height="{size_mm}mm" role="img" aria-label="{title}" data-url="{escape(url)}" '
    return Markup(svg.replace("<svg ", attributes, 1))
