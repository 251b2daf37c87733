"""The 26 local communities (krajevne skupnosti) of the Municipality of Kranj."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

# slug -> Slovenian name, in the order of CONTRACT.md
KS_NAMES: dict[str, str] = {
    "besnica": "Besnica",
    "bitnje": "Bitnje",
    "bratov-smuk": "Bratov Smuk",
    "britof": "Britof",
    "center": "Center",
    "circe": "Čirče",
    "golnik": "Golnik",
    "gorenja-sava": "Gorenja Sava",
    "gorice": "Goriče",
    "hrastje": "Hrastje",
    "huje": "Huje",
    "jost": "Jošt",
    "kokrica": "Kokrica",
    "mavcice": "Mavčiče",
    "orehek-drulovka": "Orehek-Drulovka",
    "planina": "Planina",
    "podblica": "Podblica",
    "predoslje": "Predoslje",
    "primskovo": "Primskovo",
    "strazisce": "Stražišče",
    "struzevo": "Struževo",
    "tenetise": "Tenetiše",
    "trstenik": "Trstenik",
    "vodovodni-stolp": "Vodovodni stolp",
    "zlato-polje": "Zlato polje",
    "zabnica": "Žabnica",
}
KS_SLUGS: tuple[str, ...] = tuple(KS_NAMES)
ALL_KS = "*"



def _check_ks(value: str) -> str:
    if value not in KS_NAMES:
        raise ValueError(f"unknown KS {value!r}; use one of the 26 KS slugs of Kranj")
    return value


def _check_ks_or_all(value: str) -> str:
    return value if value == ALL_KS else _check_ks(value)


KsSlug = Annotated[str, AfterValidator(_check_ks), WithJsonSchema({"type": "string", "enum": list(KS_NAMES)})]
KsOrAll = Annotated[
    str,
    AfterValidator(_check_ks_or_all),
    WithJsonSchema({"type": "string", "enum": [*KS_NAMES, ALL_KS]}),
]

def ks_name(slug: str) -> str:
    """The community's name for residents: `"circe"` -> `"Čirče"`, `"*"` -> the city."""
    if slug == ALL_KS:
        return "Mestna občina Kranj"
    return KS_NAMES.get(slug, slug)
