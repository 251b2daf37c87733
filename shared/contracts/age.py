"""The platform's ONE set of age bands, so that reach by age can be compared between
services: who answered a survey (surveys `age_band`) and who came to an event (events
attendance) are counted in the same bands.

- `0-14`  children (otroci), added for attendance; the surveys API accepts it too (a
  compatible extension of the contract's four bands);
- `15-29` young people (mladi, as Slovenian youth law counts them), `30-49`, `50-64`,
  `65+` (starejši): the four bands of the public contract (CONTRACT.md, surveys).

Slugs are what the APIs and stored rows carry; labels are what residents and staff read
(Slovenian first, English second).
"""

from __future__ import annotations

from typing import Literal, get_args

AgeBand = Literal["0-14", "15-29", "30-49", "50-64", "65+"]
AGE_BANDS: tuple[str, ...] = get_args(AgeBand)

AGE_BAND_LABELS_SL: dict[str, str] = {
    "0-14": "0–14 let (otroci)",
    "15-29": "15–29 let",
    "30-49": "30–49 let",
    "50-64": "50–64 let",
    "65+": "65 let in več",
}
AGE_BAND_LABELS_EN: dict[str, str] = {
    "0-14": "0–14 (children)",
    "15-29": "15–29",
    "30-49": "30–49",
    "50-64": "50–64",
    "65+": "65 or over",
}


def age_band_label(band: str, lang: str = "sl") -> str:
    """The band as people read it; an unknown slug is shown as it is."""
    labels = AGE_BAND_LABELS_EN if lang == "en" else AGE_BAND_LABELS_SL
    return labels.get(band, band)
