"""Residents' contact data: one way to read phone numbers for every service."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import phonenumbers
from pydantic import BaseModel, field_validator, model_validator

from shared.errors import Bilingual


def normalise_phone(raw: str, region: str = "SI") -> str:
    """Any common way of writing a number -> E.164 (`040 123 456` -> `+38640123456`)."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# What a resident reads when the number they gave cannot receive the platform's SMS
# (a landline, a premium-rate 090/089 or toll-free 080 number, a pager, …): HTTP 422.
NOT_MOBILE = (
    "Na to številko ne moremo pošiljati SMS: vpišite številko mobilnega telefona. / "
    "We cannot send SMS to this number: give a mobile phone number."
)
_MOBILE_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE})


# Every metadata pattern is compiled once and kept (the library's own option for checking
# many numbers): looked up in `re`'s cache for each of the ten or so patterns a number's type
# is matched against, they were a quarter of `is_mobile` (make bench, issue 20 §3).
phonenumbers.enable_pattern_cache()

# E.164 as the platform stores every number (`normalise_phone`): "+", the country calling
# code, the national significant number; 15 digits at most.
_E164 = re.compile(r"\+([1-9][0-9]{1,14})")


def read_e164(e164: str) -> phonenumbers.PhoneNumber | None:
    """The number a stored E.164 string is, read as E.164 defines it: the country calling code
    (calling codes are prefix-free, so the first 1–3 digits that are one are it), then the
    national significant number. None for anything else (`is_mobile` then parses it).

    `phonenumbers.parse` reads every way people write numbers (spaces, trunk prefixes,
    extensions): 8 µs a number, twice per SMS, was a tenth of notify's CPU in an SMS fan-out
    (make bench, issue 20 §3). For a number `normalise_phone` wrote, both readings are the same
    number (tests/unit/test_contact_e164.py, every example number of every region)."""
    split = _split_e164(e164)
    if split is None:
        return None
    code, national = split
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    # Leading zeros are part of some national numbers (Italy's): kept as parse keeps them.
    zeros = len(national) - len(national.lstrip("0"))
    if len(national) > 1 and zeros:
        number.italian_leading_zero = True
        zeros = min(zeros, len(national) - 1)  # of "000", the last 0 is the number
        if zeros != 1:
            number.number_of_leading_zeros = zeros
    return number


def _split_e164(e164: str) -> tuple[int, str] | None:
    """A stored E.164 string's country calling code and national significant number (its
    digits as written, leading zeros and all: what `national_significant_number` gives of
    the number `read_e164` reads); None for anything else."""
    match = _E164.fullmatch(e164)
    if match is None:
        return None
    digits = match.group(1)
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            return (code, national) if national else None
    return None


