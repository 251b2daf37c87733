"""Pure rules of surveys: the survey definitions (question types, options, `show_if`), the
answering window, answer validation, and the keyed fingerprints of addresses and browsers
with the clusters staff are shown. The needs-assessment template is in needs.py, results
and the CSV export in tally.py. No I/O here."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts.age import AGE_BAND_LABELS_SL
from shared.contracts.age import AGE_BANDS as SHARED_AGE_BANDS
from shared.contracts.ks import KsOrAll
from shared.errors import Bilingual

QuestionType = Literal["single", "multiple", "scale", "text"]
QUESTION_TYPES: tuple[str, ...] = ("single", "multiple", "scale", "text")
# The platform's one set of age bands (shared with events attendance): the contract's four
# (15-29, 30-49, 50-64, 65+) and 0-14 for children, a compatible extension.
AGE_BANDS: tuple[str, ...] = SHARED_AGE_BANDS
UNKNOWN = "unknown"
AGE_BAND_LABELS: dict[str, str] = {**AGE_BAND_LABELS_SL, UNKNOWN: "starost ni navedena"}
SCALE_MIN, SCALE_MAX = 1, 5
TEXT_MAX = 2000
_ID = r"^[a-z0-9][a-z0-9_-]{0,39}$"


# ======================================================================================
# Definitions
# ======================================================================================
class ShowIf(BaseModel):
    """Show a question only when an earlier choice question was answered with `option`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(pattern=_ID)
    option: str = Field(pattern=_ID)


