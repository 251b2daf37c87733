"""The event editor's repeat picker and room notices, as pure rules (services/events/repeat.py,
domain.room_notice): the picker's values make the RRULE the use cases take and a stored rule
fills the picker again with the same dates; what staff read about a room is plain Slovenian."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.times import weekday_ahead

from services.events import domain, repeat
from services.events.repeat import KEEP, WEEKLY, Repeat, RepeatError

TUESDAY = weekday_ahead(1, weeks=2)  # 18.00 in Kranj


def _until(weeks: int) -> object:
    return (TUESDAY + timedelta(weeks=weeks)).date()


def test_tuesdays_and_thursdays_every_other_week_until_a_day() -> None:
    until = _until(6)
    rule = repeat.rule_of(Repeat(kind=WEEKLY, days=["TH", "TU"], interval=2, until=until), TUESDAY)
    assert rule == f"FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;UNTIL={until:%Y%m%d}"
    dates = repeat.all_dates(rule, TUESDAY, TUESDAY + timedelta(hours=2))
    local = [d.starts_at.astimezone(domain.TZ) for d in dates]
    # weeks 0, 2, 4 and the Tuesday of week 6: its Thursday falls after the last day
    assert [(d.weekday(), d.hour) for d in local] == [(1, 18), (3, 18)] * 3 + [(1, 18)]
    assert local[-1].date() == until
    assert repeat.describe(repeat.repeat_of(rule, TUESDAY, [])) == (
        f"vsak drugi teden ob torkih in četrtkih do {until.day}. {until.month}. {until.year}"
    )


def test_no_day_ticked_means_the_day_of_the_start() -> None:
    rule = repeat.rule_of(Repeat(kind=WEEKLY, until=_until(3)), TUESDAY)
    assert rule is not None and "BYDAY=TU" in rule
    assert len(repeat.all_dates(rule, TUESDAY, TUESDAY + timedelta(hours=1))) == 4
    assert repeat.rule_of(Repeat(), TUESDAY) is None  # "ne ponavlja se"


@pytest.mark.parametrize(
    ("picked", "field", "words"),
    [
        (Repeat(kind=WEEKLY, days=["WE"], until=_until(3)), "dan-WE", "Prvi termin (začetek) je torek"),
        (Repeat(kind=WEEKLY, days=["TU"]), "do", "do katerega dne"),
        (Repeat(kind=WEEKLY, days=["TU"], until=_until(-1)), "do", "na dan začetka ali pozneje"),
        (Repeat(kind=WEEKLY, days=list(repeat.DAY_CODES), until=_until(40)), "do", "največ 200 terminov"),
    ],
)
def test_what_cannot_make_a_series_is_said_at_its_field(picked: Repeat, field: str, words: str) -> None:
    with pytest.raises(RepeatError) as refused:
        repeat.rule_of(picked, TUESDAY)
    assert refused.value.field == field and words in refused.value.message


def test_a_rule_of_the_api_fills_the_picker_with_the_same_dates() -> None:
    ends = TUESDAY + timedelta(hours=2)
    dropped = TUESDAY + timedelta(weeks=2)
    picked = repeat.repeat_of("FREQ=WEEKLY;COUNT=5", TUESDAY, [dropped])
    assert (picked.kind, picked.days, picked.interval, picked.until) == (WEEKLY, ["TU"], 1, _until(4))
    assert picked.skipped == {dropped}
    again = repeat.rule_of(picked, TUESDAY)
    assert repeat.all_dates(again, TUESDAY, ends) == repeat.all_dates("FREQ=WEEKLY;COUNT=5", TUESDAY, ends)


def test_a_rule_the_picker_cannot_show_is_kept_as_it_is() -> None:
    for rule in ("FREQ=MONTHLY;COUNT=3", "FREQ=WEEKLY;BYDAY=TU;BYMONTH=5,6;COUNT=4", "FREQ=WEEKLY;INTERVAL=3;COUNT=3"):
        picked = repeat.repeat_of(rule, TUESDAY, [])
        assert picked.kind == KEEP and repeat.rule_of(picked, TUESDAY) == rule


def test_room_notices_tell_staff_plainly() -> None:
    now = TUESDAY - timedelta(days=7)
    common = {"booking_id": None, "note": None, "requested_at": now - timedelta(minutes=1), "now": now}
    assert domain.room_notice("draft", None, **common) is None  # no room: nothing to tell
    fresh = domain.room_notice("pending-room", "Dom KS Primskovo", **common)
    assert fresh is not None and not fresh.problem and "v nekaj minutah" in fresh.text
    stale = domain.room_notice(
        "pending-room", "Dom KS Primskovo", **{**common, "requested_at": now - domain.ROOM_ANSWER_WAIT * 2}
    )
    assert stale is not None and stale.problem and "se na zahtevo za prostor Dom KS Primskovo ni odzvala" in stale.text
    waiting = domain.room_notice("pending-room", "Dom KS Primskovo", **{**common, "booking_id": "b1"})
    assert waiting is not None and not waiting.problem and "čaka na odobritev krajevne skupnosti" in waiting.text
    refused = domain.room_notice("room-refused", "Dom KS Primskovo", **{**common, "note": "Prostor je zaseden."})
    assert refused is not None and refused.problem
    assert "Prostor Dom KS Primskovo za ta dogodek ni odobren. Razlog: Prostor je zaseden." in refused.text
    assert refused.short == "prostor ni odobren: Prostor je zaseden"
