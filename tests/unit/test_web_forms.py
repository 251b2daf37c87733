"""A form's validation errors become Slovenian sentences, one per problem, never pydantic's English."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.booking.pages import _form_errors as booking_form_errors
from services.booking.schemas import BookingIn
from services.events.pages import registration_form_errors as _form_errors
from services.events.schemas import EventIn, RegistrationIn
from services.events.staff_form import event_errors
from shared.web.forms import CHECK_INPUT, confirmed, form_errors


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
    return event_errors(_errors(EventIn, **values)).messages


def test_field_messages_then_phrases_then_the_fallback() -> None:
    exc = _errors(RegistrationIn, name=" ", email="not-an-address")
    assert form_errors(exc, {"name": "Vpišite ime."}) == ["Vpišite ime.", CHECK_INPUT]
    whole_form = _errors(RegistrationIn, name="Ana")
    assert _form_errors(whole_form) == ["Vpišite e-poštni naslov ali telefonsko številko, da vas lahko obvestimo."]


def test_event_and_booking_forms_speak_slovenian() -> None:
    assert _event_errors_for(ends_at="2027-01-05T17:00:00+01:00") == ["Konec mora biti za začetkom."]
    # a series without an end
    assert _event_errors_for(rrule="FREQ=WEEKLY") == ["Ponavljanja ni mogoče shraniti: preverite dneve in zadnji dan."]
    booking = _errors(BookingIn, room_id="ks-primskovo")
    messages = booking_form_errors(booking)
    assert messages and all(m.endswith(".") for m in messages)
    assert not any("Field required" in m for m in messages)


def test_a_series_in_a_ks_room_is_refused_with_the_way_that_works() -> None:
    [message] = _event_errors_for(rrule="FREQ=WEEKLY;COUNT=4", room_id="ks-primskovo")
    assert message.startswith("Ponavljajočega se dogodka ni mogoče vezati na prostor KS")
    assert "rezervirajte serijo terminov" in message and "/" not in message


def test_field_errors_name_the_field_each_message_belongs_to_in_the_order_of_the_form() -> None:
    from services.notify.subscribe import _subscribe_errors
    from services.notify.subscribers import SubscriberIn
    from shared.web.forms import Errors, field_errors

    exc = _errors(RegistrationIn, name=" ", email="not-an-address")
    assert field_errors(exc, {"name": "Vpišite ime.", "email": "Napačen naslov."}) == {
        "name": "Vpišite ime.",
        "email": "Napačen naslov.",
    }
    # an error of the whole form goes to the field its phrase names
    whole = _errors(RegistrationIn, name="Ana")
    assert field_errors(whole, {"name": "x"}, [("or a phone number", "Vpišite kontakt.", "email")]) == {
        "email": "Vpišite kontakt."
    }
    # the sign-up: an SMS-only resident who left "email" ticked is told in words, at the email field
    sms_only = _errors(SubscriberIn, phone="040 123 456", ks=["huje"], channels=["email"])
    assert _subscribe_errors(sms_only, "sl") == {
        "email": "Vpišite e-poštni naslov ali odstranite kljukico pri »E-pošta«."
    }
    nothing = _errors(SubscriberIn, phone="040 123 456", ks=[], topics=[])
    assert list(_subscribe_errors(nothing, "sl")) == ["ks-all", "topic-general"]
    errors = Errors()
    errors.add("datum", "Termin je že mimo.")
    errors.add("datum", "Termin je že zaseden.")
    errors.add("datum", "Termin je že mimo.")
    assert errors == {"datum": "Termin je že mimo. Termin je že zaseden."}


def test_only_the_confirmation_pages_yes_confirms_a_destructive_form() -> None:
    assert confirmed({"potrdi": "da", "reason": "Neurje."})
    for form in ({}, {"potrdi": ""}, {"potrdi": "ne"}, {"potrdi": "DA"}, {"reason": "da"}):
        assert not confirmed(form), form


def test_topics_take_any_letters() -> None:
    from support.times import local_day

    starts = local_day(10)
    base = {"ks": "primskovo", "title": "Vaje", "venue": "Dom", "starts_at": starts, "ends_at": starts.replace(hour=20)}
    made = EventIn.model_validate({**base, "topics": ["Družabništvo", " šport ", "ples  za starejše", "šport"]})
    assert made.topics == ["družabništvo", "šport", "ples za starejše"]
    for bad in ("<b>", "a" * 41, "_x"):
        assert _event_errors_for(topics=[bad]) == [
            "Teme so besede (tudi s č, š, ž in presledki), ločene z vejico: največ 10 tem po 40 znakov."
        ]
