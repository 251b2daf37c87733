"""A stored E.164 number is read without `phonenumbers.parse` (shared.contact.read_e164): the
same number, the same answer to "may we text it", for every example number of every region."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from shared.contact import country_code, is_mobile, normalise_phone, read_e164, sms_number
from shared.settings import Settings

MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def parsed_answer(e164: str) -> bool:
    """What the send-time check answered before: parse, then valid and of a mobile type."""
    number = phonenumbers.parse(e164, None)
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in MOBILE


def example_numbers() -> list[str]:
    """Every example number phonenumbers has, of every region (and non-geographic code) and
    type, in E.164 as `normalise_phone` writes it: mobile, landline, premium-rate, toll-free…"""
    found: set[str] = set()
    kinds = [getattr(PhoneNumberType, name) for name in dir(PhoneNumberType) if name.isupper()]
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in kinds:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.add(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            found.add(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    return sorted(found)


EXAMPLES = example_numbers()


def test_there_are_examples_of_many_kinds() -> None:
    assert len(EXAMPLES) > 900
    assert sum(parsed_answer(n) for n in EXAMPLES) > 200  # mobile ones
    assert sum(not parsed_answer(n) for n in EXAMPLES) > 500  # and every other kind


def test_every_example_reads_as_the_number_parse_gives() -> None:
    differ = [n for n in EXAMPLES if read_e164(n) != phonenumbers.parse(n, None)]
    assert differ == []


def test_every_example_gets_the_answer_parse_gave() -> None:
    differ = [n for n in EXAMPLES if is_mobile(n) != parsed_answer(n)]
    assert differ == []
    assert all(country_code(n) == phonenumbers.parse(n, None).country_code for n in EXAMPLES)


def test_numbers_near_the_examples_get_the_answer_parse_gave() -> None:
    """Each example with its last digits changed (a seeded sweep, so the same every run):
    numbers next to real ones, valid or not. Those `normalise_phone` could have written
    (E.164 that parses back to itself) get parse's answer."""
    rng = random.Random(20)
    checked = 0
    for example in EXAMPLES:
        for _ in range(5):
            cut = rng.randint(1, 4)
            candidate = example[:-cut] + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 5)))
            try:
                number = phonenumbers.parse(candidate, None)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.format_number(number, PhoneNumberFormat.E164) != candidate:
                continue  # not as the platform stores numbers
            checked += 1
            # E.164 allows 15 digits; parse reads longer ones, and so is asked for them
            assert read_e164(candidate) == (number if len(candidate) <= 16 else None), candidate
            assert is_mobile(candidate) is parsed_answer(candidate), candidate
    assert checked > 3000


@pytest.mark.parametrize(
    ("written", "mobile"),
    [
        ("040 123 456", True),  # Slovenian mobile
        ("031 234 567", True),
        ("04 201 23 45", False),  # Kranj landline
        ("090 123 456", False),  # premium rate
        ("080 1234", False),  # toll-free
        ("+39 06 6988 1234", False),  # Rome: a leading zero that belongs to the number
        ("+39 312 345 6789", True),
        ("+44 7400 123456", True),
        ("+1 201 555 0123", True),  # US: fixed line or mobile, the plan does not tell
    ],
)
def test_numbers_as_residents_write_them(written: str, mobile: bool) -> None:
    e164 = normalise_phone(written)
    assert read_e164(e164) == phonenumbers.parse(e164, None)
    assert is_mobile(e164) is mobile


@pytest.mark.parametrize("odd", ["+", "+0123456789", "38640123456", "+386 40 123 456", "+38640123456x1", ""])
def test_what_is_not_stored_e164_is_parsed_as_before(odd: str) -> None:
    assert read_e164(odd) is None
    try:
        expected = parsed_answer(odd) if odd.startswith("+") else is_mobile(normalise_phone(odd))
    except (phonenumbers.NumberParseException, ValueError):
        expected = False
    assert is_mobile(odd) is expected


@pytest.mark.parametrize("odd", ["+", "+0123456789", "38640123456", "040 123 456", "+3861", "+38640123456x1", "", "x"])
def test_the_send_time_reading_is_both_answers_at_once(odd: str) -> None:
    """What the delivery worker reads of each SMS's number (`sms_number`, once) is what the
    two questions it asks answer each on its own: every example number, and odd ones."""
    differ = [n for n in [*EXAMPLES, odd] if sms_number(n) != (country_code(n), is_mobile(n))]
    assert differ == []
    assert sms_number("+38640123456") == (386, True)
    assert sms_number("+38642012345") == (386, False)  # a Kranj landline


