"""Dates, times and plural forms as residents read them (shared/i18n.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared import i18n


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_contract_example_date() -> None:
    assert i18n.format_datetime(utc(2026, 12, 3, 17, 0)) == "četrtek, 3. decembra 2026, ob 18.00"


def test_the_same_moment_in_english() -> None:
    assert i18n.format_datetime(utc(2026, 12, 3, 17, 0), "en") == "Thursday, 3 December 2026, at 18:00"


def test_any_offset_gives_the_same_local_time() -> None:
    same_moment = datetime(2026, 12, 3, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert i18n.format_datetime(same_moment) == "četrtek, 3. decembra 2026, ob 18.00"


@pytest.mark.parametrize(
    ("month", "genitive"),
    [
        (1, "januarja"), (2, "februarja"), (3, "marca"), (4, "aprila"), (5, "maja"), (6, "junija"),
        (7, "julija"), (8, "avgusta"), (9, "septembra"), (10, "oktobra"), (11, "novembra"), (12, "decembra"),
    ],
)  # fmt: skip
def test_months_are_in_the_genitive(month: int, genitive: str) -> None:
    assert f"15. {genitive} 2027" in i18n.format_date(utc(2027, month, 15, 10, 0))


def test_daylight_saving_switch_in_march_2027() -> None:
    # Summer time starts on Sunday 28 March 2027 at 02:00 CET (-> 03:00 CEST).
    assert i18n.format_datetime(utc(2027, 3, 27, 17, 0)) == "sobota, 27. marca 2027, ob 18.00"
    assert i18n.format_datetime(utc(2027, 3, 28, 17, 0)) == "nedelja, 28. marca 2027, ob 19.00"
    assert i18n.format_time(utc(2027, 3, 28, 0, 30)) == "1.30"  # still CET
    assert i18n.format_time(utc(2027, 3, 28, 1, 30)) == "3.30"  # 02:xx local never happens


def test_local_date_can_differ_from_the_utc_date() -> None:
    assert i18n.format_date(utc(2026, 12, 31, 23, 30)) == "petek, 1. januarja 2027"


def test_times_have_two_digit_minutes() -> None:
    assert i18n.format_time(utc(2026, 7, 1, 7, 5)) == "9.05"
    assert i18n.format_time(utc(2026, 7, 1, 7, 5), "en") == "9:05"


def test_span_on_one_day_and_across_days() -> None:
    assert i18n.format_span(utc(2026, 12, 3, 17, 0), utc(2026, 12, 3, 19, 30)) == "četrtek, 3. decembra 2026, 18.00–20.30"
    assert (
        i18n.format_span(utc(2026, 12, 3, 17, 0), utc(2026, 12, 4, 19, 0))
        == "četrtek, 3. decembra 2026, ob 18.00 – petek, 4. decembra 2026, ob 20.00"
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        i18n.format_datetime(datetime(2026, 12, 3, 18, 0))


SL_FORMS = {"one": "termin", "two": "termina", "few": "termini", "other": "terminov"}


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 terminov"),
        (1, "1 termin"),
        (2, "2 termina"),
        (3, "3 termini"),
        (4, "4 termini"),
        (5, "5 terminov"),
        (11, "11 terminov"),
        (101, "101 termin"),
        (102, "102 termina"),
        (103, "103 termini"),
        (104, "104 termini"),
        (105, "105 terminov"),
    ],
)
def test_slovenian_plural_forms(n: int, expected: str) -> None:
    assert i18n.plural(n, SL_FORMS) == expected


def test_missing_form_falls_back_to_other() -> None:
    assert i18n.plural(2, {"one": "mesto", "other": "mest"}) == "2 mest"


def test_english_plural_forms() -> None:
    forms = {"one": "seat", "other": "seats"}
    assert [i18n.plural(n, forms, "en") for n in (0, 1, 2, 101)] == ["0 seats", "1 seat", "2 seats", "101 seats"]
