"""surveys: the staff console's use cases — the list of a KS's surveys with their answer
counts and next step, and building a draft in steps (its details; questions added, moved
and removed one at a time).

The server-side draft of the page builder is the draft survey itself: the first step creates
it with `surveys.create_survey` (the API's use case), each later step rewrites its definition
in one transaction, checked whole by the same `SurveyDefinition` as the API, and only while
the survey is a draft (nobody has answered it yet). The edits themselves are pure functions
of a definition (`with_details`, `with_question`, `moved`, `without`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, delete, func, select

from shared.db import Database
from shared.errors import Bilingual

from .domain import QuestionDef, SurveyDefinition
from .models import Option, Question, Response, Survey
from .surveys import Conflict, definition_of, locked, write_questions

NOT_A_DRAFT = Bilingual(
    "Anketa ni več osnutek: ko je odprta, vprašanj ni več mogoče spreminjati.",
    "The survey is no longer a draft: its questions cannot change once it is open.",
)
LAST_QUESTION = Bilingual(
    "Anketa mora imeti vsaj eno vprašanje: najprej dodajte drugo, nato odstranite to.",
    "A survey needs at least one question.",
)
NO_SUCH_QUESTION = Bilingual("Tega vprašanja v anketi ni.", "No such question in this survey.")


class NotADraft(Conflict):
    """The survey is open or closed: its definition stays as it is (HTTP 409)."""


class EditRefused(Conflict):
    """The edit would leave the survey without questions, or names no question of it."""


# ======================================================================================
# The list
# ======================================================================================
@dataclass(frozen=True)
class Listed:
    survey: Survey
    answers: int


async def staff_list(db: Database, ks: Sequence[str] | None) -> list[Listed]:
    """The surveys of the KS in `ks` (every survey when None), newest first, with their
    numbers of answers."""
    query = (
        select(Survey, func.count(col(Response.id)))
        .join(Response, col(Response.survey_id) == col(Survey.id), isouter=True)
        .group_by(col(Survey.id))
        .order_by(col(Survey.created_at).desc())
    )
    if ks is not None:
        query = query.where(col(Survey.ks).in_(list(ks)))
    async with db.session() as session:
        rows = (await session.exec(query.limit(500))).all()
    return [Listed(survey, int(count)) for survey, count in rows]


# ======================================================================================
# Changing a draft
# ======================================================================================
async def change_draft(db: Database, survey_id: str, change: Callable[[SurveyDefinition], SurveyDefinition]) -> Survey:
    """Apply `change` to the definition of a draft survey and store the result, in one
    transaction with the survey locked. Raises NotFound, NotADraft, EditRefused, or the
    pydantic ValidationError of a definition that is not valid (nothing is stored then)."""
    async with db.session() as session:
        survey = await locked(db, session, survey_id)
        if survey.status != "draft":
            raise NotADraft(NOT_A_DRAFT)
        before = await definition_of(session, survey)
        after = change(before)
        for name in ("ks", "title", "description", "title_en", "description_en", "opens_at", "closes_at"):
            setattr(survey, name, getattr(after, name))
        session.add(survey)
        await session.exec(delete(Option).where(col(Option.survey_id) == survey_id))
        await session.exec(delete(Question).where(col(Question.survey_id) == survey_id))
        await session.flush()
        await write_questions(session, survey_id, after)
        await session.commit()
    return survey


def _checked(definition: SurveyDefinition, **changes: Any) -> SurveyDefinition:
    """The definition with `changes`, validated whole (raises pydantic's ValidationError)."""
    data = definition.model_dump()
    data.update(changes)
    return SurveyDefinition.model_validate(data)


def with_details(
    definition: SurveyDefinition,
    *,
    ks: str,
    title: str,
    description: str,
    opens_at: datetime | None,
    closes_at: datetime | None,
) -> SurveyDefinition:
    """New title, KS, introduction and answering window; an English title or introduction
    that no longer matches a changed Slovenian one is dropped (the form falls back to it)."""
    return _checked(
        definition,
        ks=ks,
        title=title,
        description=description,
        title_en=definition.title_en if title == definition.title else None,
        description_en=definition.description_en if description == definition.description else None,
        opens_at=opens_at,
        closes_at=closes_at,
    )


def next_question_id(definition: SurveyDefinition) -> str:
    """q1, q2 … one more than the highest such id (ids stay put when questions move)."""
    numbers = [int(m.group(1)) for q in definition.questions if (m := re.fullmatch(r"q(\d+)", q.id))]
    return f"q{max([len(definition.questions), *numbers]) + 1}"


def with_question(definition: SurveyDefinition, question: QuestionDef) -> SurveyDefinition:
    """`question` added at the end, with a new id."""
    added = question.model_copy(update={"id": next_question_id(definition)})
    return _checked(definition, questions=[*(q.model_dump() for q in definition.questions), added.model_dump()])


def _index(definition: SurveyDefinition, question_id: str) -> int:
    for index, question in enumerate(definition.questions):
        if question.id == question_id:
            return index
    raise EditRefused(NO_SUCH_QUESTION, status=404)


def moved(definition: SurveyDefinition, question_id: str, up: bool) -> SurveyDefinition:
    """The question one place up (or down); at the top (bottom) it stays where it is."""
    questions = list(definition.questions)
    index = _index(definition, question_id)
    other = index - 1 if up else index + 1
    if 0 <= other < len(questions):
        questions[index], questions[other] = questions[other], questions[index]
    return _checked(definition, questions=[q.model_dump() for q in questions])


def without(definition: SurveyDefinition, question_id: str) -> SurveyDefinition:
    """The definition without the question (never the last one)."""
    index = _index(definition, question_id)
    if len(definition.questions) == 1:
        raise EditRefused(LAST_QUESTION)
    return _checked(definition, questions=[q.model_dump() for i, q in enumerate(definition.questions) if i != index])