def _number(e164: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """`e164` read as E.164 (`read_e164`), else parsed as people write numbers (`region` for
    one without a leading +); None if it is no number at all."""
    number = read_e164(e164)
    if number is None:
        try:
            number = phonenumbers.parse(e164, region)
        except phonenumbers.NumberParseException:
            return None
    return number


def country_code(e164: str) -> int | None:
    """The country calling code of an E.164 number (386 for +386…); None if it is not one."""
    number = _number(e164, None)
    return None if number is None else number.country_code


def is_mobile(e164: str) -> bool:
    """Can this number receive an SMS from us? Only a mobile number (`phonenumbers` type
    MOBILE, or FIXED_LINE_OR_MOBILE where a country's plan does not tell them apart): never
    a landline, premium-rate (+386 90, 89), toll-free (+386 80), shared-cost or VoIP number.
    The APIs and the send-time check answer it the same way (`sms_number`)."""
    if e164.startswith("+"):
        return sms_number(e164)[1]
    return _is_mobile_number(_number(e164, "SI"))


def _is_mobile_number(number: phonenumbers.PhoneNumber | None) -> bool:
    # A type other than UNKNOWN is only found for a valid number: no separate is_valid_number.
    return number is not None and phonenumbers.number_type(number) in _MOBILE_TYPES


def sms_number(e164: str) -> tuple[int | None, bool]:
    """A stored number's country calling code (`country_code`) and whether it is mobile
    (`is_mobile`), read once: the delivery worker asks both of every SMS it sends."""
    if not e164.startswith("+"):  # not as the platform stores numbers: each as it reads them
        return country_code(e164), is_mobile(e164)
    split = _split_e164(e164)
    if split is not None and (plan := _mobile_plan(split[0])) is not None:
        return split[0], plan.mobile(split[1])
    number = _number(e164, None)  # with a "+", the region is not used: the same number for both
    return (None if number is None else number.country_code), _is_mobile_number(number)


# The kinds of number `phonenumbers.number_type` tells before it looks at landline and mobile,
# in its order: a number of any of them is not one we text.
_NOT_MOBILE_FIRST = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail")


@dataclass(frozen=True, slots=True)
class _Desc:
    """One of a numbering plan's kinds of number, as `phonenumberutil._is_number_matching_desc`
    tests a national number against it: a possible length (where the plan gives them), then
    the whole number against the kind's pattern (compiled once)."""

    lengths: frozenset[int]
    fullmatch: Callable[[str], re.Match[str] | None]

    @classmethod
    def of(cls, desc: Any) -> _Desc | None:  # a phonenumbers PhoneNumberDesc; None: matches nothing
        if desc is None or not desc.national_number_pattern:
            return None
        return cls(frozenset(desc.possible_length), re.compile(desc.national_number_pattern).fullmatch)

    def matches(self, national: str) -> bool:
        return (not self.lengths or len(national) in self.lengths) and self.fullmatch(national) is not None


@dataclass(frozen=True, slots=True)
class _MobilePlan:
    """Whether a national number of one country calling code is of a type `_MOBILE_TYPES`
    holds, decided as `phonenumbers.number_type` decides its type, with the code's metadata
    read once: a number of the plan (`general`), none of the kinds tested first, then mobile
    (or landline, where the plan's patterns for both are one: FIXED_LINE_OR_MOBILE). The
    library's generic path, per SMS, was a tenth of notify's CPU in an SMS fan-out (make
    bench, issue 20 §3); tests/unit/test_contact_e164.py holds both to the same answers."""

    general: _Desc | None
    first: tuple[_Desc, ...]
    mobile_desc: _Desc | None

    @classmethod
    def of(cls, metadata: Any) -> _MobilePlan:  # a phonenumbers PhoneMetadata
        first = tuple(d for name in _NOT_MOBILE_FIRST if (d := _Desc.of(getattr(metadata, name))) is not None)
        mobile = metadata.fixed_line if metadata.same_mobile_and_fixed_line_pattern else metadata.mobile
        return cls(_Desc.of(metadata.general_desc), first, _Desc.of(mobile))

    def mobile(self, national: str) -> bool:
        if self.general is None or self.mobile_desc is None or not self.general.matches(national):
            return False
        return not any(desc.matches(national) for desc in self.first) and self.mobile_desc.matches(national)


@functools.cache
def _mobile_plan(code: int) -> _MobilePlan | None:
    """The plan of a code one region uses (or one non-geographic entity); None where several
    share it (+1, +7, +44…): there the region is found by the number, as the library does."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if len(regions) != 1:
        return None
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, regions[0])
    return _MobilePlan(None, (), None) if metadata is None else _MobilePlan.of(metadata)


def mobile_phone(raw: str, region: str = "SI") -> str:
    """A number the platform may text, in E.164; ValueError (`NOT_MOBILE`) for any other."""
    e164 = normalise_phone(raw, region)
    if not is_mobile(e164):
        raise ValueError(NOT_MOBILE)
    return e164


class SmsCountries(Protocol):
    """What `sms_refusal` needs of the settings (shared.settings.Settings)."""

    @property
    def sms_countries(self) -> list[str]: ...

    def sms_allowed(self, e164: str) -> bool: ...


def sms_refusal(phone: str | None, settings: SmsCountries) -> Bilingual | None:
    """Why the platform will not take `phone` (E.164, already a mobile number) for SMS, in
    Slovenian then English, or None when it may: SMS go only to the countries of
    `KRANJ_SMS_COUNTRY_CODES` (default +386; stops SMS pumping). The one check every API that
    takes a phone makes where its settings are (a use case or route): 422 with this text."""
    if not phone or settings.sms_allowed(phone):
        return None
    codes = ", ".join(f"+{code}" for code in settings.sms_countries) or "—"
    return Bilingual(
        f"Na to številko ne moremo pošiljati SMS: pošiljamo le na mobilne številke s kodo države {codes}.",
        f"We cannot send SMS to this number: we only text mobile numbers with the country code {codes}.",
    )


class ContactFields(BaseModel):
    """Mixin for models with `email` and/or `phone`: email lower-cased, phone in E.164 and
    a mobile number (the phone is only ever used for SMS), and at least one of the two given."""

    @field_validator("email", check_fields=False)
    @classmethod
    def _lower_email(cls, value: str | None) -> str | None:
        return value.lower() if value else None

    @field_validator("phone", check_fields=False)
    @classmethod
    def _e164_phone(cls, value: str | None) -> str | None:
        return mobile_phone(value) if value else None

    @model_validator(mode="after")
    def _reachable(self) -> ContactFields:
        if not getattr(self, "email", None) and not getattr(self, "phone", None):
            raise ValueError("give an email address or a phone number (or both)")
        return self