def test_too_short_to_be_a_number() -> None:
    assert not is_mobile("+3861")
    assert country_code("+3861") == 386


def test_sms_countries_by_calling_code() -> None:
    settings = Settings(sms_country_codes="386,385")
    assert settings.sms_allowed("+38640123456")
    assert settings.sms_allowed("+385912345678")
    assert not settings.sms_allowed("+38761123456")  # Bosnia and Herzegovina: 387, not 38…
    assert not settings.sms_allowed("+447400123456")
    assert not settings.sms_allowed("not a number")
    assert Settings(sms_country_codes="*").sms_allowed("+447400123456")
    # by the code alone, as the delivery worker asks (`sms_number` read it)
    assert settings.sms_allowed_country(385) and not settings.sms_allowed_country(387)
    assert not settings.sms_allowed_country(None)
    assert Settings(sms_country_codes="*").sms_allowed_country(None)


def test_the_send_time_reading_gives_the_librarys_type_for_numbers_of_every_code() -> None:
    """`sms_number` decides "mobile" from each code's numbering plan, read once
    (shared.contact._MobilePlan): for numbers of every length under every calling code
    (a seeded sweep, so the same every run; each example's first digits kept, so many of
    them are valid numbers of every kind), the library's own `number_type` agrees."""
    rng = random.Random(386)
    by_code: dict[int, list[str]] = {}
    for example in EXAMPLES:
        number = phonenumbers.parse(example, None)
        by_code.setdefault(number.country_code, []).append(phonenumbers.national_significant_number(number))
    checked = mobile = 0
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for national in by_code.get(code, ["1"]):
            for _ in range(40):
                keep = rng.randint(0, len(national))
                digits = national[:keep] + "".join(
                    rng.choice("0123456789") for _ in range(rng.randint(0, max(0, 12 - keep)))
                )
                if not digits or len(str(code)) + len(digits) > 15:
                    continue
                e164 = f"+{code}{digits}"
                expected = phonenumbers.number_type(read_e164(e164)) in MOBILE  # type: ignore[arg-type]
                assert sms_number(e164) == (code, expected), e164
                checked += 1
                mobile += expected
    assert checked > 20_000 and mobile > 1_000


def test_the_plan_decides_as_the_library_where_kinds_of_number_overlap() -> None:
    """No real plan's mobile numbers are also premium-rate or toll-free, so the sweep above
    cannot tell whether those kinds are asked first. Plans made up so that every kind
    overlaps every other, with possible lengths or without, and a landline pattern that is
    or is not the mobile one: `_MobilePlan` answers as the library's own `number_type`."""
    from types import SimpleNamespace

    from phonenumbers.phonenumberutil import _number_type_helper

    from shared.contact import _NOT_MOBILE_FIRST, _MobilePlan

    def desc(pattern: str | None, lengths: tuple[int, ...] = ()) -> SimpleNamespace:
        return SimpleNamespace(national_number_pattern=pattern, possible_length=lengths)

    rng = random.Random(7)
    kinds = [*_NOT_MOBILE_FIRST, "fixed_line", "mobile"]
    checked = mobile = 0
    for _ in range(300):
        plan = {
            kind: rng.choice([None, desc(None), desc(rf"{rng.randint(1, 9)}\d{{{rng.randint(3, 6)}}}"),
                              desc(rf"[{rng.randint(1, 4)}-{rng.randint(5, 9)}]\d{{3,7}}", tuple(rng.sample(range(4, 9), 2)))])
            for kind in kinds
        }  # fmt: skip
        metadata = SimpleNamespace(
            general_desc=desc(r"\d{4,8}", rng.choice([(), (4, 5, 6, 7, 8), (5, 8)])),
            same_mobile_and_fixed_line_pattern=rng.random() < 0.3,
            **plan,
        )
        ours = _MobilePlan.of(metadata)
        for _ in range(100):
            national = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 9)))
            expected = _number_type_helper(national, metadata) in MOBILE
            assert ours.mobile(national) is expected, (national, metadata)
            checked += 1
            mobile += expected
    assert mobile > 300 and checked - mobile > 10_000
