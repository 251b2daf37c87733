"""Residents' contact data: one way to read phone numbers for every service."""

from __future__ import annotations

import phonenumbers


def normalise_phone(raw: str, region: str = "SI") -> str:
    """Any common way of writing a number -> E.164 (`040 123 456` -> `+38640123456`)."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
