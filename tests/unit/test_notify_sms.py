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
