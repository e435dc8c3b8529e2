"""Reads for the course editor in the admin console: a whole course, a lesson or a quiz in
one call, in the order authors arrange them (by position), with what the forms need.

The REST API pages its lists by id, which suits clients that sync; a person editing a
course wants it laid out as learners will meet it. Scoping is the same as the API's: the
course must be readable by the actor (``content.readable_course``), and anything showing
a quiz's answers needs the quiz to be editable.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_visible
from lms_domain.assessments.authoring import editable_quiz
from lms_domain.assessments.models import Question, Quiz
from lms_domain.assessments.schemas import AuthorQuestionOut, QuizOut
from lms_domain.assessments.service import load_questions, with_choices
from lms_domain.courses.content import readable_course
from lms_domain.courses.content_schemas import AssetOut, LessonOut, LessonSummaryOut, SectionOut, TagOut
from lms_domain.courses.models import Asset, Course, CourseTag, Lesson, Prerequisite, Section, Tag
from lms_domain.courses.schemas import CourseOut
from lms_domain.errors import NotFound

# A course offered as a prerequisite choice: enough to name it in a select.
MAX_CHOICES_LISTED = 200


class CourseRef(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID | None
    title_en: str
    title_sw: str | None


class LessonLine(LessonSummaryOut):
    asset_count: int = 0


class SectionOutline(BaseModel):
    section: SectionOut
    lessons: list[LessonLine]


class QuizLine(QuizOut):
    question_count: int = 0


class CourseOutline(BaseModel):
    """A course as its editor page shows it."""

    course: CourseOut
    editable: bool
    sections: list[SectionOutline]
    quizzes: list[QuizLine]
    tags: list[TagOut]
    tag_choices: list[TagOut]
    prerequisites: list[CourseRef]
    prerequisite_choices: list[CourseRef]


class LessonDetail(BaseModel):
    course: CourseOut
    editable: bool
    lesson: LessonOut
    sections: list[SectionOut]
    assets: list[AssetOut]


class QuizDetail(BaseModel):
    """A quiz with its answer key, questions in the order learners meet them."""

    course: CourseOut
    quiz: QuizOut
    sections: list[SectionOut]
    questions: list[AuthorQuestionOut]


def _editable(course: Course, actor: Actor) -> bool:
    return actor.is_staff and (course.institution_id is not None or actor.is_platform_admin)


async def _sections(session: AsyncSession, course_id: uuid.UUID) -> list[Section]:
    rows = await session.scalars(
        sa.select(Section)
        .where(Section.course_id == course_id, Section.deleted_at.is_(None))
        .order_by(Section.position, Section.id)
    )
    return list(rows)


async def course_outline(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID) -> CourseOutline:
    """The course with its sections and lessons, quizzes, tags and prerequisites, for staff."""
    actor.require_staff()
    course = await readable_course(session=session, actor=actor, course_id=course_id, what="course")
    sections = await _sections(session, course.id)
    asset_count = (
        sa.select(sa.func.count())
        .select_from(Asset)
        .where(Asset.lesson_id == Lesson.id, Asset.deleted_at.is_(None))
        .scalar_subquery()
    )
    lesson_rows = await session.execute(
        sa.select(Lesson, asset_count)
        .where(Lesson.course_id == course.id, Lesson.deleted_at.is_(None))
        .order_by(Lesson.position, Lesson.id)
    )
    by_section: dict[uuid.UUID, list[LessonLine]] = {s.id: [] for s in sections}
    for lesson, count in lesson_rows:
        if lesson.section_id in by_section:
            line = LessonLine.model_validate(
                LessonSummaryOut.model_validate(lesson).model_dump() | {"asset_count": count}
            )
            by_section[lesson.section_id].append(line)
    question_count = (
        sa.select(sa.func.count())
        .select_from(Question)
        .where(Question.quiz_id == Quiz.id, Question.deleted_at.is_(None))
        .scalar_subquery()
    )
    quiz_rows = await session.execute(
        sa.select(Quiz, question_count)
        .where(Quiz.course_id == course.id, Quiz.deleted_at.is_(None))
        .order_by(Quiz.position, Quiz.id)
    )
    quizzes = [
        QuizLine.model_validate(QuizOut.model_validate(quiz).model_dump() | {"question_count": count})
        for quiz, count in quiz_rows
    ]
    tags = await session.scalars(
        sa.select(Tag)
        .join(CourseTag, CourseTag.tag_id == Tag.id)
        .where(CourseTag.course_id == course.id, CourseTag.deleted_at.is_(None), Tag.deleted_at.is_(None))
        .order_by(Tag.slug)
    )
    # A course may carry its own institution's tags and the catalogue's (as attach_tag checks).
    owners: list[sa.ColumnElement[bool]] = [Tag.institution_id.is_(None)]
    if course.institution_id is not None:
        owners.append(Tag.institution_id == course.institution_id)
    tag_choices = await session.scalars(
        sa.select(Tag).where(sa.or_(*owners), Tag.deleted_at.is_(None)).order_by(Tag.slug).limit(MAX_CHOICES_LISTED)
    )
    required = await session.scalars(
        sa.select(Course)
        .join(Prerequisite, Prerequisite.required_course_id == Course.id)
        .where(Prerequisite.course_id == course.id, Prerequisite.deleted_at.is_(None), Course.deleted_at.is_(None))
        .order_by(Course.title_en)
    )
    course_owners: list[sa.ColumnElement[bool]] = [Course.institution_id.is_(None)]
    if course.institution_id is not None:
        course_owners.append(Course.institution_id == course.institution_id)
    candidates = await session.scalars(
        sa.select(Course)
        .where(sa.or_(*course_owners), Course.deleted_at.is_(None), Course.id != course.id)
        .order_by(Course.title_en, Course.id)
        .limit(MAX_CHOICES_LISTED)
    )
    return CourseOutline(
        course=CourseOut.model_validate(course),
        editable=_editable(course, actor),
        sections=[SectionOutline(section=SectionOut.model_validate(s), lessons=by_section[s.id]) for s in sections],
        quizzes=quizzes,
        tags=[TagOut.model_validate(t) for t in tags],
        tag_choices=[TagOut.model_validate(t) for t in tag_choices],
        prerequisites=[CourseRef.model_validate(c) for c in required],
        prerequisite_choices=[CourseRef.model_validate(c) for c in candidates],
    )


async def lesson_detail(
    *, session: AsyncSession, actor: Actor, course_id: uuid.UUID, lesson_id: uuid.UUID
) -> LessonDetail:
    """A lesson with its body and files, for staff; NotFound unless it is in ``course_id``."""
    actor.require_staff()
    lesson = await session.get(Lesson, lesson_id)
    ensure_visible(lesson, actor, catalog=True, what="lesson")
    assert lesson is not None
    if lesson.course_id != course_id:
        raise NotFound("lesson not found")
    course = await readable_course(session=session, actor=actor, course_id=course_id, what="lesson")
    assets = await session.scalars(
        sa.select(Asset).where(Asset.lesson_id == lesson.id, Asset.deleted_at.is_(None)).order_by(Asset.created_at)
    )
    return LessonDetail(
        course=CourseOut.model_validate(course),
        editable=_editable(course, actor),
        lesson=LessonOut.model_validate(lesson),
        sections=[SectionOut.model_validate(s) for s in await _sections(session, course.id)],
        assets=[AssetOut.model_validate(a) for a in assets],
    )


async def quiz_detail(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, quiz_id: uuid.UUID) -> QuizDetail:
    """A quiz with its answer key, for its editors only (as ``authoring.answer_key``); the
    questions in the order the USSD menu and the apps ask them (position, then id)."""
    quiz, course = await editable_quiz(session=session, actor=actor, quiz_id=quiz_id)
    if quiz.course_id != course_id:
        raise NotFound("quiz not found")
    items = await load_questions(session=session, quiz_id=quiz.id)
    return QuizDetail(
        course=CourseOut.model_validate(course),
        quiz=QuizOut.model_validate(quiz),
        sections=[SectionOut.model_validate(s) for s in await _sections(session, course.id)],
        questions=[AuthorQuestionOut.of(i.question, i.choices) for i in items],
    )


async def question_for_editing(
    *, session: AsyncSession, actor: Actor, question_id: uuid.UUID
) -> tuple[QuizOut, AuthorQuestionOut]:
    """A question with its answer key and its quiz, for the quiz's editors only."""
    question = await session.get(Question, question_id)
    ensure_visible(question, actor, catalog=True, what="question")
    assert question is not None
    try:
        quiz, _ = await editable_quiz(session=session, actor=actor, quiz_id=question.quiz_id)
    except NotFound:
        raise NotFound("question not found") from None
    item = (await with_choices(session=session, questions=[question]))[0]
    return QuizOut.model_validate(quiz), AuthorQuestionOut.of(item.question, item.choices)
