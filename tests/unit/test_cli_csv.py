"""Paper sign-up lists (CONTRACT.md, `kranj subscriber import`): parsing only, no I/O."""

from __future__ import annotations

import pytest

from services.notify.csv_import import CsvFormatError, parse_subscribers_csv, sniff_delimiter

BOM = b"\xef\xbb\xbf"


def test_semicolon_file_with_bom_as_slovenian_excel_writes_it() -> None:
    text = (
        "email;phone;ks;topics;channels;language\r\n"
        "ana@example.si;040 123 456;primskovo;general|events;email|sms;sl\r\n"
        "bojan@example.si;;center|struzevo;;;en\r\n"
    )
    parsed = parse_subscribers_csv(BOM + text.encode("utf-8"))
    assert parsed.delimiter == ";"
    assert parsed.errors == [] and parsed.warnings == []
    [(l1, ana), (l2, bojan)] = [(r.line, r.subscriber) for r in parsed.rows]
    assert (l1, l2) == (2, 3)
    assert ana.email == "ana@example.si"
    assert ana.phone == "+38640123456"
    assert ana.ks == ["primskovo"]
    assert ana.topics == ["general", "events"]
    assert ana.channels == ["email", "sms"]
    assert bojan.ks == ["center", "struzevo"]
    assert bojan.language == "en"
    assert bojan.channels == ["email"]  # default: the channels a contact was given for
    assert "general" in bojan.topics  # empty cell: the default topics


def test_comma_file_without_bom_and_header_in_any_case_with_spaces() -> None:
    text = " Email , PHONE ,Ks,Topics,Channels,Language\nana@example.si,+38641234567,zlato-polje,utilities,sms,\n"
    parsed = parse_subscribers_csv(text.encode())
    assert parsed.delimiter == ","
    assert parsed.errors == []
    [row] = parsed.rows
    assert row.subscriber.ks == ["zlato-polje"]
    assert row.subscriber.topics == ["utilities"]
    assert row.subscriber.channels == ["sms"]
    assert row.subscriber.language == "sl"


def test_pipe_lists_with_spaces_and_ks_written_by_name() -> None:
    text = "email;ks;topics\nana@example.si; Čirče | Vodovodni stolp |primskovo ; events | safety |\n"
    [row] = parse_subscribers_csv(text.encode()).rows
    assert row.subscriber.ks == ["circe", "vodovodni-stolp", "primskovo"]
    assert row.subscriber.topics == ["events", "safety"]


def test_a_bad_row_is_reported_by_line_and_the_good_rows_still_load() -> None:
    text = (
        "email;phone;ks\n"
        "ana@example.si;;primskovo\n"
        "\n"  # an empty line still counts as a line of the file
        "not-an-email;;primskovo\n"
        "cilka@example.si;;center\n"
    )
    parsed = parse_subscribers_csv(text.encode())
    assert [r.line for r in parsed.rows] == [2, 5]
    [error] = parsed.errors
    assert error.line == 4
    assert str(error).startswith("line 4: email")


def test_unknown_ks_bad_phone_and_missing_contacts_are_readable() -> None:
    text = (
        "email,phone,ks\n"
        "ana@example.si,,atlantida\n"
        ",12,primskovo\n"
        ",,primskovo\n"
        "dan@example.si,,\n"
        "eva@example.si,,center\n"
    )
    parsed = parse_subscribers_csv(text.encode())
    assert [r.line for r in parsed.rows] == [6]
    reasons = {e.line: e.reason for e in parsed.errors}
    assert set(reasons) == {2, 3, 4, 5}
    assert "unknown KS 'atlantida'" in reasons[2] and reasons[2].startswith("ks:")
    assert reasons[3].startswith("phone:") and "'12'" in reasons[3]
    assert "email address or a phone number" in reasons[4]
    assert reasons[5].startswith("ks:")


def test_bad_topic_channel_without_contact_and_language() -> None:
    text = "email;ks;topics;channels;language\na@example.si;center;weather;;\nb@example.si;center;;sms;\nc@example.si;center;;;de\n"
    reasons = {e.line: e.reason for e in parse_subscribers_csv(text.encode()).errors}
    assert "topics" in reasons[2] and "'weather'" in reasons[2]
    assert "sms needs a phone number" in reasons[3]
    assert reasons[4].startswith("language:")


def test_the_same_contact_twice_in_one_file_fails_on_the_second_row() -> None:
    text = (
        "email;phone;ks\nana@example.si;;center\nANA@example.si;;primskovo\n;040 123 456;center\n;+38640123456;huje\n"
    )
    parsed = parse_subscribers_csv(text.encode())
    assert [r.line for r in parsed.rows] == [2, 4]
    assert [(e.line, "line 2" in e.reason) for e in parsed.errors] == [(3, True), (5, False)]
    assert "line 4" in parsed.errors[1].reason


