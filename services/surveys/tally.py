"""surveys: pure results — counts, percentages and splits of the answers, the CSV export
for a Slovenian spreadsheet, and the geometry of the results' bar charts. No I/O here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from shared.contracts.ks import KS_NAMES, ks_name
from shared.web.csv_export import csv_text

from .domain import AGE_BAND_LABELS, AGE_BANDS, SCALE_MAX, SCALE_MIN, UNKNOWN, Answer, SurveyDefinition


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
        rows.append(
            [
                "Starost",
                "",
                AGE_BAND_LABELS[b],
                results.by_age_band.get(b, 0),
                decimal_comma(percent(results.by_age_band.get(b, 0), results.response_count)),
            ]
        )
    for k in ks_keys:
        rows.append(
            [
                "KS",
                "",
                ks_name(k) if k != UNKNOWN else "ni navedena",
                results.by_ks[k],
                decimal_comma(percent(results.by_ks[k], results.response_count)),
            ]
        )
    for channel, label in (("web", "splet"), ("paper", "papir")):
        rows.append(
            [
                "Način",
                "",
                label,
                results.by_channel.get(channel, 0),
                decimal_comma(percent(results.by_channel.get(channel, 0), results.response_count)),
            ]
        )
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


def charts_of(results: Results, band: str | None = None) -> dict[str, object]:
    """The results page's charts: who answered by age band ("reach"), and each choice or
    scale question's answers — of everyone, or of one age band (`band`) only."""
    bands = [*AGE_BANDS, UNKNOWN]
    reach = bar_chart(
        [
            (AGE_BAND_LABELS[b], results.by_age_band[b], percent(results.by_age_band[b], results.response_count))
            for b in bands
        ]
    )
    per_question = {}
    for q in results.questions:
        if not q.options:
            continue
        if band in bands:
            answered = q.answered_by_age_band.get(band, 0)
            items = [
                (o.text, o.by_age_band.get(band, 0), percent(o.by_age_band.get(band, 0), answered)) for o in q.options
            ]
        else:
            items = [(o.text, o.count, o.percent) for o in q.options]
        per_question[q.id] = bar_chart(items)
    return {"reach": reach, "per_question": per_question}
