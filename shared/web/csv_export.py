"""The one CSV writer of the platform: every export a staff member opens in a spreadsheet
goes through here (events' attendee lists, booking's room-use figures, surveys' results).

What a Slovenian Excel expects: UTF-8 with a BOM, `;` between cells (the comma is the
decimal separator), CRLF line ends. What keeps it safe: a text cell that a spreadsheet
would read as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a line break, also
after leading spaces) is written with a leading apostrophe, so it shows as text and never
runs (`=HYPERLINK(…)`, `+cmd|' /C calc'!A0`, `@SUM(…)`). A plain number (`-3`, `+386 40
123 456`, `1,5`) cannot call anything and is left as it is. Numbers passed as `int` or
`float` are written as they are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

from fastapi.responses import Response

__all__ = ["BOM", "MEDIA_TYPE", "csv_response", "csv_text", "neutralise"]

BOM = "\ufeff"
MEDIA_TYPE = "text/csv; charset=utf-8"
DELIMITER = ";"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_PLAIN_NUMBER = re.compile(r"[+-]?\d[\d .,]*")


def neutralise(value: object) -> object:
    """One cell as it is safe to write: `None` is empty, numbers stay numbers, a text that
    a spreadsheet would run as a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return value
    text = str(value)
    stripped = text.lstrip(" ")
    if stripped[:1] in _FORMULA_START and not _PLAIN_NUMBER.fullmatch(stripped):
        return "'" + text
    return text


def csv_text(rows: Iterable[Sequence[object]], *, header: Sequence[str] | None = None) -> str:
    """The rows (and a header row first) as spreadsheet text: BOM, `;`, CRLF, every cell
    through `neutralise`."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=DELIMITER, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    if header is not None:
        writer.writerow([neutralise(cell) for cell in header])
    for row in rows:
        writer.writerow([neutralise(cell) for cell in row])
    return BOM + out.getvalue()


def csv_response(
    rows: Iterable[Sequence[object]], *, filename: str, header: Sequence[str] | None = None, inline: bool = False
) -> Response:
    """An HTTP answer with the CSV as a download named `filename` (ASCII)."""
    disposition = "inline" if inline else "attachment"
    return Response(
        csv_text(rows, header=header).encode("utf-8"),
        media_type=MEDIA_TYPE,
        headers={"Content-Disposition": f'{disposition}; filename="{filename}"'},
    )
