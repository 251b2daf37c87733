"""A form's validation errors become Slovenian sentences, one per problem, never pydantic's English."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.booking.api import _form_errors as booking_form_errors
from services.booking.service import BookingIn
from services.events.api import _event_errors, _form_errors
from services.events.service import EventIn, RegistrationIn
from shared.web.forms import CHECK_INPUT, form_errors


def _errors(model, **values) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(values)
    return caught.value


def _event_errors_for(**overrides) -> list[str]:
    """The Slovenian errors of an event form: an evening rehearsal, changed by `overrides`."""
    values = {
        "ks": "primskovo",
        "title": "Vaje",
        "venue": "Dom",
        "starts_at": "2027-01-05T18:00:00+01:00",
        "ends_at": "2027-01-05T20:00:00+01:00",
        **overrides,
    }
    return _event_errors(_errors(EventIn, **values))


def test_field_messages_then_phrases_then_the_fallback() -> None:
    exc = _errors(RegistrationIn, name=" ", email="not-an-address")
    assert form_errors(exc, {"name": "Vpišite ime."}) == ["Vpišite ime.", CHECK_INPUT]
    whole_form = _errors(RegistrationIn, name="Ana")
    assert _form_errors(whole_form) == ["Vpišite e-poštni naslov ali telefonsko številko, da vas lahko obvestimo."]


def test_event_and_booking_forms_speak_slovenian() -> None:
    assert _event_errors_for(ends_at="2027-01-05T17:00:00+01:00") == ["Konec mora biti za začetkom."]
    # a series without an end
    assert _event_errors_for(rrule="FREQ=WEEKLY") == ["Ponavljanje ni pravilno zapisano."]
    booking = _errors(BookingIn, room_id="ks-primskovo")
    messages = booking_form_errors(booking)
    assert messages and all(m.endswith(".") for m in messages)
    assert not any("Field required" in m for m in messages)


def test_a_series_in_a_ks_room_is_refused_with_the_way_that_works() -> None:
    [message] = _event_errors_for(rrule="FREQ=WEEKLY;COUNT=4", room_id="ks-primskovo")
    assert message.startswith("Ponavljajočega se dogodka ni mogoče vezati na prostor KS")
    assert "rezervirajte serijo terminov" in message and "/" not in message
