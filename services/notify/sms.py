"""SMS that costs what it should: GSM-7 vs UCS-2 per 3GPP TS 23.038, segment counting,
Slovenian transliteration and shortening to a segment cap. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# 3GPP TS 23.038 GSM 7-bit default alphabet (basic table) and its extension table.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")  # each costs two septets (escape + char)
GSM7 = GSM7_BASIC | GSM7_EXTENSION

SINGLE = {"GSM-7": 160, "UCS-2": 70}
MULTI = {"GSM-7": 153, "UCS-2": 67}  # a concatenation header takes the rest

TRANSLITERATION = str.maketrans(
    {
        "č": "c", "Č": "C", "š": "s", "Š": "S", "ž": "z", "Ž": "Z",
        "ć": "c", "Ć": "C", "đ": "dj", "Đ": "Dj",
        "„": '"', "“": '"', "”": '"', "‟": '"', "«": '"', "»": '"',
        "‚": "'", "‘": "'", "’": "'", "‛": "'",
        "–": "-", "—": "-", "‑": "-", "−": "-",
        "…": "...", "\u00a0": " ", "\u202f": " ", "•": "-",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SmsInfo:
    text: str
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    transliterated: bool = False


def encoding(text: str) -> str:
    return "GSM-7" if GSM7.issuperset(text) else "UCS-2"


def _units(text: str, enc: str) -> int:
    if enc == "GSM-7":
        return len(text) + sum(map(text.count, GSM7_EXTENSION))
    return len(text.encode("utf-16-le")) // 2  # astral characters are surrogate pairs


def _unit_lengths(text: str, enc: str) -> list[int]:
    if enc == "GSM-7":
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]  # astral characters are surrogate pairs


def segments(text: str) -> SmsInfo:
    """How the network will carry `text`: encoding, length in units and segment count.
    Counted greedily, so an escape pair or a surrogate pair never splits across segments."""
    enc = encoding(text)
    units = _units(text, enc)
    if units <= SINGLE[enc]:
        return SmsInfo(text, enc, units, 1 if text else 0)
    count, used = 1, 0
    for n in _unit_lengths(text, enc):
        if used + n > MULTI[enc]:
            count, used = count + 1, 0
        used += n
    return SmsInfo(text, enc, units, count)


def transliterate(text: str) -> str:
    """č→c, š→s, ž→z, ć→c, đ→dj (and capitals), typographic quotes and dashes to plain ones.
    Never produces `?`: what has no GSM-7 spelling stays as it is."""
    return text.translate(TRANSLITERATION)


def best_encoding(text: str) -> SmsInfo:
    """Keep the original when it already fits one segment; otherwise transliterate when
    that lowers the segment count."""
    original = segments(text)
    if original.segments <= 1:
        return original
    plain = segments(transliterate(text))
    if plain.segments < original.segments:
        return SmsInfo(plain.text, plain.encoding, plain.units, plain.segments, transliterated=True)
    return original


def fit(render: Callable[[str], str], body: str, max_segments: int) -> SmsInfo:
    """Render with the whole `body`; if the best encoding still needs more than
    `max_segments`, shorten `body` at a word boundary (ending with "…") until it fits."""
    info = best_encoding(render(body))
    if info.segments <= max_segments:
        return info
    words = body.split()
    lo, hi, best = 0, len(words), best_encoding(render("…"))
    while lo <= hi:  # the longest word prefix that fits
        mid = (lo + hi) // 2
        candidate = best_encoding(render(" ".join(words[:mid]).rstrip(".,;:") + "…"))
        if candidate.segments <= max_segments:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best


def estimated_cost(info: SmsInfo, price_per_segment: float) -> float:
    return round(info.segments * price_per_segment, 4)
