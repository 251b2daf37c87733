"""surveys over HTTP with the real broker, on SQLite and PostgreSQL: the template, the
answering window, validation 422s naming the question, stuffing shown to staff as clusters,
results and CSV that match the answers given, and the outbox messages (valid CloudEvents
of the right types, relayed to the broker)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import aio_pika
import httpx
import pytest
from sqlmodel import select
from staff_login import form_token
from support.settings import make_settings, wait_until

from services.surveys.app import create_app
from services.surveys.config import SurveysConfig
from services.surveys.models import Survey
from shared.contracts import parse_data, parse_envelope
from shared.contracts.surveys import SURVEYS_MESSAGE_TYPES
from shared.models import OutboxMessage, utcnow

pytestmark = pytest.mark.integration

STAFF = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
async def surveys(tmp_path, amqp_url, database_url):
    """(client, app, received): the surveys service on `database_url` and the real broker;
    `received` collects every surveys.* message that reaches the exchange."""
    settings = make_settings(tmp_path, amqp_url, surveys_database_url=database_url)
    app = create_app(settings, config=SurveysConfig(close_check_seconds=0.2))
    received: list[dict] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("kranj", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue("test.surveys", exclusive=True)
        await queue.bind(exchange, "surveys.#")

        async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                received.append(json.loads(message.body))

        await queue.consume(collect)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://surveys.test") as client:
                yield client, app, received


async def outbox(app) -> list[dict]:
    async with app.state.ctx.db.session() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(OutboxMessage.created_at))).all()
    return [json.loads(r.body) for r in rows]


async def test_needs_survey_from_template_to_published_results(surveys):
    client, app, received = surveys
    assert (await client.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"})).status_code == 401
    r = await client.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"}, headers=STAFF)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]

    survey = (await client.get(f"/api/v1/surveys/{sid}", headers=STAFF)).json()
    assert [q["id"] for q in survey["questions"]] == ["need", "what", "existing", "who", "take-part"]
    assert {q["type"] for q in survey["questions"]} == {"single", "multiple", "text"}
    assert all({"id", "text"} <= set(o) for q in survey["questions"] for o in q["options"])

    answer = {"answers": {"need": "yes", "what": ["youth"]}}
    r = await client.post(f"/api/v1/surveys/{sid}/responses", json=answer)
    assert r.status_code == 409 and "ni odprta" in r.json()["detail"]

    assert (await client.post(f"/api/v1/surveys/{sid}/open", headers=STAFF)).json()["status"] == "open"
    assert (await client.post(f"/api/v1/surveys/{sid}/open", headers=STAFF)).status_code == 200  # idempotent

    given = [
        ({"need": "yes", "what": ["youth", "culture"], "existing": "Pevski zbor išče prostor."}, "15-29"),
        ({"need": "yes", "what": ["intergenerational"], "who": ["attend", "lead"]}, "65+"),
        ({"need": "maybe", "what": ["culture"]}, None),
    ]
    for answers, band in given:
        body = {"answers": answers, **({"age_band": band} if band else {})}
        r = await client.post(f"/api/v1/surveys/{sid}/responses", json=body)
        assert r.status_code == 201, r.text
    # A paper answer entered by staff, with a take-part consent.
    paper = {
        "answers": {"need": "no", "what": ["exercise"], "take-part": "yes"},
        "age_band": "50-64",
        "channel": "paper",
        "contact": {"name": "Marija", "phone": "040 123 456", "consent": True},
    }
    assert (await client.post(f"/api/v1/surveys/{sid}/responses", json=paper)).status_code == 401
    r = await client.post(f"/api/v1/surveys/{sid}/responses", json=paper, headers=STAFF)
    assert r.status_code == 201 and r.json()["volunteered"] is True

    # Validation: each 422 names the question.
    for body, words in [
        ({"answers": {"need": "yes", "what": ["youth"], "nope": "x"}}, "nope"),
        ({"answers": {"need": "perhaps", "what": ["youth"]}}, "need: možnosti 'perhaps' ni"),
        ({"answers": {"need": "yes"}}, "what: odgovor je obvezen"),
        ({"answers": {"need": "yes", "what": "youth"}}, "what: odgovor mora biti seznam"),
        ({"answers": {"need": "yes", "what": ["youth"]}, "age_band": "10-14"}, "age_band"),
        ({"answers": {"need": "yes", "what": ["youth"]}, "contact": {"email": "a@b.si"}}, "consent"),
    ]:
        r = await client.post(f"/api/v1/surveys/{sid}/responses", json=body)
        assert r.status_code == 422 and words in r.json()["detail"], (body, r.text)

    r = await client.get(f"/api/v1/surveys/{sid}/results")
    assert r.status_code == 401
    results = (await client.get(f"/api/v1/surveys/{sid}/results", headers=STAFF)).json()
    assert results["response_count"] == 4
    assert results["by_age_band"] == {"0-14": 0, "15-29": 1, "30-49": 0, "50-64": 1, "65+": 1, "unknown": 1}
    assert results["by_channel"] == {"web": 3, "paper": 1} and results["by_ks"] == {"primskovo": 4}
    need = results["questions"][0]
    assert {o["id"]: (o["count"], o["percent"]) for o in need["options"]} == {
        "yes": (2, 50.0), "maybe": (1, 25.0), "no": (1, 25.0), "dont-know": (0, 0.0)
    }
    what = {o["id"]: o for o in results["questions"][1]["options"]}
    assert what["culture"]["count"] == 2 and what["culture"]["by_age_band"]["15-29"] == 1
    assert results["questions"][2]["texts"] == ["Pevski zbor išče prostor."]

    r = await client.get(f"/api/v1/surveys/{sid}/results.csv", headers=STAFF)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig")), delimiter=";"))
    yes_row = next(row for row in rows if row[0] == "need" and row[2] == "Da, potrebujemo ga")
    assert yes_row[3:5] == ["2", "50,0"]
    culture = next(row for row in rows if row[0] == "what" and row[2].startswith("Kulturni dogodki"))
    assert culture[3:5] == ["2", "50,0"]  # 2 of the 4 who answered "what"
    youth = next(row for row in rows if row[0] == "what" and row[2] == "Prostor za mlade")
    assert youth[3:5] == ["1", "25,0"]
    assert (await client.post(f"/api/v1/surveys/{sid}/close", headers=STAFF)).json()["status"] == "closed"
    r = await client.post(f"/api/v1/surveys/{sid}/responses", json={"answers": {"need": "yes", "what": ["youth"]}})
    assert r.status_code == 409 and "zaprta" in r.json()["detail"]
    assert (await client.post(f"/api/v1/surveys/{sid}/open", headers=STAFF)).status_code == 409

    assert (await client.get(f"/surveys/{sid}/results")).status_code == 404
    assert (await client.post(f"/api/v1/surveys/{sid}/results/publish", headers=STAFF)).json()["results_published"]
    page = await client.get(f"/surveys/{sid}/results")
    assert page.status_code == 200 and "Pevski zbor" not in page.text  # no free text in public

    # The outbox: valid CloudEvents of the right types, in the right order, all relayed.
    envelopes = await outbox(app)
    types = [e["type"] for e in envelopes]
    assert types == [
        "si.kranj.surveys.survey.opened.v1",
        "si.kranj.surveys.respondent.volunteered.v1",
        "si.kranj.surveys.survey.closed.v1",
        "si.kranj.surveys.results.published.v1",
    ]
    by_type = {t.type: t for t in SURVEYS_MESSAGE_TYPES}
    datas = {}
    for envelope in envelopes:
        event = parse_envelope(json.dumps(envelope).encode())
        assert event.source == "/kranj/surveys" and event.subject == sid
        datas[event.type] = parse_data(event, by_type[event.type])
    opened = datas["si.kranj.surveys.survey.opened.v1"]
    assert opened.ks == "primskovo" and str(opened.url).endswith(f"/surveys/{sid}") and opened.question_count == 5
    volunteered = datas["si.kranj.surveys.respondent.volunteered.v1"]
    assert volunteered.phone == "+38640123456" and volunteered.channels == ["sms"] and volunteered.ks == "primskovo"
    assert volunteered.topic == "surveys" and volunteered.consent_source == "paper" and volunteered.consent_text
    assert "response_id" not in envelopes[1]["data"]  # never linked to the answers
    assert datas["si.kranj.surveys.survey.closed.v1"].response_count == 4
    await wait_until(lambda: len(received) == 4, timeout=15, message="4 surveys.* messages on the broker")
    assert [m["id"] for m in received] == [e["id"] for e in envelopes]


async def test_many_answers_from_one_address_are_taken_and_shown_to_staff_as_a_cluster(surveys):
    """Issue 15: no cap per address (a class shares one); one answer per browser token, and
    staff see clusters of answers from one address (tests/security/test_limits_crowds.py)."""
    client, app, _ = surveys
    sid = (await client.post("/api/v1/surveys", json={"template": "needs-assessment", "ks": "huje"}, headers=STAFF)).json()["id"]
    await client.post(f"/api/v1/surveys/{sid}/open", headers=STAFF)
    body = {"answers": {"need": "yes", "what": ["youth"]}}
    for _ in range(4):
        assert (await client.post(f"/api/v1/surveys/{sid}/responses", json=body)).status_code == 201
    assert (await client.post(f"/api/v1/surveys/{sid}/responses", json={**body, "channel": "paper"}, headers=STAFF)).status_code == 201
    # The public form: a browser token with the page; after the first answer, this browser is done.
    csrf = await form_token(client, f"/surveys/{sid}")
    form = await client.post(f"/surveys/{sid}", data={"q.need": "yes", "q.what": "youth", "csrf_token": csrf})
    assert form.status_code == 303
    again = await client.post(f"/api/v1/surveys/{sid}/responses", json=body)  # the same browser, through the API
    assert again.status_code == 409 and "Iz tega brskalnika" in again.json()["detail"]
    results = (await client.get(f"/api/v1/surveys/{sid}/results", headers=STAFF)).json()
    assert results["response_count"] == 6
    assert [c["count"] for c in results["suspicious_clusters"]] == [5]  # four API + one form, one address
    # No raw address is stored anywhere.
    async with app.state.ctx.db.session() as session:
        from services.surveys.models import Response

        prints = {r.fingerprint for r in (await session.exec(select(Response))).all()}
    assert None in prints and not any("127.0.0.1" in (p or "") or "198.51" in (p or "") for p in prints)


async def test_full_definition_scale_show_if_and_time_window(surveys):
    client, app, received = surveys
    definition = {
        "ks": "*",
        "title": "Kako zadovoljni ste s prostori KS?",
        "closes_at": (utcnow() + timedelta(seconds=2)).isoformat(),
        "questions": [
            {"id": "used", "type": "single", "text": "Ste prostor že uporabljali?", "required": True,
             "options": [{"id": "yes", "text": "Da"}, {"id": "no", "text": "Ne"}]},
            {"id": "score", "type": "scale", "text": "Kako ste bili zadovoljni?", "required": True,
             "show_if": {"question": "used", "option": "yes"}},
        ],
    }
    r = await client.post("/api/v1/surveys", json=definition, headers=STAFF)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    bad = await client.post("/api/v1/surveys", json={**definition, "questions": [{"type": "single", "text": "?", "options": []}]}, headers=STAFF)
    assert bad.status_code == 422
    got = (await client.get(f"/api/v1/surveys/{sid}", headers=STAFF)).json()
    assert got["questions"][1] == {**got["questions"][1], "type": "scale", "min": 1, "max": 5, "options": []}
    await client.post(f"/api/v1/surveys/{sid}/open", headers=STAFF)
    for body, code, words in [
        ({"used": "yes", "score": 6}, 422, "score: odgovor mora biti od 1 do 5"),
        ({"used": "yes"}, 422, "score: odgovor je obvezen"),
        ({"used": "no", "score": 3}, 422, "score"),
        ({"used": "no"}, 201, ""),
        ({"used": "yes", "score": 4}, 201, ""),
    ]:
        r = await client.post(f"/api/v1/surveys/{sid}/responses", json={"answers": body, "ks": "bitnje"})
        assert r.status_code == code and words in r.text, (body, r.text)
    r = await client.post(f"/api/v1/surveys/{sid}/responses", json={"answers": {"used": "no"}, "ks": "ljubljana"})
    assert r.status_code == 422 and "ks" in r.json()["detail"]
    results = (await client.get(f"/api/v1/surveys/{sid}/results", headers=STAFF)).json()
    assert results["by_ks"] == {"bitnje": 2} and results["questions"][1]["mean"] == 4.0
    # The closing time passes: answers are refused, and the service closes and announces it.
    async def refused() -> bool:
        return not (await client.get(f"/api/v1/surveys/{sid}")).json()["accepting_answers"]

    await wait_until(refused, timeout=10, interval=0.2, message="answers refused after closes_at")
    r = await client.post(f"/api/v1/surveys/{sid}/responses", json={"answers": {"used": "no"}})
    assert r.status_code == 409 and "zaprta" in r.json()["detail"]
    await wait_until(lambda: any(m["type"].endswith("survey.closed.v1") for m in received), timeout=10, message="closed")
    async with app.state.ctx.db.session() as session:
        assert (await session.get(Survey, sid)).status == "closed"
    # Not yet open: refused with the opening time.
    future = {**definition, "opens_at": (utcnow() + timedelta(days=1)).isoformat(), "closes_at": None}
    fid = (await client.post("/api/v1/surveys", json=future, headers=STAFF)).json()["id"]
    await client.post(f"/api/v1/surveys/{fid}/open", headers=STAFF)
    r = await client.post(f"/api/v1/surveys/{fid}/responses", json={"answers": {"used": "no"}})
    assert r.status_code == 409 and "se odpre" in r.json()["detail"]
