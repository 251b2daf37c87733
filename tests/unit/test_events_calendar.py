"""iCalendar of events: an event on the Tuesday after the switch to summer time stays 18.00
local (read back with icalendar's parser AND as plain text), and a weekly series with one
cancelled occurrence is RRULE + EXDATE, expanded the same way in the pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from icalendar import Calendar

from services.events import domain
from services.events.calendar import events_ics
from services.events.models import Event

TZ = domain.TZ


def _event(**kw) -> Event:
    values = dict(
        id="e1",
        ks="primskovo",
        title="Pevske vaje",
        starts_at=datetime(2027, 3, 30, 18, 0, tzinfo=TZ).astimezone(UTC),
        ends_at=datetime(2027, 3, 30, 20, 0, tzinfo=TZ).astimezone(UTC),
        venue="Dom KS Primskovo",
        status="published",
        created_by="t",
    )
    values.update(kw)
    return Event(**values)


def _unfolded(ics: bytes) -> list[str]:
    return ics.decode().replace("\r\n ", "").split("\r\n")


def test_event_after_dst_switch_stays_18_local() -> None:
    event = _event()
    assert event.starts_at == datetime(2027, 3, 30, 16, 0, tzinfo=UTC)  # CEST = UTC+2
    ics = events_ics([event], "https://kranj.example", "test")
    lines = _unfolded(ics)
    assert "DTSTART;TZID=Europe/Ljubljana:20270330T180000" in lines
    assert "DTEND;TZID=Europe/Ljubljana:20270330T200000" in lines
    assert "BEGIN:VTIMEZONE" in lines and "TZID:Europe/Ljubljana" in lines

    cal = Calendar.from_ical(ics)
    [vevent] = cal.walk("VEVENT")
    start = vevent.decoded("dtstart")
    assert (start.hour, start.minute) == (18, 0)
    assert start.utcoffset() == timedelta(hours=2)
    assert start.astimezone(UTC) == event.starts_at
    [vtz] = cal.walk("VTIMEZONE")
    assert str(vtz["TZID"]) == "Europe/Ljubljana"
    assert {c.name for c in vtz.subcomponents} == {"STANDARD", "DAYLIGHT"}


def test_weekly_series_across_dst_with_a_cancelled_date() -> None:
    first = datetime(2027, 3, 23, 18, 0, tzinfo=TZ)  # before the switch (CET)
    cancelled = datetime(2027, 4, 6, 18, 0, tzinfo=TZ)
    event = _event(
        starts_at=first.astimezone(UTC),
        ends_at=(first + timedelta(hours=2)).astimezone(UTC),
        rrule="FREQ=WEEKLY;UNTIL=20270420",
        exdates=[cancelled.astimezone(UTC).isoformat()],
    )
    dates = domain.occurrences(event.starts_at, event.ends_at, event.rrule, domain.parse_exdates(event.exdates))
    local = [d.starts_at.astimezone(TZ) for d in dates]
    assert [d.day for d in local] == [23, 30, 13, 20]  # 6 April cancelled
    assert all((d.hour, d.minute) == (18, 0) for d in local)

    ics = events_ics([event], "https://kranj.example", "test")
    lines = _unfolded(ics)
    assert "DTSTART;TZID=Europe/Ljubljana:20270323T180000" in lines
    assert "EXDATE;TZID=Europe/Ljubljana:20270406T180000" in lines
    [rrule_line] = [line for line in lines if line.startswith("RRULE:")]
    assert "FREQ=WEEKLY" in rrule_line and "UNTIL=20270420T215959Z" in rrule_line

    # a second reading: icalendar's parser, expanded with dateutil like any calendar client
    from dateutil.rrule import rrulestr

    [vevent] = Calendar.from_ical(ics).walk("VEVENT")
    start = vevent.decoded("dtstart")
    rule = rrulestr(vevent["RRULE"].to_ical().decode(), dtstart=start)
    exdates = {d.dt for d in vevent["EXDATE"].dts}
    expanded = [d for d in rule if d not in exdates]
    assert [d.astimezone(UTC) for d in expanded] == [d.starts_at for d in dates]
    assert all(d.astimezone(TZ).hour == 18 for d in expanded)


def test_description_markdown_is_rendered_and_sanitised() -> None:
    text = (
        "# Delavnica\n\n**Pridite** vsi, *tudi* starejši!\nDruga vrstica\n\n"
        "- prvo\n- drugo\n\n"
        "<script>alert(1)</script> <img src=x onerror=alert(1)> <b onclick=x>b</b>\n\n"
        "[prijava](javascript:alert(1)) [KS](https://kranj.si) ![slika](https://x.example/y.png)"
    )
    html = str(domain.render_description(text))
    assert "<h3>Delavnica</h3>" in html  # a heading never outranks the page's own h1/h2
    assert "<strong>Pridite</strong>" in html and "<em>tudi</em>" in html
    assert "starejši!<br>" in html and "<li>prvo</li>" in html
    assert '<a href="https://kranj.si" rel="nofollow noopener noreferrer">KS</a>' in html
    # nothing of the author's runs, loads or becomes markup
    assert "<script" not in html and "<img" not in html and "<b " not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "onerror" not in html.replace("onerror=alert(1)&gt;", "")
    assert "javascript:" not in html.replace("[prijava](javascript:alert(1))", "")
    assert 'href="javascript' not in html

    plain = domain.plain_description(text)
    assert plain.startswith("Delavnica\n\nPridite vsi, tudi starejši!\nDruga vrstica")
    assert "• prvo" in plain and "KS (https://kranj.si)" in plain and "**" not in plain


def test_moved_occurrence_is_a_recurrence_id_override() -> None:
    """One Tuesday of a weekly series moved to Thursday: the pages list it on Thursday, the
    feed carries it as a RECURRENCE-ID override that a second reader (recurring-ical-events)
    expands to the same dates, 18.00 local on both sides of the DST switch."""
    import recurring_ical_events

    first = datetime(2027, 3, 23, 18, 0, tzinfo=TZ)
    original = datetime(2027, 4, 6, 18, 0, tzinfo=TZ)
    moved_to = datetime(2027, 4, 8, 17, 0, tzinfo=TZ)
    cancelled = datetime(2027, 4, 13, 18, 0, tzinfo=TZ)
    event = _event(
        starts_at=first.astimezone(UTC),
        ends_at=(first + timedelta(hours=2)).astimezone(UTC),
        rrule="FREQ=WEEKLY;UNTIL=20270420",
        exdates=[cancelled.astimezone(UTC).isoformat()],
        moved=[
            {
                "original": original.astimezone(UTC).isoformat(),
                "starts_at": moved_to.astimezone(UTC).isoformat(),
                "ends_at": (moved_to + timedelta(hours=2)).astimezone(UTC).isoformat(),
            }
        ],
    )
    dates = domain.occurrences(
        event.starts_at,
        event.ends_at,
        event.rrule,
        domain.parse_exdates(event.exdates),
        moved=domain.parse_moved(event.moved),
    )
    local = [(d.starts_at.astimezone(TZ).day, d.starts_at.astimezone(TZ).hour) for d in dates]
    assert local == [(23, 18), (30, 18), (8, 17), (20, 18)]

    ics = events_ics([event], "https://kranj.example", "test")
    lines = _unfolded(ics)
    assert "RECURRENCE-ID;TZID=Europe/Ljubljana:20270406T180000" in lines
    assert "DTSTART;TZID=Europe/Ljubljana:20270408T170000" in lines
    calendar = Calendar.from_ical(ics)
    expanded = recurring_ical_events.of(calendar).between(datetime(2027, 3, 1), datetime(2027, 5, 1))
    starts = sorted(item.decoded("dtstart").astimezone(UTC) for item in expanded)
    assert starts == [d.starts_at for d in dates]
    assert {str(item["uid"]) for item in expanded} == {"event-e1@kranj-za-vse"}


def test_waitlist_rules() -> None:
    assert domain.seat_for_next(None, 1000)
    assert domain.seat_for_next(20, 19) and not domain.seat_for_next(20, 20)
    assert domain.seats_to_fill(20, 18, 5) == 2
    assert domain.seats_to_fill(20, 20, 5) == 0
    assert domain.seats_to_fill(None, 3, 4) == 4
