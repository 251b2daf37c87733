"""Pure rules of surveys: definitions and the needs-assessment template, answer
validation, the answering window, results (counts, percentages, splits) and the CSV
export. No I/O here."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.contracts.age import AGE_BAND_LABELS_SL
from shared.contracts.age import AGE_BANDS as SHARED_AGE_BANDS
from shared.contracts.ks import KS_NAMES, KsOrAll, ks_name
from shared.web.csv_export import BOM, csv_text

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


class TemplateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    template: Literal["needs-assessment"]
    ks: KsOrAll
    title: str | None = Field(default=None, max_length=200, description="Default: the template's title with the KS name.")
    opens_at: AwareDatetime | None = None
    closes_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _check(self) -> TemplateRequest:
        if self.opens_at and self.closes_at and self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        return self


# --------------------------------------------------------------------------------------
# The needs-assessment template: the four questions of the source document's workshops
# --------------------------------------------------------------------------------------
NEEDS_QUESTION_IDS = ("need", "what", "existing", "who")
TAKE_PART_QUESTION = "take-part"
TAKE_PART_YES = "yes"

CONSENT_TEXT = (
    "Strinjam se, da mi krajevna skupnost in Mestna občina Kranj pišeta ali me pokličeta glede "
    "sodelovanja pri oživitvi skupnostnega prostora in mi pošiljata obvestila o anketah in dejavnostih "
    "v moji krajevni skupnosti. Privolitev lahko kadar koli prekličem."
)
CONSENT_TEXT_EN = (
    "I agree that the local community (KS) and the City of Kranj may write to me or call me about "
    "taking part in bringing the community space to life, and send me notices about surveys and activities "
    "in my local community. I can withdraw my consent at any time."
)


def consent_text(lang: str) -> str:
    return CONSENT_TEXT_EN if lang == "en" else CONSENT_TEXT


def needs_assessment(ks: str, *, title: str | None = None, opens_at: datetime | None = None,
                     closes_at: datetime | None = None) -> SurveyDefinition:
    """The four workshop questions of "Kranj ZA vse", in Slovenian, plus a final optional
    question about taking part (with contact fields)."""
    where = "v Mestni občini Kranj" if ks == "*" else f"v KS {ks_name(ks)}"
    where_en = "in the City of Kranj" if ks == "*" else f"in {ks_name(ks)}"
    return SurveyDefinition(
        ks=ks,
        title=title or f"Skupnostni prostor {where}: kaj potrebujemo?",
        title_en=None if title else f"A community space {where_en}: what do we need?",
        description_en=(
            "A community space works best when residents say what they need. The survey is short "
            "(about 3 minutes) and anonymous. Everyone aged 15 or over may answer."
        ),
        description=(
            "Skupnostni prostor najbolje zaživi, če krajani sami povemo, kaj potrebujemo. "
            "Anketa je kratka (približno 3 minute) in anonimna. Odgovorite lahko vsi, stari 15 let ali več."
        ),
        opens_at=opens_at,
        closes_at=closes_at,
        contact=True,
        questions=[
            QuestionDef(
                id="need",
                type="single",
                required=True,
                text="Ali v vaši krajevni skupnosti potrebujemo skupnostni prostor, kjer bi se krajani srečevali in družili?",
                text_en="Does your local community need a community space where residents can meet and spend time together?",
                options=[
                    OptionDef(id="yes", text="Da, potrebujemo ga", text_en="Yes, we need one"),
                    OptionDef(id="maybe", text="Mogoče, odvisno od tega, kaj bi se v njem dogajalo", text_en="Maybe, depending on what would happen there"),
                    OptionDef(id="no", text="Ne, ne potrebujemo ga", text_en="No, we do not need one"),
                    OptionDef(id="dont-know", text="Ne vem", text_en="I don't know"),
                ],
            ),
            QuestionDef(
                id="what",
                type="multiple",
                required=True,
                text="Kakšen naj bo ta prostor? Kaj bi v njem potrebovali vi in vaši sosedje?",
                text_en="What should this space be like? What would you and your neighbours need there?",
                help="Izberete lahko več odgovorov.",
                help_en="You may choose more than one answer.",
                options=[
                    OptionDef(id="intergenerational", text="Medgeneracijsko druženje", text_en="Meeting across generations"),
                    OptionDef(id="workshops", text="Delavnice in tečaji (ročna dela, računalnik, jeziki …)", text_en="Workshops and courses (crafts, computers, languages …)"),
                    OptionDef(id="exercise", text="Vadba in gibanje", text_en="Exercise and movement"),
                    OptionDef(id="culture", text="Kulturni dogodki (branja, koncerti, razstave, filmski večeri)", text_en="Cultural events (readings, concerts, exhibitions, film evenings)"),
                    OptionDef(id="neighbour-help", text="Pomoč sosedom in izmenjava (stvari, znanja, prevozov)", text_en="Helping neighbours and sharing (things, skills, lifts)"),
                    OptionDef(id="youth", text="Prostor za mlade", text_en="A place for young people"),
                    OptionDef(id="children", text="Igralnica in dejavnosti za otroke", text_en="A playroom and activities for children"),
                    OptionDef(id="learning", text="Učna pomoč in prostor za učenje", text_en="Homework help and a place to study"),
                    OptionDef(id="meeting", text="Prostor za sestanke društev in pobud", text_en="A meeting room for associations and initiatives"),
                    OptionDef(id="advice", text="Svetovanje in informacije (zdravje, sociala, digitalna pomoč)", text_en="Advice and information (health, social care, digital help)"),
                ],
            ),
            QuestionDef(
                id="existing",
                type="text",
                text="Katere dejavnosti v vaši skupnosti že potekajo? Kaj bi lahko ponudili vi ali kdo, ki ga poznate?",
                text_en="Which activities already take place in your community? What could you, or someone you know, offer?",
                help="Na primer društvo, ki išče prostor, ali znanje, ki bi ga radi delili z drugimi.",
                help_en="For example an association looking for a room, or a skill you would like to share.",
            ),
            QuestionDef(
                id="who",
                type="multiple",
                text="Kdo bi prihajal in kako bi sodelovali?",
                text_en="Who would come, and how would you take part?",
                help="Izberete lahko več odgovorov.",
                help_en="You may choose more than one answer.",
                options=[
                    OptionDef(id="attend", text="Udeleževal(a) bi se dejavnosti", text_en="I would attend activities"),
                    OptionDef(id="family", text="Prihajal(a) bi z otroki ali vnuki", text_en="I would come with my children or grandchildren"),
                    OptionDef(id="lead", text="Vodil(a) bi delavnico ali dejavnost", text_en="I would lead a workshop or an activity"),
                    OptionDef(id="organise", text="Pomagal(a) bi pri organizaciji in urejanju prostora", text_en="I would help organise and look after the space"),
                    OptionDef(id="spread", text="Povabil(a) bi sosede in širil(a) novice", text_en="I would invite neighbours and spread the word"),
                    OptionDef(id="not-now", text="Trenutno ne bi sodeloval(a)", text_en="I would not take part for now"),
                ],
            ),
            QuestionDef(
                id=TAKE_PART_QUESTION,
                type="single",
                text="Bi želeli sodelovati pri oživitvi prostora, da vas povabimo in obveščamo?",
                text_en="Would you like to help bring the space to life, so that we can invite you and keep you informed?",
                help="Če izberete »Da«, spodaj vpišite e-naslov ali telefon. Odgovori na anketo ostanejo anonimni.",
                help_en="If you choose “Yes”, enter an e-mail address or a phone number below. Your answers stay anonymous.",
                options=[
                    OptionDef(id=TAKE_PART_YES, text="Da, želim sodelovati – kontaktirajte me", text_en="Yes, I would like to take part – contact me"),
                    OptionDef(id="no", text="Ne, hvala", text_en="No, thank you"),
                ],
            ),
        ],
    )


# ======================================================================================
# The answering window
# ======================================================================================
def window_problem(status: str, opens_at: datetime | None, closes_at: datetime | None, now: datetime) -> str | None:
    """None when answers are taken now; else why not, in Slovenian (and English)."""
    from shared.i18n import format_datetime

    if status == "draft":
        return "Anketa še ni odprta. / The survey is not open yet."
    if status == "closed":
        return "Anketa je zaprta, odgovorov ne sprejemamo več. / The survey is closed."
    if opens_at is not None and now < opens_at:
        return f"Anketa se odpre {format_datetime(opens_at)}. / The survey opens at {opens_at.isoformat()}."
    if closes_at is not None and now >= closes_at:
        return "Anketa je zaprta, odgovorov ne sprejemamo več. / The survey is closed."
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

    def line(self) -> str:
        return f"{self.field}: {self.sl} / {self.en}"


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


# ======================================================================================
# Results
# ======================================================================================
@dataclass(frozen=True)
class ResponseData:
    answers: dict[str, Answer]
    age_band: str | None = None
    ks: str | None = None
    channel: str = "web"


def percent(part: int, whole: int) -> float:
    if whole <= 0:
        return 0.0
    return float((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def decimal_comma(value: float, places: int = 1) -> str:
    quantum = Decimal(1).scaleb(-places)
    return str(Decimal(str(value)).quantize(quantum, rounding=ROUND_HALF_UP)).replace(".", ",")


@dataclass
class OptionResult:
    id: str
    text: str
    count: int = 0
    percent: float = 0.0
    by_age_band: dict[str, int] = field(default_factory=dict)
    by_ks: dict[str, int] = field(default_factory=dict)


@dataclass
class QuestionResult:
    id: str
    type: str
    text: str
    answered: int = 0
    options: list[OptionResult] = field(default_factory=list)
    mean: float | None = None
    answered_by_age_band: dict[str, int] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)


@dataclass
class Results:
    response_count: int
    by_age_band: dict[str, int]
    by_ks: dict[str, int]
    by_channel: dict[str, int]
    questions: list[QuestionResult]

    def ks_keys(self) -> list[str]:
        return [k for k in [*KS_NAMES, "*", UNKNOWN] if k in self.by_ks]


def _band(r: ResponseData) -> str:
    return r.age_band if r.age_band in AGE_BANDS else UNKNOWN


def compute_results(definition: SurveyDefinition, responses: list[ResponseData]) -> Results:
    """Counts and percentages per question and option, split by age band and KS.

    Percentages are of the respondents who answered that question (for `multiple`
    questions they can add up to more than 100). Scale questions have one row per value
    1–5 and a mean; text answers are listed."""
    bands = [*AGE_BANDS, UNKNOWN]
    by_age = Counter(_band(r) for r in responses)
    by_ks = Counter(r.ks or UNKNOWN for r in responses)
    by_channel = Counter(r.channel for r in responses)
    questions = []
    for q in definition.questions:
        given = [r for r in responses if q.id in r.answers]
        result = QuestionResult(id=q.id, type=q.type, text=q.text, answered=len(given))
        result.answered_by_age_band = {b: sum(1 for r in given if _band(r) == b) for b in bands}
        if q.type in ("single", "multiple"):
            choices = [(o.id, o.text) for o in q.options]
        elif q.type == "scale":
            choices = [(str(v), str(v)) for v in range(SCALE_MIN, SCALE_MAX + 1)]
        else:
            choices = []
        for option_id, text in choices:
            chose = [r for r in given if _chosen(r.answers[q.id], option_id)]
            result.options.append(
                OptionResult(
                    id=option_id,
                    text=text,
                    count=len(chose),
                    percent=percent(len(chose), len(given)),
                    by_age_band={b: sum(1 for r in chose if _band(r) == b) for b in bands},
                    by_ks=dict(Counter(r.ks or UNKNOWN for r in chose)),
                )
            )
        if q.type == "scale" and given:
            values = [int(r.answers[q.id]) for r in given]  # type: ignore[arg-type]
            result.mean = float((Decimal(sum(values)) / len(values)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        if q.type == "text":
            result.texts = [str(r.answers[q.id]) for r in given]
        questions.append(result)
    return Results(
        response_count=len(responses),
        by_age_band={b: by_age.get(b, 0) for b in bands},
        by_ks=dict(by_ks),
        by_channel={c: by_channel.get(c, 0) for c in ("web", "paper")},
        questions=questions,
    )


def _chosen(answer: Answer, option_id: str) -> bool:
    if isinstance(answer, list):
        return option_id in answer
    return str(answer) == option_id


# ======================================================================================
# CSV for a Slovenian spreadsheet
# ======================================================================================
CSV_BOM = BOM  # the one CSV writer (shared.web.csv_export) neutralises formulas in every cell


def results_csv(definition: SurveyDefinition, results: Results, *, include_texts: bool = True) -> str:
    """UTF-8 with BOM, `;`-separated, decimal comma, CRLF: what Excel in Slovenian expects.
    One row per answer option (scale: per value, and the mean), with counts per age band
    and per KS; free-text answers listed under their question."""
    rows: list[list[object]] = []
    bands = [*AGE_BANDS, UNKNOWN]
    ks_keys = results.ks_keys()
    rows.append(
        [
            "Vprašanje",
            "Besedilo vprašanja",
            "Odgovor",
            "Število",
            "Delež (%)",
            *(f"Starost {AGE_BAND_LABELS[b]}" if b != UNKNOWN else "Starost ni navedena" for b in bands),
            *(f"KS {ks_name(k)}" if k != UNKNOWN else "KS ni navedena" for k in ks_keys),
        ]
    )
    for q in results.questions:
        for option in q.options:
            rows.append(
                [
                    q.id,
                    q.text,
                    option.text,
                    option.count,
                    decimal_comma(option.percent),
                    *(option.by_age_band.get(b, 0) for b in bands),
                    *(option.by_ks.get(k, 0) for k in ks_keys),
                ]
            )
        if q.type == "scale":
            rows.append([q.id, q.text, "Povprečje", q.answered, decimal_comma(q.mean or 0.0, 2)])
        if q.type == "text":
            rows.append([q.id, q.text, "Odgovorov", q.answered, ""])
            if include_texts:
                for text in q.texts:
                    rows.append([q.id, q.text, text, "", ""])
    rows.append([])
    rows.append(["Skupaj odgovorov", "", "", results.response_count, "100,0" if results.response_count else "0,0"])
    for b in bands:
        rows.append(["Starost", "", AGE_BAND_LABELS[b], results.by_age_band.get(b, 0), decimal_comma(percent(results.by_age_band.get(b, 0), results.response_count))])
    for k in ks_keys:
        rows.append(["KS", "", ks_name(k) if k != UNKNOWN else "ni navedena", results.by_ks[k], decimal_comma(percent(results.by_ks[k], results.response_count))])
    for channel, label in (("web", "splet"), ("paper", "papir")):
        rows.append(["Način", "", label, results.by_channel.get(channel, 0), decimal_comma(percent(results.by_channel.get(channel, 0), results.response_count))])
    return csv_text(rows)


# ======================================================================================
# Charts: geometry for the server-rendered SVG (the template only draws)
# ======================================================================================
@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    percent: float
    y: int  # top of the row: the label is written above the bar
    width: float


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    height: int
    width: int = 720
    bar_area: int = 560
    row: int = 52
    bar_height: int = 22


def bar_chart(items: list[tuple[str, int, float]], *, scale_to: int | None = None) -> BarChart:
    """Horizontal bars, each under its label; widths relative to the largest value (or `scale_to`)."""
    chart = BarChart(bars=[], height=0)
    top = max([scale_to or 0, *(v for _, v, _ in items)]) or 1
    bars = [
        Bar(label=label, value=value, percent=pct, y=i * chart.row + 4, width=round(chart.bar_area * value / top, 1))
        for i, (label, value, pct) in enumerate(items)
    ]
    return BarChart(bars=bars, height=len(items) * chart.row + 8)
