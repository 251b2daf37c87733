"""The ready-made spans of days on the events list (services/events/web.py `when_choices`):
a tap instead of two date fields. Days are fixed here, not today's: the rule is the point."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.events.web import when_choices


def spans(today: date) -> dict[str, tuple[date | None, date | None]]:
    return {c.label: (c.first, c.last) for c in when_choices(today)}


@pytest.mark.parametrize(
    ("today", "weekend"),
    [
        (date(2027, 3, 3), (date(2027, 3, 6), date(2027, 3, 7))),  # a Wednesday: the coming weekend
        (date(2027, 3, 6), (date(2027, 3, 6), date(2027, 3, 7))),  # a Saturday: today and tomorrow
        (date(2027, 3, 7), (date(2027, 3, 7), date(2027, 3, 7))),  # a Sunday: today only
        (date(2027, 3, 8), (date(2027, 3, 13), date(2027, 3, 14))),  # a Monday
    ],
)
def test_this_weekend_is_the_coming_one_or_what_is_left_of_it(today: date, weekend: tuple[date, date]) -> None:
    assert spans(today)["Ta vikend"] == weekend


def test_today_the_next_seven_days_the_month_and_everything() -> None:
    today = date(2027, 2, 26)  # February of a common year
    found = spans(today)
    assert list(found) == ["Danes", "Ta vikend", "Naslednjih 7 dni", "Ta mesec", "Vsi prihajajoči"]
    assert found["Danes"] == (today, today)
    assert found["Naslednjih 7 dni"] == (today, today + timedelta(days=6))
    assert found["Ta mesec"] == (today, date(2027, 2, 28))
    assert found["Vsi prihajajoči"] == (None, None)
    assert spans(date(2028, 2, 10))["Ta mesec"][1] == date(2028, 2, 29)  # a leap year
    assert spans(date(2027, 12, 31))["Ta mesec"] == (date(2027, 12, 31), date(2027, 12, 31))
