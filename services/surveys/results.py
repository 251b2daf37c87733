"""surveys: reading the results — every response's answers tallied (tally.py), and the
clusters of web answers from one address that staff are shown beside them."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from shared.db import Database

from . import domain, tally
from .domain import SurveyDefinition
from .models import Answer, Response, Survey
from .surveys import NotFound, definition_of


async def results(db: Database, survey_id: str) -> tuple[Survey, SurveyDefinition, tally.Results]:
    async with db.session() as session:
        survey = await session.get(Survey, survey_id)
        if survey is None:
            raise NotFound(survey_id)
        definition = await definition_of(session, survey)
        responses = (await session.exec(select(Response).where(Response.survey_id == survey_id))).all()
        answers = (await session.exec(select(Answer).where(Answer.survey_id == survey_id))).all()
    types = {q.id: q.type for q in definition.questions}
    by_response: dict[str, dict[str, Any]] = {r.id: {} for r in responses}
    for a in answers:
        given = by_response.setdefault(a.response_id, {})
        kind = types.get(a.question_id)
        if kind == "multiple":
            given.setdefault(a.question_id, []).append(a.option_id)
        elif kind == "single":
            given[a.question_id] = a.option_id
        elif kind == "scale":
            given[a.question_id] = a.number
        elif kind == "text":
            given[a.question_id] = a.text
    data = [
        tally.ResponseData(answers=by_response[r.id], age_band=r.age_band, ks=r.ks, channel=r.channel)
        for r in sorted(responses, key=lambda r: r.created_at)
    ]
    return survey, definition, tally.compute_results(definition, data)


async def answer_clusters(db: Database, survey_id: str, threshold: int) -> list[domain.Cluster]:
    """Suspicious clusters of web answers: many from one address in 10 minutes (domain.answer_clusters)."""
    async with db.session() as session:
        rows = (
            await session.exec(
                select(Response.fingerprint, Response.created_at, Response.browser).where(
                    Response.survey_id == survey_id, Response.channel == "web"
                )
            )
        ).all()
    return domain.answer_clusters([(fp, at, browser is not None) for fp, at, browser in rows], threshold)
