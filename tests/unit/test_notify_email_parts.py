"""The HTML part of an email (services.notify.render.email_parts): a personal message's last
link line is its one button, an announced event gets its calendar file, and an address
written in a notice's text shows as a short host, never as the long address itself."""

from __future__ import annotations

from services.notify.models import Notice
from services.notify.render import email_parts, short_url

PAGE = "https://kranj.si/events/0b9d2c1e-5f5e-4b7a-9a36-1f0c2a7e4d11"


def test_a_personal_message_s_last_link_line_is_its_button_and_the_calendar_line_a_link() -> None:
    body = (
        "Pozdravljeni!\n\nDodaj v koledar: https://kranj.si/events/x/event.ics\n\n"
        "Če ne morete priti, se odjavite.\nOdjava z dogodka: https://kranj.si/k/abcdefgh123456"
    )
    parts = email_parts(Notice(kind="personal", source="/t", source_id="1", title="T", body=body, url=PAGE))
    assert (parts["action"].label, parts["action"].url) == ("Odjava z dogodka", "https://kranj.si/k/abcdefgh123456")
    assert parts["calendar_url"] == "https://kranj.si/events/x/event.ics" and parts["calendar_extra"] is None
    assert [link.url for link in parts["links"]] == [PAGE]  # the page stays a plain link
    assert [str(p) for p in parts["body_html"]] == ["Pozdravljeni!", "Če ne morete priti, se odjavite."]


def test_an_announced_event_s_page_is_the_button_and_its_file_is_added() -> None:
    notice = Notice(kind="event", source="/t", source_id="1", title="T", body="Pridite.", url=PAGE)
    parts = email_parts(notice)
    assert parts["action"].url == PAGE and parts["action"].label == ""
    assert parts["calendar_extra"] == parts["calendar_url"] == PAGE + "/event.ics"


def test_an_address_in_the_text_shows_short() -> None:
    long = "https://komunala-kranj.si/obvestila/izklopi-vode/2026/primskovo-cesta-staneta-zagarja?vir=kranj"
    notice = Notice(source="/t", source_id="1", title="T", body=f"Podrobnosti: {long}.\nHvala <b>vsem</b>.")
    [html] = [str(p) for p in email_parts(notice)["body_html"]]
    assert html == (
        f'Podrobnosti: <a href="{long.replace("&", "&amp;")}">komunala-kranj.si/…</a>.<br>\n'
        "Hvala &lt;b&gt;vsem&lt;/b&gt;."
    )
    assert short_url("https://kranj.si") == "kranj.si"
