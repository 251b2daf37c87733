"""SMS encoding and segments by 3GPP TS 23.038, transliteration and the segment cap."""

from __future__ import annotations

import pytest

from services.notify.models import Notice
from services.notify.render import Renderer
from services.notify.sms import best_encoding, encoding, fit, segments, transliterate
from shared.settings import Settings


@pytest.mark.parametrize(
    ("text", "enc", "units", "count"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("č" * 70, "UCS-2", 70, 1),
        ("č" * 71, "UCS-2", 71, 2),
        ("ž" * 134, "UCS-2", 134, 2),
        ("ž" * 135, "UCS-2", 135, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters count two
        ("€" * 81, "GSM-7", 162, 2),
        ("^{}\\[~]|", "GSM-7", 16, 1),
        ("Pozdravljeni, ÄÖÑÜ à è é ù ì ò", "GSM-7", 30, 1),  # in the basic table
        ("🙂" * 35, "UCS-2", 70, 1),  # a surrogate pair is two units
    ],
)
def test_segment_table(text, enc, units, count):
    info = segments(text)
    assert (info.encoding, info.units, info.segments) == (enc, units, count)


@pytest.mark.parametrize("letter", list("čšžćđČŠŽĆĐ"))
def test_each_slovenian_letter_forces_ucs2(letter):
    assert encoding("Kranj " + letter) == "UCS-2"
    assert encoding(transliterate("Kranj " + letter)) == "GSM-7"


def test_extension_pair_never_splits_across_segments():
    # 152 plain + one € (2 septets) = 154 > 153: the € moves whole into the second segment
    assert segments("a" * 152 + "€" + "a" * 10).segments == 2
    assert segments("a" * 152 + "€" * 77).segments == 3


def test_transliteration_never_yields_question_marks():
    text = "Čirče, Šenčur, Žabnica, Ćosić, Đurđa: „narekovaji“ in ‚enojni‘ – pomišljaj… ♥ 🙂"
    plain = transliterate(text)
    assert "?" not in plain
    assert plain.startswith('Circe, Sencur, Zabnica, Cosic, Djurdja: "narekovaji" in \'enojni\' - pomisljaj...')


def test_original_kept_when_it_fits_one_segment_else_transliterated_when_cheaper():
    short = "Voda v Čirčah"
    assert best_encoding(short).text == short
    long = "Izklop vode v Čirčah, Šmarjetni gori in Žabnici " * 2
    info = best_encoding(long)
    assert info.transliterated and info.encoding == "GSM-7" and info.segments == 1


def test_long_text_is_shortened_at_a_word_boundary_to_the_cap():
    body = " ".join(f"beseda{i}" for i in range(200))
    info = fit(lambda b: f"KS Center: Obvestilo. {b} https://kranj.si/o/1", body, 3)
    assert info.segments <= 3
    assert info.text.endswith("... https://kranj.si/o/1")
    cut = info.text.removeprefix("KS Center: Obvestilo. ").removesuffix("... https://kranj.si/o/1")
    assert cut.split()[-1].startswith("beseda")  # whole words only
    assert body.startswith(cut)


def test_renderer_sms_respects_the_configured_cap(tmp_path):
    renderer = Renderer(Settings(data_dir=tmp_path, secret_key="k", sms_max_segments=2))
    notice = Notice(source="/t", source_id="1", title="Zapora ceste", body="Dela na cesti. " * 60, ks=["zabnica"])
    info = renderer.sms_info(notice, "sl", "https://kranj.si/u/t")
    assert info.segments <= 2 and info.encoding == "GSM-7"
    assert info.text.startswith("KS Zabnica: Zapora ceste.")  # Ž transliterated to keep GSM-7
    assert info.text.endswith("Odjava: https://kranj.si/u/t")


@pytest.mark.parametrize(
    "body",
    [
        "Jutri od 8. do 12. ure ne bo vode.",  # one segment, GSM-7
        "Zaradi del na vodovodu v Žabnici ne bo vode. " * 3,  # transliterated to stay cheaper
        "Dela na cesti. " * 60,  # shortened to the cap
        "Voda 🙂 jutri ni pitna. " * 8,  # UCS-2 either way
        "¤¤¤ a notice that holds the mark character ¤",  # no shortcut: rendered per recipient
    ],
)
def test_sms_renderer_gives_each_recipient_what_sms_gives(tmp_path, body):
    """The fan-out's SMS text, fitted once per notice and length of link, is the text
    `Renderer.sms` fits for each recipient: same words, same cut, same encoding."""
    renderer = Renderer(Settings(data_dir=tmp_path, secret_key="k", sms_max_segments=2))
    notice = Notice(source="/t", source_id="1", title="Obvestilo", body=body, ks=["zabnica"], urgency="urgent")
    fast = renderer.sms_renderer(notice, "sl")
    for subscriber in ("a", "sub-000123", "0f8c2d4e-7b1d-4c59-9d7a-1d2b1f7e9a10", "sub-000124", "b"):
        link = renderer.unsubscribe_url(subscriber, "sms")
        assert fast(link) == renderer.sms(notice, "sl", link)
        assert link in fast(link)
    assert fast(None) == renderer.sms(notice, "sl", None)


def test_signed_links_verify_in_either_form(tmp_path):
    """Links are now signed without the zlib attempt; links already sent (the library's
    own form, compressed where that was shorter) still open."""
    from itsdangerous import URLSafeSerializer

    from services.notify.render import MANAGE_SALT, UNSUBSCRIBE_SALT

    settings = Settings(data_dir=tmp_path, secret_key="k")
    renderer = Renderer(settings)
    old_unsubscribe = URLSafeSerializer(settings.signing_key(), salt=UNSUBSCRIBE_SALT)
    old_manage = URLSafeSerializer(settings.signing_key(), salt=MANAGE_SALT)
    long_id = "x" * 300  # compresses: the old form starts with "."
    for subscriber in ("sub-1", long_id):
        assert renderer.read_unsubscribe_token(old_unsubscribe.dumps([subscriber, "email"])) == (subscriber, "email")
        assert renderer.read_manage_token(old_manage.dumps(subscriber)) == subscriber
        assert renderer.read_unsubscribe_token(renderer.unsubscribe_token(subscriber, "sms")) == (subscriber, "sms")
        assert renderer.read_manage_token(renderer.manage_token(subscriber)) == subscriber
    assert old_manage.dumps(long_id).startswith(".") and not renderer.manage_token(long_id).startswith(".")
    assert renderer.read_manage_token(renderer.manage_token("sub-1")[:-2] + "xx") is None  # tampered
