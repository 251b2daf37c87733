"""Survey invitations with a personal link each (answer once), and the reminder before
closing that skips the invitees who already answered — real broker, SMTP and SQLite/PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from support.settings import make_settings
from support.times import iso, local_day, utc_iso
from test_notify_fanout import publish_plain

from services.notify import notices, subscribers
from services.notify.app import create_app
from shared.contracts.surveys import SURVEY_CLOSING_SOON, SURVEY_OPENED
from shared.invitations import invitee_for, read_invitation

pytestmark = pytest.mark.integration
SURVEY = {
    "survey_id": "s-42",
    "ks": "strazisce",
    "title": "Kaj potrebujemo v Stražišču",
    "url": "http://127.0.0.1:8003/surveys/s-42",
}


async def test_invitations_are_personal_and_the_reminder_skips_who_answered(
    tmp_path, amqp_url, database_url, smtp_server
):
    settings = make_settings(tmp_path, amqp_url, notify_database_url=database_url, **smtp_server.settings())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db = app.state.ctx.db
        ana = await subscribers.add_subscriber(
            db, subscribers.SubscriberIn(email="ana@example.si", ks=["strazisce"], topics=["surveys"])
        )
        await subscribers.add_subscriber(
            db, subscribers.SubscriberIn(email="bor@example.si", ks=["strazisce"], topics=["surveys"])
        )
        opened = SURVEY_OPENED.envelope(
            {
                **SURVEY,
                "print_url": "http://127.0.0.1:8003/surveys/s-42/print",
                "opens_at": utc_iso(),
                "closes_at": iso(local_day(21, 21)),
                "question_count": 5,
            },
            source="/kranj/surveys",
        )
        await publish_plain(amqp_url, json.dumps(opened).encode(), "surveys.survey.opened")
        mails = await smtp_server.wait_for(2)
        tokens = {}
        for mail in mails:
            link = re.search(r"http://127\.0\.0\.1:8003/surveys/s-42\?t=(\S+)", mail.part("text/plain"))
            assert link, mail.part("text/plain")
            survey_id, invitee = read_invitation(settings, link[1])
            assert survey_id == "s-42"
            tokens[mail.rcpt_tos[0]] = invitee
        assert tokens["ana@example.si"] == invitee_for(settings, ana.id)
        assert tokens["ana@example.si"] != tokens["bor@example.si"]

        board = await notices.noticeboard(db, "strazisce")
        assert board[0].url == SURVEY["url"]  # the public board has no personal token

        closing = SURVEY_CLOSING_SOON.envelope(
            {
                **SURVEY,
                "closes_at": iso(local_day(21, 21)),
                "response_count": 1,
                "answered_invitees": [tokens["ana@example.si"]],
            },
            source="/kranj/surveys",
        )
        await publish_plain(amqp_url, json.dumps(closing).encode(), "surveys.survey.closing-soon")
        [_, _, reminder] = await smtp_server.wait_for(3)
        assert reminder.rcpt_tos == ["bor@example.si"]
        assert reminder.subject.startswith("Opomnik: anketa")
        await asyncio.sleep(0.5)  # a reminder to ana would have arrived by now
    assert len(smtp_server.messages) == 3  # ana, who answered, was not reminded
