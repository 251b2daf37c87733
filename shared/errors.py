"""What a resident or volunteer reads when a request is refused: Slovenian and English kept
as two fields (`Bilingual`), and the one exception the use cases raise with it (`Refused`).

A page shows the text of its own language (`message.sl` / `.en`, or `.in_language(lang)`);
the JSON API's `detail` is both, Slovenian first (`str(message)`: "sl / en"). Nothing
splits a joined string again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bilingual:
    """One message in Slovenian (`sl`) and English (`en`)."""

    sl: str
    en: str

    def __str__(self) -> str:
        return f"{self.sl} / {self.en}"

    def in_language(self, lang: str) -> str:
        return self.en if lang == "en" else self.sl

    def sentence(self) -> Bilingual:
        """Both texts as sentences: capital first letter, a full stop at the end."""
        return Bilingual(_sentence(self.sl), _sentence(self.en))

    def prefixed(self, sl: str, en: str) -> Bilingual:
        """`prefixed("vrstica 3: ", "row 3: ")` -> the same message after a label of its own."""
        return Bilingual(sl + self.sl, en + self.en)

    @staticmethod
    def join(parts: Iterable[Bilingual], separator: str = " ") -> Bilingual:
        items = list(parts)
        return Bilingual(separator.join(p.sl for p in items), separator.join(p.en for p in items))


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


class Refused(Exception):
    """A request the rules refuse, with the reason in both languages.

    `status` is the HTTP status a route answers with (409 by default: the request is valid
    but the record's state does not allow it); subclasses set their own. `str(exc)` is the
    JSON `detail` ("sl / en")."""

    status = 409

    def __init__(self, message: Bilingual, *, status: int | None = None) -> None:
        if not isinstance(message, Bilingual):  # a plain string would bring the splitting back
            raise TypeError(f"Refused takes a Bilingual message, not {type(message).__name__}")
        self.message = message
        if status is not None:
            self.status = status
        super().__init__(str(message))

    def in_language(self, lang: str) -> str:
        return self.message.in_language(lang)
