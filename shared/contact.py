"""Residents' contact data: one way to read phone numbers for every service."""

from __future__ import annotations

import phonenumbers
from pydantic import BaseModel, field_validator, model_validator


def normalise_phone(raw: str, region: str = "SI") -> str:
    """Any common way of writing a number -> E.164 (`040 123 456` -> `+38640123456`)."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class ContactFields(BaseModel):
    """Mixin for models with `email` and/or `phone`: email lower-cased, phone in E.164,
    and at least one of the two given."""

    @field_validator("email", check_fields=False)
    @classmethod
    def _lower_email(cls, value: str | None) -> str | None:
        return value.lower() if value else None

    @field_validator("phone", check_fields=False)
    @classmethod
    def _e164_phone(cls, value: str | None) -> str | None:
        return normalise_phone(value) if value else None

    @model_validator(mode="after")
    def _reachable(self) -> ContactFields:
        if not getattr(self, "email", None) and not getattr(self, "phone", None):
            raise ValueError("give an email address or a phone number (or both)")
        return self
