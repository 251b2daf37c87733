"""notify's pure rules: quiet hours (across midnight and DST), backoff, phone numbers, wording."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import pytest

from services.notify.domain import normalise_phone, quiet_until, retry_delay
from services.notify.models import Notice
from services.notify.render import Renderer, end_sentence, from_label
from shared.settings import Settings

NIGHT = (time(21, 0), time(7, 0))


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        (datetime(2026, 12, 1, 19, 59, tzinfo=UTC), None),  # 20.59 in Kranj (CET)
        (datetime(2026, 12, 1, 20, 0, tzinfo=UTC), datetime(2026, 12, 2, 6, 0, tzinfo=UTC)),  # 21.00
        (datetime(2026, 12, 1, 23, 30, tzinfo=UTC), datetime(2026, 12, 2, 6, 0, tzinfo=UTC)),  # past midnight
        (datetime(2026, 12, 2, 5, 59, tzinfo=UTC), datetime(2026, 12, 2, 6, 0, tzinfo=UTC)),  # 06.59
        (datetime(2026, 12, 2, 6, 0, tzinfo=UTC), None),  # 07.00 sharp: quiet hours are over
        (datetime(2026, 7, 1, 19, 30, tzinfo=UTC), datetime(2026, 7, 2, 5, 0, tzinfo=UTC)),  # CEST: 21.30
    ],
)
def test_quiet_hours_in_ljubljana_time(utc, expected):
    assert quiet_until(utc, NIGHT) == expected


def test_quiet_hours_end_at_seven_local_across_the_spring_dst_switch():
    # Night of 27/28 March 2027: clocks go forward at 02.00; 07.00 CEST is 05.00 UTC.
    assert quiet_until(datetime(2027, 3, 27, 22, 0, tzinfo=UTC), NIGHT) == datetime(2027, 3, 28, 5, 0, tzinfo=UTC)


def test_no_quiet_hours_when_switched_off():
    assert quiet_until(datetime(2026, 12, 1, 23, 0, tzinfo=UTC), None) is None


def test_daytime_window_that_does_not_cross_midnight():
    assert quiet_until(datetime(2026, 12, 1, 11, 0, tzinfo=UTC), (time(12), time(13))) == datetime(
        2026, 12, 1, 12, 0, tzinfo=UTC
    )


def test_retry_delay_grows_with_jitter_and_is_capped():
    rng = random.Random(1)
    delays = [retry_delay(n, 5.0, rng=rng) for n in range(1, 6)]
    for n, delay in enumerate(delays, start=1):
        step = 5.0 * 2 ** (n - 1)
        assert timedelta(seconds=step * 0.5) <= delay <= timedelta(seconds=step)
    assert retry_delay(50, 5.0, rng=rng) <= timedelta(hours=1)


@pytest.mark.parametrize("raw", ["040 123 456", "+386 40 123 456", "00386 40 123456", "040/123-456"])
def test_slovenian_phone_numbers_become_e164(raw):
    assert normalise_phone(raw) == "+38640123456"


@pytest.mark.parametrize("raw", ["123", "not a number", "+386 1"])
def test_bad_phone_numbers_are_refused(raw):
    with pytest.raises(ValueError):
        normalise_phone(raw)


def test_sentences_end_once():
    assert end_sentence("Izklop vode") == "Izklop vode."
    assert end_sentence("Ali potrebujemo prostor v naši KS?") == "Ali potrebujemo prostor v naši KS?"


def test_from_label_names_the_ks_or_the_city():
    assert from_label(["circe"]) == "KS Čirče"
    assert from_label(["*"]) == "Mestna občina Kranj"
    assert from_label(["planina", "zabnica"]) == "KS Planina, Žabnica"


def test_sms_and_email_wording(tmp_path):
    renderer = Renderer(Settings(data_dir=tmp_path, secret_key="k"))
    notice = Notice(
        source="/x",
        source_id="1",
        title="Ali potrebujemo skupni prostor?",
        body="Pridite <b>vsi</b>.",
        ks=["primskovo"],
        channels=["email", "sms"],
    )
    sms = renderer.sms(notice, "sl", "http://k/u/t")
    assert sms.startswith("KS Primskovo: Ali potrebujemo skupni prostor? Pridite")
    assert "?." not in sms and sms.endswith("Odjava: http://k/u/t")
    email = renderer.email(notice, "sl", "http://k/u/t")
    assert "Pridite &lt;b&gt;vsi&lt;/b&gt;." in email.html  # notice text is never markup
    assert "Pridite <b>vsi</b>." in email.text


def test_unsubscribe_tokens_are_signed(tmp_path):
    renderer = Renderer(Settings(data_dir=tmp_path, secret_key="k"))
    token = renderer.unsubscribe_token("sub-1", "email")
    assert renderer.read_unsubscribe_token(token) == ("sub-1", "email")
    assert renderer.read_unsubscribe_token(token[:-2] + "xx") is None
    other = Renderer(Settings(data_dir=tmp_path, secret_key="another key"))
    assert other.read_unsubscribe_token(token) is None


def test_links_are_signed_as_the_library_signs_them(tmp_path):
    """notify's signer keys its HMAC once (render._KeyOnceSigner): the tokens are the ones
    itsdangerous itself makes, so links sent before and after the change open alike."""
    from itsdangerous import URLSafeSerializer

    from services.notify.render import MANAGE_SALT, UNSUBSCRIBE_SALT

    settings = Settings(data_dir=tmp_path, secret_key="k")
    renderer = Renderer(settings)
    assert renderer._signer.make_signer() is renderer._signer.make_signer()  # one signer, its key derived once
    for i in range(3):  # the keyed HMAC is reused: each signature still its own
        plain = URLSafeSerializer(settings.signing_key(), salt=UNSUBSCRIBE_SALT)
        assert plain.loads(renderer.unsubscribe_token(f"sub-{i}", "sms")) == [f"sub-{i}", "sms"]
        assert renderer.unsubscribe_token(f"sub-{i}", "sms").rsplit(".", 1)[1] == plain.dumps(
            [f"sub-{i}", "sms"]
        ).rsplit(".", 1)[1]
        manage = URLSafeSerializer(settings.signing_key(), salt=MANAGE_SALT)
        assert renderer.read_manage_token(manage.dumps(f"sub-{i}")) == f"sub-{i}"
        assert manage.loads(renderer.manage_token(f"sub-{i}")) == f"sub-{i}"


def test_link_payloads_are_the_librarys_json_for_any_string(tmp_path):
    """Links' payloads are written by orjson (render._LinkSerializer): byte for byte the
    library's compact JSON, escapes and non-ASCII included; what is not a string or a list
    of them goes through the library, and a lone surrogate is refused as the library does."""
    from itsdangerous import URLSafeSerializer

    from services.notify.render import UNSUBSCRIBE_SALT, _LinkSerializer

    settings = Settings(data_dir=tmp_path, secret_key="k")
    ours = _LinkSerializer(settings.signing_key(), salt=UNSUBSCRIBE_SALT)
    library = URLSafeSerializer(settings.signing_key(), salt=UNSUBSCRIBE_SALT)
    odd = ["", "6996e032-6a11-4f4e-ac96-37bb18aa30ba", 'a"b\\c', "\n\r\t\b\f\x00\x1f\x7f", "čšž ŽŠČ €",
           "\u2028\u2029", "😀", "</script>&'"]  # fmt: skip
    payloads: list[object] = [*odd, *([s, "sms"] for s in odd), [], ["a", 1], {"a": "b"}, 7, None]
    for payload in payloads:
        token = ours.dumps(payload)
        assert token.rsplit(".", 1)[0] == library.dumps(payload).rsplit(".", 1)[0], payload
        assert library.loads(token) == payload
    for serializer in (ours, library):
        with pytest.raises(UnicodeEncodeError):
            serializer.dumps(["\ud800", "sms"])


def test_a_notice_draft_has_every_column_of_notices_with_the_same_defaults():
    """record_notice writes NoticeDraft.row() with a Core insert: a column added to Notice
    and not to the draft would be left to the database (NULL, or a failed insert)."""
    from services.notify.models import NoticeDraft

    draft = NoticeDraft(source="/t", source_id="1", title="Naslov", body="Besedilo")
    columns = {column.name for column in Notice.__table__.columns}  # type: ignore[attr-defined]
    assert set(draft.row()) == columns
    model = Notice(source="/t", source_id="1", title="Naslov", body="Besedilo")
    generated = {"id", "created_at"}  # both made fresh per notice
    assert {k: v for k, v in draft.row().items() if k not in generated} == {
        name: getattr(model, name) for name in columns - generated
    }
    assert draft.id != NoticeDraft(source="/t", source_id="1", title="N", body="B").id
    assert draft.created_at.tzinfo is not None
