"""surveys: the forms of the staff console read and checked — a survey's details (KS, title,
introduction, answering window) and one question (text, type, options one per line,
required) — with the GOV.UK error messages in Slovenian (`shared.web.forms.Errors`, keyed by
the id of each field's input). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.clock import TZ
from shared.contracts import ALL_KS, KS_NAMES
from shared.web.forms import Errors

from .domain import QUESTION_TYPES, SCALE_MAX, SCALE_MIN, QuestionDef, SurveyDefinition

TYPE_LABELS: dict[str, str] = {
    "single": "En odgovor izmed možnosti",
    "multiple": "Več odgovorov izmed možnosti",
    "scale": f"Ocena na lestvici od {SCALE_MIN} do {SCALE_MAX}",
    "text": "Odgovor s svojimi besedami (prosto besedilo)",
}
TYPE_SHORT: dict[str, str] = {
    "single": "en odgovor",
    "multiple": "več odgovorov",
    "scale": f"lestvica {SCALE_MIN}–{SCALE_MAX}",
    "text": "prosto besedilo",
}
assert set(TYPE_LABELS) == set(QUESTION_TYPES)

DETAILS = ("ks", "title", "description", "opens_at", "closes_at")
QUESTION = ("q_text", "q_type", "q_options", "q_help", "q_required")
# the id of each field's input (the error summary links to it)
IDS = {
    "ks": "ks",
    "title": "title",
    "description": "description",
    "opens_at": "opens_at",
    "closes_at": "closes_at",
    "q_text": "q-text",
    "q_type": "q-type",
    "q_options": "q-options",
    "q_help": "q-help",
}
MAX_OPTIONS = 30


def input_value(at: datetime | None) -> str:
    """A time as the value of a `datetime-local` field, in Kranj."""
    return at.astimezone(TZ).strftime("%Y-%m-%dT%H:%M") if at else ""


def _local(value: str) -> datetime | None:
    """A `datetime-local` value (Europe/Ljubljana) as an aware time; ValueError if not one."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=TZ) if parsed.tzinfo is None else parsed


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


@dataclass
class Details:
    """A survey's details as typed, and what is wrong with them."""

    values: dict[str, str]
    errors: Errors = field(default_factory=Errors)
    opens_at: datetime | None = None
    closes_at: datetime | None = None

    @classmethod
    def of(cls, definition: SurveyDefinition) -> Details:
        values = {"ks": definition.ks, "title": definition.title, "description": definition.description}
        values |= {"opens_at": input_value(definition.opens_at), "closes_at": input_value(definition.closes_at)}
        return cls(values, opens_at=definition.opens_at, closes_at=definition.closes_at)

    @classmethod
    def blank(cls, kss: list[str]) -> Details:
        values = dict.fromkeys(DETAILS, "")
        values["ks"] = kss[0] if len(kss) == 1 else ""
        return cls(values)

    @classmethod
    def read(cls, form: Mapping[str, Any], now: datetime, *, title_required: bool = True) -> Details:
        details = cls({name: _text(form, name) for name in DETAILS})
        v, errors = details.values, details.errors
        if v["ks"] != ALL_KS and v["ks"] not in KS_NAMES:
            errors.add("ks", "Izberite krajevno skupnost, za katero je anketa.")
        if (title_required and not v["title"]) or len(v["title"]) > 200:
            errors.add("title", "Vpišite naslov ankete (največ 200 znakov).")
        if len(v["description"]) > 5000:
            errors.add("description", "Uvod je predolg: največ 5000 znakov.")
        for name, what in (("opens_at", "začetka"), ("closes_at", "konca")):
            try:
                setattr(details, name, _local(v[name]))
            except ValueError:
                errors.add(name, f"Vpišite datum in uro {what} (dan, mesec, leto in uro) ali pustite polje prazno.")
        if details.closes_at is not None:
            if details.closes_at <= now:
                errors.add("closes_at", "Konec mora biti v prihodnosti.")
            elif details.opens_at is not None and details.closes_at <= details.opens_at:
                errors.add("closes_at", "Konec mora biti za začetkom.")
        return details


@dataclass
class QuestionForm:
    """One question as typed, what is wrong with it, and the question when nothing is."""

    values: dict[str, str]
    errors: Errors = field(default_factory=Errors)
    question: QuestionDef | None = None

    @classmethod
    def blank(cls) -> QuestionForm:
        return cls({"q_text": "", "q_type": "", "q_options": "", "q_help": "", "q_required": ""})

    @classmethod
    def read(cls, form: Mapping[str, Any]) -> QuestionForm:
        values = {name: _text(form, name) for name in QUESTION}
        found = cls(values)
        errors = found.errors
        text, kind = values["q_text"], values["q_type"]
        options = [line.strip() for line in values["q_options"].splitlines() if line.strip()]
        if not text or len(text) > 500:
            errors.add("q-text", "Vpišite besedilo vprašanja (največ 500 znakov).")
        if kind not in QUESTION_TYPES:
            errors.add("q-type", "Izberite, kako krajani odgovorijo na vprašanje.")
        elif kind in ("single", "multiple"):
            if len(options) < 2:
                errors.add("q-options", "Vpišite vsaj dve možnosti, vsako v svojo vrstico.")
            elif len(options) > MAX_OPTIONS:
                errors.add("q-options", f"Največ {MAX_OPTIONS} možnosti.")
            elif any(len(o) > 300 for o in options):
                errors.add("q-options", "Možnost je predolga: največ 300 znakov v vrstici.")
            elif len({o.casefold() for o in options}) != len(options):
                errors.add("q-options", "Vsaka možnost naj bo napisana le enkrat.")
        elif options:
            errors.add(
                "q-options",
                "Lestvica in prosto besedilo nimata možnosti: izbrišite jih ali izberite vprašanje z izbiro.",
            )
        if len(values["q_help"]) > 500:
            errors.add("q-help", "Pojasnilo je predolgo: največ 500 znakov.")
        if errors:
            return found
        try:
            found.question = QuestionDef(
                type=kind,
                text=text,
                help=values["q_help"],
                required=values["q_required"] == "da",
                options=[{"text": o} for o in options] if kind in ("single", "multiple") else [],
            )
        except ValidationError:
            errors.add("q-text", "Preverite vprašanje in njegove možnosti.")
        return found


def definition_errors(exc: ValidationError) -> Errors:
    """A whole definition refused (e.g. a question shown only after an answer to one that
    would now come later): one message at the question list."""
    errors = Errors()
    text = " ".join(str(e.get("msg", "")) for e in exc.errors())
    if "show_if" in text:
        errors.add("vprasanja", "Vprašanje, ki se pokaže le ob odgovoru na drugo, mora biti za njim.")
    else:
        errors.add("vprasanja", "Anketa s to spremembo ne bi bila pravilna: preverite vprašanja.")
    return errors
