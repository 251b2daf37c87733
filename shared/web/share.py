"""Share previews (Open Graph, issue 18): what a link to an event, a notice or a survey shows
when it is pasted into Viber, WhatsApp or Facebook — the title, a line with the date and
the KS, and a picture. `base.html` writes the tags from `share` in a page's context.

Every address is absolute and public (`KRANJ_PUBLIC_URL`, else the service's own address):
a link preview is fetched by someone else's server. The picture is one small PNG per kind
(`static/og/`, 1200 × 630, what Facebook and WhatsApp take), served by every service under
`/static/shared/`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..settings import Settings

Kind = Literal["event", "notice", "survey"]

# The picture of each kind and what it shows, for readers of the preview who cannot see it.
PICTURES: dict[Kind, tuple[str, str]] = {
    "event": ("dogodek.png", "Kranj ZA vse: dogodek v vaši krajevni skupnosti"),
    "notice": ("obvestilo.png", "Kranj ZA vse: obvestilo krajevne skupnosti"),
    "survey": ("anketa.png", "Kranj ZA vse: anketa, povejte svoje mnenje"),
}
DESCRIPTION_CHARS = 200


@dataclass(frozen=True)
class Share:
    title: str
    description: str
    url: str
    image: str
    image_alt: str
    type: str = "website"


def shorten(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """One line of at most `limit` characters, cut at a word."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    return line[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:-–") + "…"


def share(settings: Settings, service: str, path: str, *, kind: Kind, title: str, description: str) -> Share:
    """The preview of the page at `path` of `service`."""
    base = settings.public_base(service)
    picture, alt = PICTURES[kind]
    return Share(
        title=shorten(title, 200),
        description=shorten(description),
        url=f"{base}{path}",
        image=f"{base}/static/shared/og/{picture}",
        image_alt=alt,
    )