class OptionDef(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(default="", description="Short id (a-z, 0-9, -, _); given as o1, o2… when empty.")
    text: str = Field(min_length=1, max_length=300)
    text_en: str | None = Field(default=None, min_length=1, max_length=300, description="English text (optional).")

    def text_in(self, lang: str) -> str:
        return self.text_en if lang == "en" and self.text_en else self.text

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if value and not re.match(_ID, value):
            raise ValueError("id: lowercase letters, digits, - and _, at most 40")
        return value


class QuestionDef(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(default="", description="Short id (a-z, 0-9, -, _); given as q1, q2… when empty.")
    type: QuestionType
    text: str = Field(min_length=1, max_length=500)
    help: str = Field(default="", max_length=500, description="A hint shown under the question.")
    text_en: str | None = Field(default=None, min_length=1, max_length=500, description="English text (optional).")
    help_en: str | None = Field(default=None, max_length=500, description="English hint (optional).")
    required: bool = False
    options: list[OptionDef] = Field(default_factory=list, max_length=30)
    show_if: ShowIf | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if value and not re.match(_ID, value):
            raise ValueError("id: lowercase letters, digits, - and _, at most 40")
        return value

    @model_validator(mode="after")
    def _options(self) -> QuestionDef:
        if self.type in ("single", "multiple"):
            if len(self.options) < 2:
                raise ValueError(f"a {self.type} question needs at least two options")
            for i, option in enumerate(self.options, 1):
                if not option.id:
                    option.id = f"o{i}"
            ids = [o.id for o in self.options]
            if len(set(ids)) != len(ids):
                raise ValueError("option ids must be unique within a question")
        elif self.options:
            raise ValueError(f"a {self.type} question has no options")
        return self

    def option_ids(self) -> list[str]:
        return [o.id for o in self.options]

    def option_text(self, option_id: str, lang: str = "sl") -> str:
        return next((o.text_in(lang) for o in self.options if o.id == option_id), option_id)

    def text_in(self, lang: str) -> str:
        return self.text_en if lang == "en" and self.text_en else self.text

    def help_in(self, lang: str) -> str:
        return self.help_en if lang == "en" and self.help_en is not None else self.help


class SurveyDefinition(BaseModel):
    """A full survey definition, as staff post it (`POST /api/v1/surveys`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    ks: KsOrAll = Field(description='KS slug, or "*" for a city-wide survey.')
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    title_en: str | None = Field(default=None, min_length=1, max_length=200, description="English title (optional).")
    description_en: str | None = Field(default=None, max_length=5000, description="English description (optional).")
    opens_at: AwareDatetime | None = Field(default=None, description="Answers taken from then on (default: when opened).")
    closes_at: AwareDatetime | None = Field(default=None, description="Answers taken until then (default: until closed).")
    questions: list[QuestionDef] = Field(min_length=1, max_length=50)
    contact: bool = Field(
        default=False,
        description="Offer the respondent contact fields (name, e-mail, phone) and consent to take part.",
    )

    @model_validator(mode="after")
    def _check(self) -> SurveyDefinition:
        if self.opens_at and self.closes_at and self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        for i, question in enumerate(self.questions, 1):
            if not question.id:
                question.id = f"q{i}"
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique")
        earlier: dict[str, QuestionDef] = {}
        for question in self.questions:
            if question.show_if is not None:
                target = earlier.get(question.show_if.question)
                if target is None or target.type not in ("single", "multiple"):
                    raise ValueError(
                        f"question {question.id}: show_if must name an earlier single or multiple question"
                    )
                if question.show_if.option not in target.option_ids():
                    raise ValueError(f"question {question.id}: show_if option {question.show_if.option!r} is not an option of {target.id}")
            earlier[question.id] = question
        return self

    def question(self, question_id: str) -> QuestionDef | None:
        return next((q for q in self.questions if q.id == question_id), None)




# ======================================================================================
# The answering window
# ======================================================================================
def window_problem(
    status: str, opens_at: datetime | None, closes_at: datetime | None, now: datetime
) -> Bilingual | None:
    """None when answers are taken now; else why not, in Slovenian and English."""
    from shared.i18n import format_datetime

    if status == "draft":
        return Bilingual("Anketa še ni odprta.", "The survey is not open yet.")
    if status == "closed":
        return Bilingual("Anketa je zaprta, odgovorov ne sprejemamo več.", "The survey is closed.")
    if opens_at is not None and now < opens_at:
        return Bilingual(f"Anketa se odpre {format_datetime(opens_at)}.", f"The survey opens at {opens_at.isoformat()}.")
    if closes_at is not None and now >= closes_at:
        return Bilingual("Anketa je zaprta, odgovorov ne sprejemamo več.", "The survey is closed.")
    return None


def is_due_to_close(status: str, closes_at: datetime | None, now: datetime) -> bool:
    return status == "open" and closes_at is not None and now >= closes_at


# ======================================================================================
# Answers
# ======================================================================================
@dataclass(frozen=True)
class AnswerError:
    field: str  # question id, or age_band / ks / contact.email …
    sl: str
    en: str

    @property
    def message(self) -> Bilingual:
        return Bilingual(self.sl, self.en)

    def line(self) -> str:
        return f"{self.field}: {self.message}"


class AnswersInvalid(Exception):
    def __init__(self, errors: list[AnswerError]) -> None:
        super().__init__("; ".join(e.line() for e in errors))
        self.errors = errors

    @property
    def detail(self) -> str:
        return "; ".join(e.line() for e in self.errors)


Answer = str | list[str] | int


def is_shown(question: QuestionDef, answers: dict[str, Any]) -> bool:
    if question.show_if is None:
        return True
    given = answers.get(question.show_if.question)
    if isinstance(given, list):
        return question.show_if.option in given
    return given == question.show_if.option


def validate_answers(definition: SurveyDefinition, raw: Any) -> dict[str, Answer]:
    """Check a respondent's `answers` against the definition; return the clean answers
    (text stripped, empty answers dropped), or raise `AnswersInvalid` naming each question."""
    errors: list[AnswerError] = []
    if not isinstance(raw, dict):
        raise AnswersInvalid([AnswerError("answers", "odgovori morajo biti objekt", "answers must be an object")])
    clean: dict[str, Answer] = {}
    for key in raw:
        if definition.question(str(key)) is None:
            errors.append(AnswerError(str(key), "takega vprašanja v anketi ni", "no such question in this survey"))
    for question in definition.questions:
        value = raw.get(question.id)
        if value is None or value == "" or value == []:
            continue
        if question.type == "single":
            if not isinstance(value, str):
                errors.append(AnswerError(question.id, "izberite eno možnost (id možnosti)", "must be one option id (a string)"))
            elif value not in question.option_ids():
                errors.append(AnswerError(question.id, f"možnosti {value!r} ni", f"unknown option {value!r}"))
            else:
                clean[question.id] = value
        elif question.type == "multiple":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                errors.append(AnswerError(question.id, "odgovor mora biti seznam možnosti", "must be a list of option ids"))
                continue
            unknown = [v for v in value if v not in question.option_ids()]
            if unknown:
                errors.append(AnswerError(question.id, f"možnosti {', '.join(map(repr, unknown))} ni", f"unknown option(s) {', '.join(map(repr, unknown))}"))
            else:
                clean[question.id] = list(dict.fromkeys(value))
        elif question.type == "scale":
            if isinstance(value, bool) or not isinstance(value, int):
                errors.append(AnswerError(question.id, f"odgovor mora biti celo število od {SCALE_MIN} do {SCALE_MAX}", f"must be a whole number {SCALE_MIN}-{SCALE_MAX}"))
            elif not SCALE_MIN <= value <= SCALE_MAX:
                errors.append(AnswerError(question.id, f"odgovor mora biti od {SCALE_MIN} do {SCALE_MAX}, ne {value}", f"must be between {SCALE_MIN} and {SCALE_MAX}, not {value}"))
            else:
                clean[question.id] = value
        else:  # text
            if not isinstance(value, str):
                errors.append(AnswerError(question.id, "odgovor mora biti besedilo", "must be text"))
            elif len(value.strip()) > TEXT_MAX:
                errors.append(AnswerError(question.id, f"odgovor je daljši od {TEXT_MAX} znakov", f"longer than {TEXT_MAX} characters"))
            elif value.strip():
                clean[question.id] = value.strip()
    for question in definition.questions:
        shown = is_shown(question, clean)
        if not shown and question.id in clean:
            errors.append(AnswerError(question.id, "to vprašanje velja le ob drugačnem prejšnjem odgovoru", f"applies only when {question.show_if.question if question.show_if else ''} is {question.show_if.option if question.show_if else ''}"))
        elif shown and question.required and question.id not in clean and not any(e.field == question.id for e in errors):
            errors.append(AnswerError(question.id, "odgovor je obvezen", "an answer is required"))
    if errors:
        raise AnswersInvalid(errors)
    return clean


def address_fingerprint(secret: str, survey_id: str, address: str) -> str:
    """A keyed hash of the client address, per survey: comparable, never reversible to the IP."""
    return hmac.new(secret.encode(), f"surveys|{survey_id}|{address}".encode(), hashlib.sha256).hexdigest()[:40]


def new_browser_token(secret: str, survey_id: str) -> str:
    """A random per-browser token for `survey_id`, signed so a made-up one is not taken
    for ours (`browser_fingerprint` of a forged token is None)."""
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_browser_mac(secret, survey_id, nonce)}"


def _browser_mac(secret: str, survey_id: str, nonce: str) -> str:
    return hmac.new(secret.encode(), f"surveys-browser|{survey_id}|{nonce}".encode(), hashlib.sha256).hexdigest()[:24]


def browser_fingerprint(secret: str, survey_id: str, token: str | None) -> str | None:
    """The stored form of a genuine per-browser token of `survey_id` (a keyed hash: the
    cookie cannot be read back from the database); None for no token or a forged one."""
    if not token or "." not in token or len(token) > 200:
        return None
    nonce, mac = token.rsplit(".", 1)
    if not hmac.compare_digest(mac, _browser_mac(secret, survey_id, nonce)):
        return None
    return hmac.new(secret.encode(), f"surveys-browser-id|{survey_id}|{nonce}".encode(), hashlib.sha256).hexdigest()[:40]


CLUSTER_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class Cluster:
    """Web answers from one address (its keyed hash, shortened) in one 10-minute window."""

    address: str
    window_start: datetime
    count: int
    without_browser: int
    flagged: bool


def answer_clusters(
    rows: list[tuple[str | None, datetime, bool]], threshold: int, window: timedelta = CLUSTER_WINDOW
) -> list[Cluster]:
    """(address fingerprint, created_at, had a browser token) of each web answer -> the
    windows with more than one answer from one address, busiest first; `flagged` above
    `threshold`, or when several came without a browser token (scripts send no cookie)."""
    seconds = int(window.total_seconds())
    counts: dict[tuple[str, datetime], list[int]] = {}
    for fingerprint, created_at, had_browser in rows:
        if not fingerprint:
            continue
        ts = int(created_at.timestamp())
        start = datetime.fromtimestamp(ts - ts % seconds, tz=created_at.tzinfo)
        entry = counts.setdefault((fingerprint, start), [0, 0])
        entry[0] += 1
        entry[1] += 0 if had_browser else 1
    clusters = [
        Cluster(fp[:12], start, n, without, n > threshold or without > max(3, threshold // 3))
        for (fp, start), (n, without) in counts.items()
        if n > 1
    ]
    return sorted(clusters, key=lambda c: (not c.flagged, -c.count, c.window_start))
