"""Use cases of the surveys service (reading surveys for now; templates, answers and
results come with their own rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlmodel import col, select

from shared.db import Database

from .models import Survey

SOURCE = "/kranj/surveys"
STATUSES = ("draft", "open", "closed")


class NotFound(Exception):
    pass


class SurveyOut(BaseModel):
    id: str
    ks: str = Field(description='KS slug, or "*" for a city-wide survey.')
    title: str
    status: Literal["draft", "open", "closed"]
    created_at: datetime
    questions: list[dict[str, object]] = Field(
        default_factory=list,
        description="Each with `id`, `type` (single, multiple, scale, text), `text` and, for choices, `options`.",
    )


def to_out(survey: Survey) -> SurveyOut:
    return SurveyOut(
        id=survey.id,
        ks=survey.ks,
        title=survey.title,
        status=survey.status,
        created_at=survey.created_at,  # type: ignore[arg-type]
    )


async def get_survey(db: Database, survey_id: str) -> Survey:
    async with db.session() as session:
        survey = await session.get(Survey, survey_id)
    if survey is None:
        raise NotFound(survey_id)
    return survey


async def list_open(db: Database, limit: int = 200) -> list[Survey]:
    async with db.session() as session:
        query = select(Survey).where(Survey.status == "open").order_by(col(Survey.created_at).desc()).limit(limit)
        rows = (await session.exec(query)).all()
    return list(rows)
