"""Quizzes, questions and choices as staff author them.

Same scoping as the rest of a course's structure (see ``lms_domain.courses.content``), plus
one rule of its own: learners never see an unpublished quiz, and never see which choice
is correct; the answer key is for the quiz's editors only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_visible
from lms_domain.assessments.models import Question, QuestionChoice, Quiz
from lms_domain.assessments.schemas import (
    MAX_CHOICES,
    ChoiceCreate,
    ChoiceUpdate,
    QuestionCreate,
    QuestionUpdate,
    QuizCreate,
    QuizUpdate,
)
from lms_domain.assessments.service import QuestionWithChoices, with_choices
from lms_domain.clock import Clock
from lms_domain.courses.content import editable_course, readable_course
from lms_domain.courses.models import Course, Section
from lms_domain.courses.schemas import ListQuery
from lms_domain.courses.service import ensure_learner_may_open
from lms_domain.db import apply_changes
from lms_domain.errors import Conflict, InvalidInput, NotFound
from lms_domain.ids import new_id
from lms_domain.pagination import paginate


async def _check_section(session: AsyncSession, course: Course, section_id: uuid.UUID | None) -> None:
    if section_id is None:
        return
    section = await session.get(Section, section_id)
    if section is None or section.deleted_at is not None or section.course_id != course.id:
        raise InvalidInput("the section must belong to the quiz's course", code="section_not_in_course")


# Quizzes


async def list_quizzes(
    *, session: AsyncSession, actor: Actor, course_id: uuid.UUID, query: ListQuery
) -> tuple[Sequence[Quiz], str | None]:
    await readable_course(session=session, actor=actor, course_id=course_id, what="course")
    stmt = sa.select(Quiz).where(Quiz.course_id == course_id, Quiz.deleted_at.is_(None))
    if not actor.is_staff:
        stmt = stmt.where(Quiz.is_published.is_(True))
    return await paginate(session, stmt, Quiz.id, cursor=query.cursor, limit=query.limit)


async def get_quiz(*, session: AsyncSession, actor: Actor, quiz_id: uuid.UUID) -> Quiz:
    """Readable by whoever can read its course; learners only once it is published."""
    quiz = await session.get(Quiz, quiz_id)
    ensure_visible(quiz, actor, catalog=True, what="quiz")
    assert quiz is not None
    if not actor.is_staff and not quiz.is_published:
        raise NotFound("quiz not found")
    await readable_course(session=session, actor=actor, course_id=quiz.course_id, what="quiz")
    return quiz


async def editable_quiz(*, session: AsyncSession, actor: Actor, quiz_id: uuid.UUID) -> tuple[Quiz, Course]:
    quiz = await session.get(Quiz, quiz_id)
    ensure_visible(quiz, actor, catalog=True, what="quiz")
    assert quiz is not None
    return quiz, await editable_course(session=session, actor=actor, course_id=quiz.course_id)


async def create_quiz(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, data: QuizCreate) -> Quiz:
    course = await editable_course(session=session, actor=actor, course_id=course_id)
    await _check_section(session, course, data.section_id)
    quiz = Quiz(id=new_id(), course_id=course.id, institution_id=course.institution_id, **data.model_dump())
    session.add(quiz)
    await session.flush()
    return quiz


async def update_quiz(*, session: AsyncSession, actor: Actor, quiz_id: uuid.UUID, data: QuizUpdate) -> Quiz:
    quiz, course = await editable_quiz(session=session, actor=actor, quiz_id=quiz_id)
    changes = data.model_dump(exclude_unset=True)
    if "section_id" in changes:
        await _check_section(session, course, changes["section_id"])
    apply_changes(quiz, changes)
    await session.flush()
    return quiz


async def delete_quiz(*, session: AsyncSession, actor: Actor, quiz_id: uuid.UUID, clock: Clock) -> None:
    """Its questions stay as they are: reachable only through the quiz, they go with it,
    and attempts already made keep pointing at real rows."""
    quiz, _ = await editable_quiz(session=session, actor=actor, quiz_id=quiz_id)
    quiz.deleted_at = clock.now()
    await session.flush()


# Questions


async def _question_page(
    session: AsyncSession, quiz: Quiz, query: ListQuery
) -> tuple[list[QuestionWithChoices], str | None]:
    stmt = sa.select(Question).where(Question.quiz_id == quiz.id, Question.deleted_at.is_(None))
    questions, cursor = await paginate(session, stmt, Question.id, cursor=query.cursor, limit=query.limit)
    return await with_choices(session=session, questions=questions), cursor


async def list_questions(
    *, session: AsyncSession, actor: Actor, quiz_id: uuid.UUID, query: ListQuery
) -> tuple[list[QuestionWithChoices], str | None]:
    """For anyone who can read the quiz (a paid course's only once enrolled). The rows
    carry ``is_correct``: the caller must present them through the learner view, which
    has no such field."""
    quiz = await get_quiz(session=session, actor=actor, quiz_id=quiz_id)
    course = await session.get(Course, quiz.course_id)  # loaded by get_quiz: no query
    assert course is not None
    await ensure_learner_may_open(session=session, who=actor, course=course)
    return await _question_page(session, quiz, query)


async def answer_key(
    *, session: AsyncSession, actor: Actor, quiz_id: uuid.UUID, query: ListQuery
) -> tuple[list[QuestionWithChoices], str | None]:
    """Questions with their correct choices, for the quiz's editors only."""
    quiz, _ = await editable_quiz(session=session, actor=actor, quiz_id=quiz_id)
    return await _question_page(session, quiz, query)


async def create_question(
    *, session: AsyncSession, actor: Actor, quiz_id: uuid.UUID, data: QuestionCreate
) -> QuestionWithChoices:
    quiz, _ = await editable_quiz(session=session, actor=actor, quiz_id=quiz_id)
    question = Question(
        id=new_id(), quiz_id=quiz.id, institution_id=quiz.institution_id, **data.model_dump(exclude={"choices"})
    )
    session.add(question)
    choices = [
        QuestionChoice(id=new_id(), question_id=question.id, institution_id=quiz.institution_id, **c.model_dump())
        for c in data.choices or []
    ]
    session.add_all(choices)
    await session.flush()
    return QuestionWithChoices(question, sorted(choices, key=lambda c: (c.position, c.id)))


async def _editable_question(session: AsyncSession, actor: Actor, question_id: uuid.UUID) -> Question:
    question = await session.get(Question, question_id)
    ensure_visible(question, actor, catalog=True, what="question")
    assert question is not None
    quiz = await session.get(Quiz, question.quiz_id)
    ensure_visible(quiz, actor, catalog=True, what="question")
    assert quiz is not None
    await editable_course(session=session, actor=actor, course_id=quiz.course_id)
    return question


async def update_question(
    *, session: AsyncSession, actor: Actor, question_id: uuid.UUID, data: QuestionUpdate
) -> QuestionWithChoices:
    question = await _editable_question(session, actor, question_id)
    apply_changes(question, data.model_dump(exclude_unset=True))
    await session.flush()
    return (await with_choices(session=session, questions=[question]))[0]


async def delete_question(*, session: AsyncSession, actor: Actor, question_id: uuid.UUID, clock: Clock) -> None:
    question = await _editable_question(session, actor, question_id)
    question.deleted_at = clock.now()
    await session.flush()


# Choices


async def _clear_other_correct(session: AsyncSession, question_id: uuid.UUID, keep: uuid.UUID) -> None:
    others = await session.scalars(
        sa.select(QuestionChoice).where(
            QuestionChoice.question_id == question_id,
            QuestionChoice.id != keep,
            QuestionChoice.is_correct.is_(True),
            QuestionChoice.deleted_at.is_(None),
        )
    )
    for other in others:
        other.is_correct = False


async def add_choice(
    *, session: AsyncSession, actor: Actor, question_id: uuid.UUID, data: ChoiceCreate
) -> QuestionChoice:
    """A correct choice becomes the question's only correct one (questions have one answer)."""
    question = await _editable_question(session, actor, question_id)
    count = await session.scalar(
        sa.select(sa.func.count())
        .select_from(QuestionChoice)
        .where(QuestionChoice.question_id == question.id, QuestionChoice.deleted_at.is_(None))
    )
    if (count or 0) >= MAX_CHOICES:
        raise Conflict(f"a question has at most {MAX_CHOICES} choices", code="too_many_choices")
    choice = QuestionChoice(
        id=new_id(), question_id=question.id, institution_id=question.institution_id, **data.model_dump()
    )
    if choice.is_correct:
        await _clear_other_correct(session, question.id, choice.id)
    session.add(choice)
    await session.flush()
    return choice


async def _editable_choice(session: AsyncSession, actor: Actor, choice_id: uuid.UUID) -> QuestionChoice:
    choice = await session.get(QuestionChoice, choice_id)
    ensure_visible(choice, actor, catalog=True, what="choice")
    assert choice is not None
    try:
        await _editable_question(session, actor, choice.question_id)
    except NotFound:
        raise NotFound("choice not found") from None
    return choice


async def update_choice(
    *, session: AsyncSession, actor: Actor, choice_id: uuid.UUID, data: ChoiceUpdate
) -> QuestionChoice:
    """Marking a choice correct unmarks the question's other choices."""
    choice = await _editable_choice(session, actor, choice_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("is_correct"):
        await _clear_other_correct(session, choice.question_id, choice.id)
    apply_changes(choice, changes)
    await session.flush()
    return choice


async def delete_choice(*, session: AsyncSession, actor: Actor, choice_id: uuid.UUID, clock: Clock) -> None:
    choice = await _editable_choice(session, actor, choice_id)
    choice.deleted_at = clock.now()
    await session.flush()
