"""surveys: pure rules — the template, answer validation, the answering window, results
and percentages, the CSV a Slovenian spreadsheet opens, the chart geometry."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.surveys import domain, needs, tally
from services.surveys.domain import AnswersInvalid, SurveyDefinition
from services.surveys.schemas import ContactIn, ResponseIn
from services.surveys.tally import ResponseData

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def small_survey(**extra) -> SurveyDefinition:
    return SurveyDefinition(
        ks="planina",
        title="Test",
        questions=[
            {"id": "a", "type": "single", "text": "A?", "required": True, "options": [{"id": "y", "text": "Da"}, {"id": "n", "text": "Ne"}]},
            {"id": "b", "type": "multiple", "text": "B?", "options": [{"text": "x"}, {"text": "y"}, {"text": "z"}]},
            {"id": "c", "type": "scale", "text": "C?"},
            {"id": "d", "type": "text", "text": "D?", "show_if": {"question": "a", "option": "y"}},
        ],
        **extra,
    )


# ---------------------------------------------------------------------------- template
def test_needs_assessment_has_the_four_workshop_questions_and_take_part():
    survey = needs.needs_assessment("primskovo")
    ids = [q.id for q in survey.questions]
    assert ids[:4] == list(needs.NEEDS_QUESTION_IDS) and ids[4] == needs.TAKE_PART_QUESTION
    need, what, existing, who, take_part = survey.questions
    assert "potrebujemo skupnostni prostor" in need.text and need.type == "single" and need.required
    assert what.type == "multiple" and what.required
    texts = " ".join(o.text for o in what.options)
    for word in ("Medgeneracijsko druženje", "Delavnice", "Vadba", "Kulturni dogodki", "Pomoč sosedom", "Prostor za mlade"):
        assert word in texts
    assert existing.type == "text" and "že potekajo" in existing.text and "ponudili" in existing.text
    assert who.type == "multiple" and "sodelovali" in who.text
    assert not take_part.required and needs.TAKE_PART_YES in take_part.option_ids()
    assert survey.contact and survey.ks == "primskovo" and "Primskovo" in survey.title
    assert "Mestni občini Kranj" in needs.needs_assessment("*").title


def test_definition_ids_are_given_and_checked():
    survey = small_survey()
    assert [o.id for o in survey.questions[1].options] == ["o1", "o2", "o3"]
    unnamed = SurveyDefinition(ks="*", title="T", questions=[{"type": "text", "text": "?"}, {"type": "scale", "text": "?"}])
    assert [q.id for q in unnamed.questions] == ["q1", "q2"]
    with pytest.raises(ValidationError, match="at least two options"):
        SurveyDefinition(ks="*", title="T", questions=[{"type": "single", "text": "?", "options": [{"text": "a"}]}])
    with pytest.raises(ValidationError, match="has no options"):
        SurveyDefinition(ks="*", title="T", questions=[{"type": "scale", "text": "?", "options": [{"text": "a"}, {"text": "b"}]}])
    with pytest.raises(ValidationError, match="unique"):
        SurveyDefinition(ks="*", title="T", questions=[{"id": "x", "type": "text", "text": "?"}, {"id": "x", "type": "text", "text": "?"}])
    with pytest.raises(ValidationError, match="show_if"):
        SurveyDefinition(ks="*", title="T", questions=[{"type": "text", "text": "?", "show_if": {"question": "q2", "option": "o1"}}])
    with pytest.raises(ValidationError, match="unknown KS"):
        SurveyDefinition(ks="ljubljana", title="T", questions=[{"type": "text", "text": "?"}])
    with pytest.raises(ValidationError, match="closes_at"):
        SurveyDefinition(ks="*", title="T", opens_at=NOW, closes_at=NOW, questions=[{"type": "text", "text": "?"}])


# -------------------------------------------------------------------------- validation
def test_valid_answers_are_cleaned():
    clean = domain.validate_answers(small_survey(), {"a": "y", "b": ["o1", "o1", "o3"], "c": 5, "d": "  ja  "})
    assert clean == {"a": "y", "b": ["o1", "o3"], "c": 5, "d": "ja"}
    assert domain.validate_answers(small_survey(), {"a": "n", "b": [], "d": ""}) == {"a": "n"}


@pytest.mark.parametrize(
    ("answers", "field", "words"),
    [
        ({"a": "y", "zz": "y"}, "zz", "no such question"),
        ({"a": "maybe"}, "a", "unknown option 'maybe'"),
        ({"a": "y", "b": ["o1", "o9"]}, "b", "unknown option"),
        ({"a": "y", "c": 6}, "c", "between 1 and 5"),
        ({"a": "y", "c": 0}, "c", "between 1 and 5"),
        ({"a": "y", "c": "3"}, "c", "whole number"),
        ({"a": "y", "c": True}, "c", "whole number"),
        ({"a": "y", "b": "o1"}, "b", "list of option ids"),
        ({"a": ["y"]}, "a", "one option id"),
        ({"a": "y", "d": 7}, "d", "must be text"),
        ({"b": ["o1"]}, "a", "required"),
        ({"a": "n", "d": "only when yes"}, "d", "applies only when a is y"),
    ],
)
def test_invalid_answers_say_which_question(answers, field, words):
    with pytest.raises(AnswersInvalid) as caught:
        domain.validate_answers(small_survey(), answers)
    assert any(e.field == field and words in e.en for e in caught.value.errors), caught.value.detail
    assert field in caught.value.detail


def test_response_and_contact_models():
    with pytest.raises(ValidationError):
        ResponseIn(answers={}, age_band="10-14")
    with pytest.raises(ValidationError, match="consent"):
        ContactIn(email="ana@example.si")
    with pytest.raises(ValidationError, match="email or a phone"):
        ContactIn(consent=True)
    assert ContactIn(phone="040 123 456", consent=True).phone == "+38640123456"
    with pytest.raises(ValidationError):
        ContactIn(phone="123", consent=True)


# ------------------------------------------------------------------------------ window
def test_answering_window():
    assert domain.window_problem("open", None, None, NOW) is None
    assert "še ni odprta" in domain.window_problem("draft", None, None, NOW).sl
    assert "zaprta" in domain.window_problem("closed", None, None, NOW).sl
    assert "se odpre" in domain.window_problem("open", NOW + timedelta(hours=1), None, NOW).sl
    assert domain.window_problem("open", NOW - timedelta(hours=1), NOW + timedelta(hours=1), NOW) is None
    assert "zaprta" in domain.window_problem("open", None, NOW, NOW).sl
    assert domain.is_due_to_close("open", NOW, NOW) and not domain.is_due_to_close("open", None, NOW)


def test_address_fingerprint_browser_token_and_clusters():
    # No cap per address any more (issue 15): a browser token, and clusters shown to staff.
    token = domain.new_browser_token("key", "s1")
    assert domain.browser_fingerprint("key", "s1", token) is not None
    assert domain.browser_fingerprint("key", "s2", token) is None  # another survey's token
    assert domain.browser_fingerprint("key", "s1", token[:-2] + "xx") is None  # forged
    assert domain.browser_fingerprint("key", "s1", None) is None
    start = NOW.replace(minute=0, second=0, microsecond=0)
    rows = [("a" * 40, start + timedelta(seconds=n), True) for n in range(25)] + [("b" * 40, start, True)] * 2
    clusters = domain.answer_clusters(rows, threshold=20)
    assert [(c.address, c.count, c.flagged) for c in clusters] == [("a" * 12, 25, True), ("b" * 12, 2, False)]
    fp = domain.address_fingerprint("key", "s1", "192.0.2.7")
    assert "192.0.2.7" not in fp and fp == domain.address_fingerprint("key", "s1", "192.0.2.7")
    assert fp != domain.address_fingerprint("key", "s2", "192.0.2.7") != domain.address_fingerprint("other", "s1", "192.0.2.7")


# ----------------------------------------------------------------------------- results
RESPONSES = [
    ResponseData({"a": "y", "b": ["o1", "o2"], "c": 5, "d": "Pevski zbor"}, "15-29", "planina"),
    ResponseData({"a": "y", "b": ["o1"], "c": 4}, "65+", "planina", "paper"),
    ResponseData({"a": "n", "c": 2}, None, "huje"),
]


def test_counts_percentages_and_splits():
    results = tally.compute_results(small_survey(), RESPONSES)
    assert results.response_count == 3
    assert results.by_age_band == {"0-14": 0, "15-29": 1, "30-49": 0, "50-64": 0, "65+": 1, "unknown": 1}
    assert results.by_ks == {"planina": 2, "huje": 1} and results.by_channel == {"web": 2, "paper": 1}
    a, b, c, d = results.questions
    assert [(o.id, o.count, o.percent) for o in a.options] == [("y", 2, 66.7), ("n", 1, 33.3)]
    assert a.options[0].by_age_band["65+"] == 1 and a.options[0].by_ks == {"planina": 2}
    assert b.answered == 2 and [(o.count, o.percent) for o in b.options] == [(2, 100.0), (1, 50.0), (0, 0.0)]
    assert [o.count for o in c.options] == [0, 1, 0, 1, 1] and c.mean == 3.67
    assert d.texts == ["Pevski zbor"] and d.options == []
    assert tally.percent(1, 8) == 12.5 and tally.percent(1, 0) == 0.0 and tally.percent(2, 3) == 66.7


def test_csv_opens_in_a_slovenian_spreadsheet():
    definition = small_survey()
    text = tally.results_csv(definition, tally.compute_results(definition, [*RESPONSES, ResponseData({"a": "n", "d": "=HYPERLINK(1)"}, "30-49")]))
    assert text.startswith("\ufeff") and "\r\n" in text
    raw = text.encode("utf-8")
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=";"))
    header = rows[0]
    assert header[:5] == ["Vprašanje", "Besedilo vprašanja", "Odgovor", "Število", "Delež (%)"]
    assert "Starost 65 let in več" in header and "KS Planina" in header and "KS ni navedena" in header
    yes = next(r for r in rows if r[:3] == ["a", "A?", "Da"])
    assert yes[3:5] == ["2", "50,0"]
    assert yes[header.index("KS Planina")] == "2"
    mean = next(r for r in rows if r[2] == "Povprečje")
    assert mean[3:5] == ["3", "3,67"]
    assert ["d", "D?", "'=HYPERLINK(1)", "", ""] in rows  # no formula injection
    total = next(r for r in rows if r and r[0] == "Skupaj odgovorov")
    assert total[3] == "4"
    assert not any("." in cell for r in rows for cell in r[4:5] if cell and cell[0].isdigit())


def test_bar_chart_geometry():
    chart = tally.bar_chart([("a", 4, 50.0), ("b", 2, 25.0), ("c", 0, 0.0)])
    assert len(chart.bars) == 3 and chart.bars[0].width == chart.bar_area and chart.bars[1].width == chart.bar_area / 2
    assert chart.bars[2].width == 0 and chart.height > chart.bars[-1].y
    assert tally.bar_chart([("x", 0, 0.0)]).bars[0].width == 0
    assert tally.decimal_comma(66.66666, 1) == "66,7" and tally.decimal_comma(3.5, 2) == "3,50"
