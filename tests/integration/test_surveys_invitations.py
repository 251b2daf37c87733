"""surveys with personal invitations and the reminder before closing, on SQLite and
PostgreSQL: an invitation answers once (409 "že odgovorili"), a forged one or one for
another survey is refused (400), no invitation keeps the address limit; the English form;
`surveys.survey.closing-soon` announced once across two racing replicas, listing only the
invitees who answered."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import aio_pika
import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select, update
from staff_login import csrf_of
from support.settings import make_settings, wait_until

from services.surveys.app import create_app
from services.surveys.config import SurveysConfig
from services.surveys.models import InvitationUsed, Survey
from services.surveys.surveys import remind_closing_soon
from shared.contracts import parse_data, parse_envelope
from shared.contracts.surveys import SURVEY_CLOSING_SOON
from shared.db import Database
from shared.invitations import make_invitation
from shared.models import OutboxMessage, utcnow

pytestmark = pytest.mark.integration

STAFF = {"Authorization": "Bearer test-admin-token"}
ANSWER = {"need": "yes", "what": ["youth"]}


@pytest.fixture
async def surveys(tmp_path, amqp_url, database_url):
    settings = make_settings(tmp_path, amqp_url, surveys_database_url=database_url)
    # The service's own reminder job looks only 36 s ahead here: the test drives the replicas itself.
    config = SurveysConfig(close_check_seconds=0.2, reminder_hours_before=0.01)
    app = create_app(settings, config=config)
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
                yield client, app, settings, received


async def _open_survey(client, **extra) -> str:
    body = {"template": "needs-assessment", "ks": "primskovo", **extra}
    sid = (await client.post("/api/v1/surveys", json=body, headers=STAFF)).json()["id"]
    assert (await client.post(f"/api/v1/surveys/{sid}/open", headers=STAFF)).status_code == 200
    return sid


async def test_an_invitation_answers_once_forged_and_foreign_ones_are_refused(surveys):
    client, app, settings, _ = surveys
    sid = await _open_survey(client)
    other = await _open_survey(client, ks="huje")
    mine = make_invitation(settings, sid, "invitee-a")

    r = await client.post(f"/api/v1/surveys/{sid}/responses", json={"answers": ANSWER, "invitation": mine})
    assert r.status_code == 201, r.text
    r = await client.post(f"/api/v1/surveys/{sid}/responses", json={"answers": ANSWER, "invitation": mine})
    assert r.status_code == 409 and "že odgovorili" in r.json()["detail"]

    forged = make_invitation(make_settings(settings.data_dir, settings.amqp_url, secret_key="x" * 40), sid, "invitee-z")
    for token in (forged, mine[:-3] + "abc", "not-a-token", make_invitation(settings, other, "invitee-b")):
        r = await client.post(f"/api/v1/surveys/{sid}/responses", json={"answers": ANSWER, "invitation": token})
        assert r.status_code == 400 and "ni veljavna" in r.json()["detail"], (token, r.text)
    # The invitation for the other survey is good there.
    r = await client.post(
        f"/api/v1/surveys/{other}/responses", json={"answers": ANSWER, "invitation": make_invitation(settings, other, "invitee-b")}
    )
    assert r.status_code == 201

    # No invitation: answers from one address are not capped (issue 15: staff see clusters instead).
    for _ in range(3):
        assert (await client.post(f"/api/v1/surveys/{sid}/responses", json={"answers": ANSWER})).status_code == 201
    r = await client.post(
        f"/api/v1/surveys/{sid}/responses", json={"answers": ANSWER, "invitation": make_invitation(settings, sid, "invitee-c")}
    )
    assert r.status_code == 201  # a household sharing one address: each invitation still answers

    # Stored apart from the answers: no response id, the day only.
    async with app.state.ctx.db.session() as session:
        used = (await session.exec(select(InvitationUsed).where(InvitationUsed.survey_id == sid))).all()
    assert sorted(u.invitee for u in used) == ["invitee-a", "invitee-c"]
    assert set(InvitationUsed.model_fields) == {"survey_id", "invitee", "used_at"}
    assert all(u.used_at.hour == u.used_at.minute == u.used_at.second == 0 for u in used)
    assert (await client.get(f"/api/v1/surveys/{sid}/results", headers=STAFF)).json()["response_count"] == 5


async def test_the_public_form_with_a_personal_link(surveys):
    client, app, settings, _ = surveys
    sid = await _open_survey(client)
    token = make_invitation(settings, sid, "invitee-form")
    page = await client.get(f"/surveys/{sid}", params={"t": token})
    assert page.status_code == 200 and f'name="t" value="{token}"' in page.text and "osebnim vabilom" in page.text
    form = {"q.need": "yes", "q.what": "youth", "t": token, "csrf_token": csrf_of(page.text)}
    r = await client.post(f"/surveys/{sid}", data=form)
    assert r.status_code == 303 and r.headers["location"] == f"/surveys/{sid}/hvala#vsebina"
    # The cookie set now does not stop another invitation on this device…
    other = make_invitation(settings, sid, "invitee-form-2")
    assert (await client.post(f"/surveys/{sid}", data={**form, "t": other})).status_code == 303
    # …but the same invitation twice is refused, and the form says so.
    r = await client.post(f"/surveys/{sid}", data=form)
    assert r.status_code == 409 and "že odgovorili" in r.text
    assert "že odgovorili" in (await client.get(f"/surveys/{sid}", params={"t": token})).text
    r = await client.post(f"/surveys/{sid}", data={**form, "t": "forged"})
    assert r.status_code == 400 and "ni veljavna" in r.text
    bad = await client.get(f"/surveys/{sid}", params={"t": "forged"})
    assert bad.status_code == 200 and "ni veljavna" in bad.text and 'name="t"' not in bad.text


async def test_the_english_form(surveys):
    client, app, settings, _ = surveys
    sid = await _open_survey(client)
    default = (await client.get(f"/surveys/{sid}")).text
    assert '<html lang="sl">' in default and "Ali v vaši krajevni skupnosti potrebujemo" in default
    for kwargs in ({"params": {"lang": "en"}}, {"headers": {"Accept-Language": "en-GB,en;q=0.9"}}):
        page = (await client.get(f"/surveys/{sid}", **kwargs)).text
        assert '<html lang="en">' in page
        assert "Does your local community need a community space" in page and "A place for young people" in page
        assert "Send my answers" in page and "Your age (optional)" in page and "I agree that the local community" in page
    # Slovenian stays the default for other languages, and ?lang=sl wins over the header.
    assert '<html lang="sl">' in (await client.get(f"/surveys/{sid}", headers={"Accept-Language": "de-DE"})).text
    assert '<html lang="sl">' in (await client.get(f"/surveys/{sid}?lang=sl", headers={"Accept-Language": "en"})).text

    csrf = csrf_of(default)
    r = await client.post(f"/surveys/{sid}", data={"lang": "en", "q.need": "yes", "csrf_token": csrf})
    assert r.status_code == 422 and '<html lang="en">' in r.text and "An answer is required." in r.text
    r = await client.post(f"/surveys/{sid}", data={"lang": "en", "q.need": "yes", "q.what": "youth", "csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/surveys/{sid}/hvala?lang=en#vsebina"
    thanks = (await client.get(r.headers["location"])).text
    assert "Thank you for your answers!" in thanks

    api = (await client.get(f"/api/v1/surveys/{sid}")).json()
    assert api["title_en"].startswith("A community space in Primskovo")
    need = api["questions"][0]
    assert need["text"].startswith("Ali") and need["text_en"].startswith("Does")
    assert all(o["text_en"] for q in api["questions"] for o in q["options"])


async def _closing_soon_rows(app) -> list[dict]:
    async with app.state.ctx.db.session() as session:
        rows = (await session.exec(select(OutboxMessage))).all()
    envelopes = [json.loads(r.body) for r in rows]
    return [e for e in envelopes if e["type"] == "si.kranj.surveys.survey.closing-soon.v1"]


async def test_closing_soon_once_across_two_replicas_with_the_answered_invitees(surveys):
    client, app, settings, received = surveys
    soon = await _open_survey(client, closes_at=(utcnow() + timedelta(hours=47)).isoformat())
    later = await _open_survey(client, closes_at=(utcnow() + timedelta(hours=72)).isoformat())
    for invitee in ("invitee-b", "invitee-a"):
        r = await client.post(
            f"/api/v1/surveys/{soon}/responses", json={"answers": ANSWER, "invitation": make_invitation(settings, soon, invitee)}
        )
        assert r.status_code == 201
    assert (await client.post(f"/api/v1/surveys/{soon}/responses", json={"answers": ANSWER})).status_code == 201
    # An answer to the other survey with an invitation is not this survey's.
    r = await client.post(
        f"/api/v1/surveys/{later}/responses", json={"answers": ANSWER, "invitation": make_invitation(settings, later, "invitee-x")}
    )
    assert r.status_code == 201

    # A survey opened just now is not reminded yet (its invitation is fresh).
    assert await remind_closing_soon(app.state.ctx.db, settings) == 0
    assert await _closing_soon_rows(app) == []
    async with app.state.ctx.db.session() as session:
        await session.exec(update(Survey).values(opened_at=utcnow() - timedelta(days=5)))
        await session.commit()

    # Two replicas (two engines on the same database) run the job at the same moment, twice.
    url = app.state.ctx.db.url
    replicas = [Database(url), Database(url)]
    try:
        runs = [remind_closing_soon(db, settings) for db in replicas for _ in range(2)]
        counts = await asyncio.gather(*runs)
    finally:
        for db in replicas:
            await db.dispose()
    assert sum(counts) == 1, counts

    rows = await _closing_soon_rows(app)
    assert len(rows) == 1
    event = parse_envelope(json.dumps(rows[0]).encode())
    data = parse_data(event, SURVEY_CLOSING_SOON)
    assert event.subject == soon and data.survey_id == soon and data.ks == "primskovo"
    assert data.answered_invitees == ["invitee-a", "invitee-b"]  # only this survey's, never "invitee-x"
    assert data.response_count == 3 and data.topic == "surveys" and data.language == "sl"
    assert str(data.url).endswith(f"/surveys/{soon}") and data.title.startswith("Skupnostni prostor")
    assert abs((data.closes_at - (utcnow() + timedelta(hours=47))).total_seconds()) < 120
    async with app.state.ctx.db.session() as session:
        assert (await session.get(Survey, soon)).reminder_sent_at is not None
        assert (await session.get(Survey, later)).reminder_sent_at is None
        columns = {c["name"] for c in await session.run_sync(lambda s: sa.inspect(s.connection()).get_columns("survey_invitations_used"))}
    assert columns == {"survey_id", "invitee", "used_at"}  # nothing links an invitation to its answers
    assert await remind_closing_soon(app.state.ctx.db, settings) == 0
    await wait_until(
        lambda: any(m["type"].endswith("survey.closing-soon.v1") for m in received), timeout=15, message="closing-soon on the broker"
    )
    assert sum(m["type"].endswith("survey.closing-soon.v1") for m in received) == 1

    # The service's own job does it too (here it looks 36 s ahead).
    quick = await _open_survey(client, closes_at=(utcnow() + timedelta(seconds=20)).isoformat())
    async with app.state.ctx.db.session() as session:
        await session.exec(update(Survey).where(Survey.id == quick).values(opened_at=utcnow() - timedelta(days=1)))
        await session.commit()

    async def two() -> bool:
        return len(await _closing_soon_rows(app)) == 2

    await wait_until(two, timeout=10, interval=0.1, message="the background job's closing-soon")
