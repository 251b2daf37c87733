"""Issue 19, item 4: the surveys staff console through its forms (httpx on the real app and
broker; the Chromium journey is test_surveys_console_browser.py).

A ks-staff volunteer of Primskovo builds a survey in steps — details and a first question
(the GOV.UK error summary in Slovenian first), questions added, one moved up, one removed
after the confirmation — and every step is stored at once in the draft survey, the same
definition the JSON API reads back. The needs-assessment template is one form. The list
shows only the KS's surveys, with their answers and next step. An open survey's questions
no longer change. On SQLite and PostgreSQL. An organiser gets 403 on every console page and no "Ankete" in the header;
a volunteer cannot build for another KS nor touch another KS's draft.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from staff_login import add_staff, login, post_form
from support.settings import TEST_ADMIN_TOKEN, make_settings
from support.times import local_day

from services.surveys.app import create_app
from services.surveys.staff_forms import input_value

pytestmark = pytest.mark.integration

VOLUNTEER = "tajnica@ks-primskovo.si"
ORGANISER = "drustvo@example.si"
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
HTML = {"accept": "text/html"}
LIST = "/surveys/osebje"
NEW = "/surveys/osebje/nova"


def first_step(**values: Any) -> dict[str, Any]:
    return {
        "ks": "primskovo",
        "title": "Kaj bi radi v domu krajanov?",
        "description": "Anketa je kratka in anonimna.",
        "opens_at": "",
        "closes_at": input_value(local_day(14, hour=20)),
        "q_text": "Kako pogosto bi prišli v dom krajanov?",
        "q_type": "single",
        "q_options": "Vsak teden\nVsak mesec\nRedko\n",
        "q_help": "",
        "q_required": "da",
        **values,
    }


@pytest.fixture
async def app(tmp_path, amqp_url, database_url):
    app = create_app(make_settings(tmp_path, amqp_url, surveys_database_url=database_url))
    async with app.router.lifespan_context(app):
        accounts = app.state.ctx.accounts
        await add_staff(accounts, VOLUNTEER, "ks-staff", ["primskovo"])
        await add_staff(accounts, ORGANISER, "organiser", ["primskovo"])
        yield app


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")


async def test_a_volunteer_builds_a_survey_step_by_step(app):
    async with client_of(app) as client:
        await login(client, VOLUNTEER)
        page = await client.get(LIST)
        assert page.status_code == 200 and f'href="{NEW}"' in page.text
        assert 'href="/surveys/osebje" aria-current="page">Ankete' in page.text  # the header, this section

        # Nothing filled in: the error summary, each message linked to its field, nothing stored.
        wrong = await post_form(client, NEW, None, first_step(title="", q_type="", q_options="", closes_at="x"))
        assert wrong.status_code == 422
        assert "<title>Napaka: Sestavite svojo anketo · Kranj ZA vse</title>" in wrong.text
        for anchor, message in (
            ("#title", "Vpišite naslov ankete"),
            ("#closes_at", "Vpišite datum in uro konca"),
            ("#q-type", "Izberite, kako krajani odgovorijo"),
        ):
            assert f'<a href="{anchor}">{message}' in wrong.text, anchor
        assert 'value="Kako pogosto bi prišli v dom krajanov?"' not in wrong.text  # a textarea keeps it as text
        assert "Kako pogosto bi prišli v dom krajanov?</textarea>" in wrong.text
        one_option = await post_form(client, NEW, None, first_step(q_options="Samo ena"))
        assert one_option.status_code == 422 and "Vpišite vsaj dve možnosti" in one_option.text
        assert (await client.get("/api/v1/surveys", headers=ADMIN)).json() == []

        created = await post_form(client, NEW, None, first_step())
        assert created.status_code == 303, created.text[:400]
        editor = created.headers["location"].split("?")[0]
        sid = editor.split("/")[2]
        assert editor == f"/surveys/{sid}/staff/uredi"
        shown = await client.get(created.headers["location"])
        assert "Osnutek ankete je shranjen s prvim vprašanjem" in shown.text

        for text, kind, options in (
            ("Katere dejavnosti pogrešate?", "multiple", "Telovadba\nDelavnice\nPevske vaje"),
            ("Kaj bi še povedali?", "text", ""),
        ):
            step = {"q_text": text, "q_type": kind, "q_options": options, "q_help": "", "q_required": ""}
            added = await post_form(client, editor, f"/surveys/{sid}/staff/vprasanja", step)
            assert added.status_code == 303 and "done=dodano" in added.headers["location"]
        bad = await post_form(
            client,
            editor,
            f"/surveys/{sid}/staff/vprasanja",
            {"q_text": "Ocena?", "q_type": "scale", "q_options": "a\nb"},
        )
        assert bad.status_code == 422 and "Lestvica in prosto besedilo nimata možnosti" in bad.text

        # The third question one place up; then the first removed, after the question.
        moved = await post_form(
            client, editor, f"/surveys/{sid}/staff/vprasanja/premik", {"vprasanje": "q3", "smer": "gor"}
        )
        assert moved.status_code == 303
        definition = (await client.get(f"/api/v1/surveys/{sid}", headers=ADMIN)).json()
        assert [q["text"] for q in definition["questions"]] == [
            "Kako pogosto bi prišli v dom krajanov?",
            "Kaj bi še povedali?",
            "Katere dejavnosti pogrešate?",
        ]
        assert definition["status"] == "draft" and definition["closes_at"] is not None
        assert definition["questions"][0]["required"] is True
        assert [o["text"] for o in definition["questions"][2]["options"]] == ["Telovadba", "Delavnice", "Pevske vaje"]

        asked = await post_form(client, editor, f"/surveys/{sid}/staff/vprasanja/odstrani", {"vprasanje": "q1"})
        assert asked.status_code == 200 and "Ali res želite odstraniti vprašanje »Kako pogosto" in asked.text
        assert len((await client.get(f"/api/v1/surveys/{sid}", headers=ADMIN)).json()["questions"]) == 3
        action = f"/surveys/{sid}/staff/vprasanja/odstrani?vprasanje=q1"
        assert f'action="{action}"' in asked.text
        removed = await post_form(client, editor, action, {"potrdi": "da"})
        assert removed.status_code == 303
        questions = (await client.get(f"/api/v1/surveys/{sid}", headers=ADMIN)).json()["questions"]
        assert [q["id"] for q in questions] == ["q3", "q2"]

        # The details again: a closing time before the opening one is refused; a new title is kept.
        details = first_step(
            title="Dom krajanov: vaše želje",
            opens_at=input_value(local_day(3, hour=8)),
            closes_at=input_value(local_day(2, hour=8)),
        )
        late = await post_form(client, editor, editor, details)
        assert late.status_code == 422 and '<a href="#closes_at">Konec mora biti za začetkom.' in late.text
        saved = await post_form(client, editor, editor, {**details, "closes_at": input_value(local_day(20, hour=8))})
        assert saved.status_code == 303
        assert (await client.get(f"/api/v1/surveys/{sid}", headers=ADMIN)).json()["title"] == "Dom krajanov: vaše želje"

        listed = await client.get(LIST)
        assert "Dom krajanov: vaše želje" in listed.text and "Naslednji korak: preglejte vprašanja" in listed.text

        # Once open, the questions stay as they are: the builder sends back to the survey's page.
        assert (await post_form(client, f"/surveys/{sid}/staff", f"/surveys/{sid}/staff/open", {})).status_code == 303
        late_add = await post_form(
            client, f"/surveys/{sid}/staff", f"/surveys/{sid}/staff/vprasanja", {"q_text": "Še?", "q_type": "text"}
        )
        assert late_add.status_code == 303 and late_add.headers["location"] == f"/surveys/{sid}/staff"
        assert len((await client.get(f"/api/v1/surveys/{sid}")).json()["questions"]) == 2
        listed = await client.get(LIST)
        assert "Odprte ankete (1)" in listed.text and "0 odgovorov" in listed.text


async def test_the_template_in_one_form_and_the_list_of_ones_own_ks(app):
    other = await httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t").post(
        "/api/v1/surveys", json={"template": "needs-assessment", "ks": "huje"}, headers=ADMIN
    )
    assert other.status_code == 201
    async with client_of(app) as client:
        await login(client, VOLUNTEER)
        form = await client.get(f"{LIST}/predloga")
        assert form.status_code == 200 and "Ali v vaši krajevni skupnosti potrebujemo skupnostni prostor" in form.text
        assert 'value="huje"' not in form.text  # only her own KS is offered
        created = await post_form(client, f"{LIST}/predloga", None, {"ks": "primskovo", "title": ""})
        assert created.status_code == 303 and created.headers["location"].endswith("/staff?done=created")
        sid = created.headers["location"].split("/")[2]
        survey = (await client.get(f"/api/v1/surveys/{sid}", headers=ADMIN)).json()
        assert survey["title"] == "Skupnostni prostor v KS Primskovo: kaj potrebujemo?"
        assert [q["id"] for q in survey["questions"]] == ["need", "what", "existing", "who", "take-part"]
        page = await client.get(created.headers["location"])
        assert "Osnutek ankete je shranjen" in page.text and f'href="/surveys/{sid}/staff/uredi"' in page.text

        listed = await client.get(LIST)
        assert "Skupnostni prostor v KS Primskovo" in listed.text and "Huje" not in listed.text
        # Another KS: not to be built for, not to be opened or edited.
        refused = await post_form(client, f"{LIST}/predloga", None, {"ks": "huje"})
        assert refused.status_code == 403
        huje = other.json()["id"]
        for path in (f"/surveys/{huje}/staff", f"/surveys/{huje}/staff/uredi", f"/surveys/{huje}/paper"):
            assert (await client.get(path)).status_code == 403, path
        assert (
            await post_form(client, LIST, f"/surveys/{huje}/staff/vprasanja", {"q_text": "x", "q_type": "text"})
        ).status_code == 403


async def test_an_organiser_has_no_survey_console(app):
    sid = (
        await httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t").post(
            "/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"}, headers=ADMIN
        )
    ).json()["id"]
    async with client_of(app) as organiser:
        await login(organiser, ORGANISER)
        for path in (
            LIST,
            f"{LIST}/predloga",
            NEW,
            f"/surveys/{sid}/staff",
            f"/surveys/{sid}/staff/uredi",
            f"/surveys/{sid}/paper",
        ):
            page = await organiser.get(path, headers=HTML)
            assert page.status_code == 403, path
        built = await post_form(organiser, "/surveys", NEW, first_step())
        assert built.status_code == 403
    async with client_of(app) as nobody:
        away = await nobody.get(LIST, headers=HTML)
        assert away.status_code == 303 and away.headers["location"] == "/login?next=%2Fsurveys%2Fosebje"