def test_quoted_cells_with_separators_and_line_breaks_keep_line_numbers() -> None:
    text = 'email,ks,language\n"ana@example.si","center|huje",sl\n"x@y",center,"s\nl"\nbob@example.si,center,en\n'
    parsed = parse_subscribers_csv(text.encode())
    assert [r.line for r in parsed.rows] == [2, 5]
    assert [e.line for e in parsed.errors] == [3]


def test_too_many_cells_is_a_row_error() -> None:
    parsed = parse_subscribers_csv(b"email;ks\nana@example.si;center;extra\nbob@example.si;center;\n")
    assert [e.line for e in parsed.errors] == [2]
    assert [r.line for r in parsed.rows] == [3]  # a trailing empty cell is harmless


def test_windows_1250_file_is_read_with_a_warning() -> None:
    text = "email;ks\nana@example.si;Žabnica\n"
    parsed = parse_subscribers_csv(text.encode("cp1250"))
    assert parsed.encoding == "cp1250"
    assert parsed.warnings and "Windows-1250" in parsed.warnings[0].en and "Windows-1250" in parsed.warnings[0].sl
    assert parsed.rows[0].subscriber.ks == ["zabnica"]


def test_unknown_columns_are_ignored_with_a_warning() -> None:
    parsed = parse_subscribers_csv(b"ime;email;ks;podpis\nAna;ana@example.si;center;x\n")
    assert parsed.errors == []
    assert "ime" in parsed.warnings[0].en and "podpis" in parsed.warnings[0].sl


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"email;phone\na@example.si;\n", "no `ks` column"),
        (b"ks;topics\ncenter;events\n", "`email` or a `phone`"),
        (b"email;ks;email\n", "more than once"),
    ],
)
def test_files_that_cannot_be_used_at_all(data: bytes, message: str) -> None:
    with pytest.raises(CsvFormatError, match=message):
        parse_subscribers_csv(data)


def test_rows_and_errors_unpack_like_a_pair() -> None:
    rows, errors = parse_subscribers_csv(b"email,ks\na@example.si,center\nb,center\n")
    assert len(rows) == 1 and len(errors) == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [("email;phone;ks", ";"), ("email,phone,ks", ","), ("email\tks", "\t"), ("email", ","), ("e-mail;ks,x", ";")],
)
def test_sniff_delimiter(header: str, expected: str) -> None:
    assert sniff_delimiter(header) == expected


def test_a_phone_of_a_country_the_settings_leave_out_is_a_row_error() -> None:
    from shared.settings import Settings

    text = "phone;ks\n+436641234567;primskovo\n040 123 456;primskovo\n"
    parsed = parse_subscribers_csv(text, settings=Settings(sms_country_codes="386"))
    assert [r.line for r in parsed.rows] == [3]
    [error] = parsed.errors
    assert error.line == 2 and "kodo države +386" in error.reason_sl and "country code +386" in error.reason
    widened = parse_subscribers_csv(text, settings=Settings(sms_country_codes="386,43"))
    assert [r.line for r in widened.rows] == [2, 3] and widened.errors == []


def test_every_row_reason_has_a_slovenian_text_for_the_upload_page() -> None:
    text = (
        "email;phone;ks;topics;channels;language\n"
        "ni-naslov;;center;;;\n"  # 2: not an email
        ";041 000;center;;sms;\n"  # 3: not a mobile number
        "b@example.si;;;;;\n"  # 4: no KS
        "c@example.si;;center;vreme;;\n"  # 5: unknown topic
        "d@example.si;;center;;sms;\n"  # 6: SMS without a phone
        "e@example.si;;center;;;de;x\n"  # 7: a stray cell
        "f@example.si;;center;;;\n"  # 8
        "F@example.si;;center;;;\n"  # 9: the same contact as line 8
    )
    errors = {e.line: e for e in parse_subscribers_csv(text.encode()).errors}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 9]
    assert errors[2].reason_sl == "email: e-naslov ni pravilen (oblika ime@primer.si)"
    assert errors[3].reason_sl.startswith("phone: ") and "mobilna" in errors[3].reason_sl
    assert errors[4].reason_sl.startswith("ks: manjka krajevna skupnost")
    assert errors[5].reason_sl.startswith("topics: neznana tema")
    assert errors[6].reason_sl == "kanal sms potrebuje mobilno številko"
    assert "celic" in errors[7].reason_sl and errors[9].reason_sl.startswith("isti kontakt kot v vrstici 8")
    for error in errors.values():  # and the English stays for the command line
        assert error.reason and error.reason != error.reason_sl, error
    with pytest.raises(CsvFormatError) as refused:
        parse_subscribers_csv(b"email;phone\na@example.si;\n")
    assert "ks" in refused.value.message.sl and "stolpca" in refused.value.message.sl
