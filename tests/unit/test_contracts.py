"""The CloudEvents envelope and the `notify.notice.requested` v1 data schema (CONTRACT.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.contracts import (
    CHANNELS,
    EVENT_PUBLISHED,
    KS_SLUGS,
    MESSAGE_REJECTED,
    NOTICE_REQUESTED,
    CloudEvent,
    Rejection,
    parse_data,
    parse_envelope,
)


def envelope(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": "3f8c1f0e-7b1d-4c59-9d7a-1d2b1f7e9a10",
        "source": "/komunala-kranj/outages",
        "type": "si.kranj.notify.notice.requested.v1",
        "time": "2026-12-01T07:30:00Z",
        "datacontenttype": "application/json",
        "data": {"title": "Izklop vode", "body": "Jutri od 8. do 12. ure.", "ks": ["primskovo"]},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def wire(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def rejection_reason(body: bytes) -> str:
    with pytest.raises(Rejection) as caught:
        parse_envelope(body)
    return caught.value.reason


def data_reason(data: Any) -> str:
    event = parse_envelope(wire(envelope(data=data)))
    with pytest.raises(Rejection) as caught:
        parse_data(event, NOTICE_REQUESTED)
    return caught.value.reason


# --------------------------------------------------------------------------------------
# Envelope
# --------------------------------------------------------------------------------------
def test_the_contract_example_parses() -> None:
    event = parse_envelope(wire(envelope()))
    assert isinstance(event, CloudEvent)
    assert event.id == "3f8c1f0e-7b1d-4c59-9d7a-1d2b1f7e9a10"
    assert event.source == "/komunala-kranj/outages"
    assert event.type == NOTICE_REQUESTED.type == "si.kranj.notify.notice.requested.v1"
    assert event.routing_key == "notify.notice.requested"
    assert event.time is not None and event.time.utcoffset().total_seconds() == 0
    assert event.time.isoformat() == "2026-12-01T07:30:00+00:00"


def test_only_the_required_attributes_are_enough() -> None:
    body = {"specversion": "1.0", "id": "1", "source": "/x", "type": "si.kranj.notify.notice.requested.v1"}
    event = parse_envelope(wire(body))
    assert event.time is None and event.data is None and event.datacontenttype is None


def test_body_that_is_not_json_is_rejected_readably() -> None:
    assert rejection_reason(b"Izklop vode jutri").startswith("body is not JSON")


def test_body_that_is_not_utf8_is_rejected_readably() -> None:
    assert rejection_reason("Žabnica".encode("cp1250")).startswith("body is not UTF-8 text")


@pytest.mark.parametrize(("body", "kind"), [(b"[1, 2]", "list"), (b'"text"', "str"), (b"42", "int"), (b"null", "NoneType")])
def test_json_that_is_not_an_object_is_rejected(body: bytes, kind: str) -> None:
    assert rejection_reason(body) == f"body must be a JSON object (a CloudEvent), not {kind}"


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
def test_missing_required_attribute_is_named(missing: str) -> None:
    reason = rejection_reason(wire(envelope(**{missing: ...})))
    assert reason == f"not a valid CloudEvents 1.0 envelope: {missing}: Field required"


@pytest.mark.parametrize("attribute", ["id", "source", "type"])
def test_empty_required_attribute_is_rejected(attribute: str) -> None:
    reason = rejection_reason(wire(envelope(**{attribute: ""})))
    assert reason.startswith(f"not a valid CloudEvents 1.0 envelope: {attribute}: String should have at least 1 character")


def test_specversion_0_3_is_rejected_with_the_version_named() -> None:
    reason = rejection_reason(wire(envelope(specversion="0.3")))
    assert reason == "not a valid CloudEvents 1.0 envelope: specversion: specversion must be \"1.0\", not '0.3'"


def test_non_json_datacontenttype_is_rejected() -> None:
    reason = rejection_reason(wire(envelope(datacontenttype="application/xml")))
    assert "datacontenttype must be application/json" in reason
    # +json media types are JSON too
    assert parse_envelope(wire(envelope(datacontenttype="application/vnd.kranj+json"))).datacontenttype


def test_bad_time_is_rejected_and_named() -> None:
    assert rejection_reason(wire(envelope(time="včeraj"))).startswith("not a valid CloudEvents 1.0 envelope: time:")


def test_unknown_extension_attributes_are_tolerated_and_kept() -> None:
    event = parse_envelope(wire(envelope(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", komunalaref={"n": 7})))
    assert event.model_extra == {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "komunalaref": {"n": 7},
    }
    assert event.model_dump()["komunalaref"] == {"n": 7}


def test_routing_key_of_a_foreign_type_is_none() -> None:
    assert parse_envelope(wire(envelope(type="com.example.order.created"))).routing_key is None


def test_message_type_envelope_round_trips() -> None:
    body = NOTICE_REQUESTED.envelope(
        {"title": "Zapora ceste", "body": "Cesta bo zaprta.", "ks": ["center"]}, source="/test", subject="abc"
    )
    assert body["type"] == "si.kranj.notify.notice.requested.v1"
    assert body["time"].endswith("Z") and body["subject"] == "abc"
    event = parse_envelope(wire(body))
    assert parse_data(event, NOTICE_REQUESTED).title == "Zapora ceste"
    assert MESSAGE_REJECTED.type == "si.kranj.bus.message.rejected.v1"
    assert EVENT_PUBLISHED.type == "si.kranj.events.event.published.v1"


# --------------------------------------------------------------------------------------
# notify.notice.requested v1 data
# --------------------------------------------------------------------------------------
def test_defaults_of_a_minimal_notice() -> None:
    data = parse_data(parse_envelope(wire(envelope())), NOTICE_REQUESTED)
    assert data.topic == "general"
    assert data.channels == ["email", "sms", "noticeboard"] == list(CHANNELS)
    assert data.urgency == "normal"
    assert data.language == "sl"
    assert data.url is None and data.valid_until is None


def test_a_full_notice() -> None:
    data = parse_data(
        parse_envelope(
            wire(
                envelope(
                    data={
                        "title": "  Izklop elektrike  ",
                        "body": "Zaradi del.",
                        "ks": ["circe", "zabnica", "circe"],
                        "topic": "utilities",
                        "channels": ["sms", "sms", "email"],
                        "urgency": "urgent",
                        "url": "https://www.kranj.si/obvestila/1",
                        "valid_until": "2026-12-02T18:00:00+01:00",
                        "language": "en",
                        "unknown_field": "ignored",
                    }
                )
            )
        ),
        NOTICE_REQUESTED,
    )
    assert data.title == "Izklop elektrike"
    assert data.ks == ["circe", "zabnica"]
    assert data.channels == ["sms", "email"]
    assert (data.topic, data.urgency, data.language) == ("utilities", "urgent", "en")
    assert str(data.url) == "https://www.kranj.si/obvestila/1"
    assert data.valid_until is not None and data.valid_until.utcoffset().total_seconds() == 3600


@pytest.mark.parametrize("ks", [["*"], ["center", "*"]])
def test_star_means_every_ks(ks: list[str]) -> None:
    data = parse_data(parse_envelope(wire(envelope(data={"title": "T", "body": "B", "ks": ks}))), NOTICE_REQUESTED)
    assert data.ks == ["*"]


def test_every_contract_ks_slug_is_accepted() -> None:
    assert len(KS_SLUGS) == 26
    data = parse_data(
        parse_envelope(wire(envelope(data={"title": "T", "body": "B", "ks": list(KS_SLUGS)}))), NOTICE_REQUESTED
    )
    assert data.ks == list(KS_SLUGS)


def test_unknown_ks_reason_names_the_slug() -> None:
    reason = data_reason({"title": "T", "body": "B", "ks": ["center", "atlantis"]})
    assert reason.startswith("data does not match si.kranj.notify.notice.requested.v1: ")
    assert "data.ks.1" in reason
    assert "unknown KS 'atlantis'" in reason


def test_title_over_120_characters_is_rejected() -> None:
    assert parse_data(
        parse_envelope(wire(envelope(data={"title": "x" * 120, "body": "B", "ks": ["center"]}))), NOTICE_REQUESTED
    )
    reason = data_reason({"title": "x" * 121, "body": "B", "ks": ["center"]})
    assert "data.title: String should have at most 120 characters" in reason


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"body": "B", "ks": ["center"]}, "data.title: Field required"),
        ({"title": "   ", "body": "B", "ks": ["center"]}, "data.title: must not be blank"),
        ({"title": "T", "body": "x" * 2001, "ks": ["center"]}, "data.body: String should have at most 2000 characters"),
        ({"title": "T", "body": "B", "ks": []}, "data.ks: List should have at least 1 item"),
        ({"title": "T", "body": "B"}, "data.ks: Field required"),
        ({"title": "T", "body": "B", "ks": ["center"], "topic": "weather"}, "data.topic: Input should be 'general'"),
        ({"title": "T", "body": "B", "ks": ["center"], "channels": ["fax"]}, "data.channels.0: Input should be 'email'"),
        ({"title": "T", "body": "B", "ks": ["center"], "channels": []}, "data.channels: List should have at least 1 item"),
        ({"title": "T", "body": "B", "ks": ["center"], "urgency": "high"}, "data.urgency: Input should be 'normal' or 'urgent'"),
        ({"title": "T", "body": "B", "ks": ["center"], "language": "de"}, "data.language: Input should be 'sl' or 'en'"),
        ({"title": "T", "body": "B", "ks": ["center"], "url": "kranj.si"}, "data.url:"),
        ({"title": "T", "body": "B", "ks": ["center"], "valid_until": "2026-12-02T18:00:00"}, "data.valid_until: must be an RFC 3339 time with an offset"),
        (None, "data: Input should be a valid dictionary"),
        (["title"], "data: Input should be a valid dictionary"),
    ],
)
def test_schema_failures_have_readable_reasons(data: Any, expected: str) -> None:
    reason = data_reason(data)
    assert expected in reason
    assert "\n" not in reason
    assert "errors.pydantic.dev" not in reason  # no links into library docs


def test_reason_shows_what_was_sent() -> None:
    assert '(got "weather")' in data_reason({"title": "T", "body": "B", "ks": ["center"], "topic": "weather"})


def test_many_errors_are_summarised_on_one_line() -> None:
    reason = data_reason({"title": "", "body": "", "ks": ["a", "b", "c", "d", "e", "f"]})
    # 8 errors (title, body, 6 slugs): the first five are spelt out, the rest counted
    assert reason.endswith("; and 3 more")
    assert "data.ks.2: unknown KS 'c'" in reason
    assert "'d'" not in reason


@pytest.mark.parametrize(
    "data",
    [
        {"title": "NUL\u0000in a key's value"},
        {"nul\u0000key": 1},
        {"title": "lone \ud800 surrogate"},
        {"deep": json.loads("[" * 40 + "]" * 40)},
        {"deep": json.loads('{"a":' * 40 + "1" + "}" * 40)},
    ],
    ids=["nul-value", "nul-key", "surrogate", "deep-list", "deep-object"],
)
def test_bad_values_are_refused_however_the_json_spells_them(data: dict[str, Any]) -> None:
    """parse_envelope skips the walk over every value when the text cannot hold a bad one;
    every way JSON has of spelling one (escaped, raw where JSON allows it, nested) is refused."""
    spellings = {json.dumps(envelope(data=data)), json.dumps(envelope(data=data), ensure_ascii=False)}
    for text in spellings:
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:
            continue  # a raw lone surrogate cannot even be sent as UTF-8
        with pytest.raises(Rejection):
            parse_envelope(body)
