"""Booking rules without I/O: edges, office hours, holidays, DST, availability, series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.booking import domain
from services.booking.domain import TZ, Interval, Rules

WEEK = {d: [["08:00", "22:00"]] for d in domain.WEEKDAYS}
RULES = Rules(
    opening_hours=domain.parse_week(WEEK),
    office_hours=domain.parse_week({"wed": [["17:00", "19:00"]]}),
    min_duration=timedelta(hours=1),
    max_duration=timedelta(hours=4),
    min_notice=timedelta(hours=24),
    max_ahead=timedelta(days=180),
    capacity=40,
)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # Tuesday


def at(day: str, hhmm: str) -> datetime:
    """Local Ljubljana wall time -> UTC."""
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=TZ).astimezone(UTC)


def span(day: str, a: str, b: str) -> Interval:
    return Interval(at(day, a), at(day, b))


def rules_of(slot: Interval, rules: Rules = RULES, **kw) -> list[str]:
    kw.setdefault("attendees", 10)
    kw.setdefault("now", NOW)
    return [v.rule for v in domain.check_request(rules, slot, **kw)]


def test_a_plain_request_within_hours_is_allowed():
    assert rules_of(span("2026-12-03", "18:00", "20:00")) == []  # a Thursday


def test_touching_bookings_are_fine_overlapping_ones_are_not():
    booked = [span("2026-12-03", "18:00", "20:00")]
    assert rules_of(span("2026-12-03", "20:00", "22:00"), taken=booked) == []
    assert rules_of(span("2026-12-03", "16:00", "18:00"), taken=booked) == []
    assert rules_of(span("2026-12-03", "19:59", "21:00"), taken=booked) == ["taken"]
    assert rules_of(span("2026-12-03", "17:00", "18:01"), taken=booked) == ["taken"]
    assert rules_of(span("2026-12-03", "18:30", "19:30"), taken=booked) == ["taken"]
    assert rules_of(span("2026-12-03", "17:00", "21:00"), taken=booked) == ["taken"]


def test_buffer_between_bookings():
    rules = Rules(**{**RULES.__dict__, "buffer": timedelta(minutes=15)})
    booked = [span("2026-12-03", "18:00", "20:00")]
    assert rules_of(span("2026-12-03", "20:00", "21:00"), rules, taken=booked) == ["buffer"]
    assert rules_of(span("2026-12-03", "17:00", "17:50"), rules, taken=booked) == ["min-duration", "buffer"]
    assert rules_of(span("2026-12-03", "20:15", "21:15"), rules, taken=booked) == []
    assert rules_of(span("2026-12-03", "16:45", "17:45"), rules, taken=booked) == []


def test_office_hours_are_blocked_and_say_so():
    found = domain.check_request(RULES, span("2026-12-02", "16:00", "18:00"), attendees=5, now=NOW)  # Wednesday
    assert [v.rule for v in found] == ["office-hours"]
    assert "uradne ure KS (17.00–19.00)" in found[0].sl
    assert rules_of(span("2026-12-02", "19:00", "21:00")) == []  # right after office hours


def test_opening_hours_duration_notice_ahead_capacity():
    assert rules_of(span("2026-12-03", "21:00", "23:00")) == ["opening-hours"]
    assert rules_of(span("2026-12-03", "07:00", "09:00")) == ["opening-hours"]
    assert rules_of(span("2026-12-03", "18:00", "18:30")) == ["min-duration"]
    assert rules_of(span("2026-12-03", "08:00", "13:00")) == ["max-duration"]
    assert rules_of(span("2026-11-25", "10:00", "12:00")) == ["min-notice"]
    assert rules_of(span("2026-11-25", "10:00", "12:00"), staff=True) == []
    assert rules_of(span("2026-11-20", "10:00", "12:00")) == ["past"]
    assert rules_of(span("2027-07-01", "10:00", "12:00")) == ["max-ahead"]
    assert rules_of(span("2026-12-03", "18:00", "20:00"), attendees=41) == ["capacity"]
    found = domain.check_request(RULES, span("2026-12-03", "18:00", "20:00"), attendees=41, now=NOW)
    assert found[0].text() == "Prostor sprejme največ 40 oseb. / The room holds at most 40 people."


def test_closed_weekday():
    rules = Rules(**{**RULES.__dict__, "opening_hours": domain.parse_week({"mon": [["08:00", "22:00"]]})})
    found = domain.check_request(rules, span("2026-12-03", "18:00", "20:00"), attendees=5, now=NOW)
    assert [v.sl for v in found] == ["Ta dan je prostor zaprt."]


@pytest.mark.parametrize("day", ["2026-12-25", "2026-12-26", "2027-01-01", "2027-02-08", "2027-03-29"])
def test_slovenian_public_holidays_are_closed(day):
    # Christmas, Independence and Unity Day, New Year, Prešeren Day, Easter Monday 2027
    found = domain.check_request(RULES, span(day, "10:00", "12:00"), attendees=5, now=NOW)
    assert [v.rule for v in found] == ["holiday"]
    assert "praznik" in found[0].sl


def test_one_off_closure():
    closure = (span("2026-12-03", "00:00", "23:59"), "volitve")
    found = domain.check_request(RULES, span("2026-12-03", "18:00", "20:00"), attendees=5, now=NOW, closures=[closure])
    assert [v.sl for v in found] == ["Prostor je takrat zaprt: volitve."]


def test_opening_hours_are_local_time_across_dst():
    # 29 March 2026 (DST starts): 08:00 local is 06:00 UTC; the day before it is 07:00 UTC.
    assert at("2026-03-29", "08:00") == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert at("2026-03-28", "08:00") == datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert rules_of(span("2026-03-29", "09:00", "11:00"), now=now) == []
    early = Interval(datetime(2026, 3, 29, 5, 30, tzinfo=UTC), datetime(2026, 3, 29, 7, 30, tzinfo=UTC))
    assert rules_of(early, now=now) == ["opening-hours"]  # 07.30 local: before opening
    # Duration is real elapsed time: 01:00–04:00 local on the DST night lasts 2 hours.
    night = Rules(**{**RULES.__dict__, "opening_hours": domain.parse_week({"sun": [["00:00", "24:00"]]}),
                     "max_duration": timedelta(hours=2)})  # fmt: skip
    assert span("2026-03-29", "01:00", "04:00").duration == timedelta(hours=2)
    assert rules_of(span("2026-03-29", "01:00", "04:00"), night, now=now) == []
    # ...and on the night DST ends (25 October 2026) 01:00–03:00 local lasts 3 hours.
    assert span("2026-10-25", "01:00", "03:00").duration == timedelta(hours=3)
    autumn = datetime(2026, 10, 1, tzinfo=UTC)
    assert rules_of(span("2026-10-25", "01:00", "03:00"), night, now=autumn) == ["max-duration"]


def test_availability_free_taken_and_closed():
    day = "2026-12-02"  # Wednesday, office hours 17–19
    window = span(day, "00:00", "23:59")
    booked = [(span(day, "10:00", "12:00"), "confirmed")]
    avail = domain.availability(RULES, window, now=NOW, bookings=booked)
    assert avail.free == [span(day, "08:00", "10:00"), span(day, "12:00", "17:00"), span(day, "19:00", "22:00")]
    assert avail.taken == [(span(day, "10:00", "12:00"), "confirmed")]
    assert (span(day, "17:00", "19:00"), "uradne ure KS") in avail.closed
    slots = domain.day_slots(RULES, datetime.fromisoformat(day).date(), avail)
    states = {s.interval.start.astimezone(TZ).hour: s.state for s in slots}
    assert states[8] == "free" and states[10] == "taken" and states[17] == "closed" and states[21] == "free"


def test_availability_on_a_holiday_and_before_the_notice():
    avail = domain.availability(RULES, span("2026-12-25", "00:00", "23:59"), now=NOW)
    assert avail.free == [] and avail.closed[0][1].startswith("državni praznik")
    # tomorrow (a Wednesday): only from NOW + 24 h on, and not in the office hours
    avail = domain.availability(RULES, span("2026-11-25", "00:00", "23:59"), now=NOW)
    assert avail.free == [
        Interval(NOW + timedelta(hours=24), at("2026-11-25", "17:00")),
        span("2026-11-25", "19:00", "22:00"),
    ]


def test_weekly_series_keeps_local_time_across_dst():
    first = span("2027-03-17", "17:00", "19:00")  # Wednesday, CET
    dates = domain.occurrences(first, "FREQ=WEEKLY;UNTIL=20270407")
    assert [d.start.astimezone(TZ).strftime("%d.%m. %H:%M") for d in dates] == [
        "17.03. 17:00", "24.03. 17:00", "31.03. 17:00", "07.04. 17:00"
    ]  # fmt: skip
    assert dates[0].start.hour == 16 and dates[2].start.hour == 15  # UTC shifts with DST
    with pytest.raises(ValueError):
        domain.occurrences(first, "FREQ=DAILY;COUNT=500")


def test_hours_outside_office_hours_and_periods():
    assert domain.hours_outside_office(RULES, span("2026-12-02", "16:00", "20:00")) == 2.0
    assert domain.hours_outside_office(RULES, span("2026-12-03", "16:00", "20:00")) == 4.0
    assert domain.period_start(at("2026-12-06", "23:30"), "week").isoformat() == "2026-11-30"
    assert domain.period_start(at("2026-12-01", "00:30"), "month").isoformat() == "2026-12-01"


def test_parse_week_refuses_nonsense():
    with pytest.raises(ValueError):
        domain.parse_week({"monday": [["08:00", "22:00"]]})
    with pytest.raises(ValueError):
        domain.parse_week({"mon": [["22:00", "08:00"]]})
    assert domain.parse_week({"sun": [["00:00", "24:00"]]}) == {6: [(0, 1440)]}
