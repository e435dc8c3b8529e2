"""Compact views of one learner's learning, for channels with a 160-character screen.

USSD and SMS show a learner their courses, quizzes, progress and subscriptions in a few
lines; these reads give them exactly that, in a fixed small number of queries whatever
the number of courses, so a hop stays well inside the gateway's time limit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.assessments.certificates import format_code
from lms_domain.assessments.models import Answer, Attempt, AttemptStatus, Certificate, Quiz
from lms_domain.assessments.service import load_questions
from lms_domain.commerce.models import Price, PriceInterval, Product
from lms_domain.courses.models import Course, Enrollment, EnrollmentStatus, Lesson, LessonProgress
from lms_domain.errors import NotFound
from lms_domain.i18n import Language, pick
from lms_domain.subscriptions.models import Subscription, SubscriptionStatus

LAST_SCORES = 3


@dataclass(frozen=True, slots=True)
class Titled:
    id: uuid.UUID
    title_en: str
    title_sw: str | None

    def title(self, language: Language) -> str:
        return pick(language, self.title_en, self.title_sw)


@dataclass(frozen=True, slots=True)
class CourseReport:
    course: Titled
    percent: int
    last_scores: tuple[int, ...]  # the latest submitted attempts' percentages, newest first
    certificate_code: str | None  # formatted for reading out, e.g. ABCD-EFGH-JKLM


@dataclass(frozen=True, slots=True)
class SubscriptionBrief:
    id: uuid.UUID
    status: SubscriptionStatus
    product: Titled
    amount_minor: int
    currency: str
    interval: PriceInterval
    period_end: datetime
    grace_until: datetime | None


@dataclass(frozen=True, slots=True)
class ChoiceText:
    id: uuid.UUID
    text_en: str
    text_sw: str | None


@dataclass(frozen=True, slots=True)
class QuestionText:
    id: uuid.UUID
    prompt_en: str
    prompt_sw: str | None
    choices: tuple[ChoiceText, ...]


@dataclass(frozen=True, slots=True)
class QuizContent:
    """A quiz as a learner sees it before submitting: no correct answers, so it may be cached
    and shared between learners (access is checked when an attempt starts)."""

    id: uuid.UUID
    course_id: uuid.UUID
    title_en: str
    title_sw: str | None
    pass_mark_percent: int
    questions: tuple[QuestionText, ...]


async def enrolled_courses(*, session: AsyncSession, learner_id: uuid.UUID) -> list[Titled]:
    rows = await session.execute(
        sa.select(Course.id, Course.title_en, Course.title_sw)
        .join(Enrollment, Enrollment.course_id == Course.id)
        .where(
            Enrollment.learner_id == learner_id,
            Enrollment.status != EnrollmentStatus.WITHDRAWN,
            Enrollment.deleted_at.is_(None),
            Course.deleted_at.is_(None),
        )
        .order_by(Course.title_en, Course.id)
    )
    return [Titled(r[0], r[1], r[2]) for r in rows]


async def course_quizzes(*, session: AsyncSession, learner_id: uuid.UUID, course_id: uuid.UUID) -> list[Titled]:
    """The published quizzes of a course the learner is enrolled in (else NotFound)."""
    enrolled = await session.scalar(
        sa.select(Enrollment.id).where(
            Enrollment.learner_id == learner_id,
            Enrollment.course_id == course_id,
            Enrollment.status != EnrollmentStatus.WITHDRAWN,
            Enrollment.deleted_at.is_(None),
        )
    )
    if enrolled is None:
        raise NotFound("course not found")
    rows = await session.execute(
        sa.select(Quiz.id, Quiz.title_en, Quiz.title_sw)
        .where(Quiz.course_id == course_id, Quiz.is_published.is_(True), Quiz.deleted_at.is_(None))
        .order_by(Quiz.position, Quiz.id)
    )
    return [Titled(r[0], r[1], r[2]) for r in rows]


async def quiz_content(*, session: AsyncSession, quiz_id: uuid.UUID) -> QuizContent:
    quiz = await session.get(Quiz, quiz_id)
    if quiz is None or quiz.deleted_at is not None or not quiz.is_published:
        raise NotFound("quiz not found")
    items = await load_questions(session=session, quiz_id=quiz_id)
    return QuizContent(
        id=quiz.id,
        course_id=quiz.course_id,
        title_en=quiz.title_en,
        title_sw=quiz.title_sw,
        pass_mark_percent=quiz.pass_mark_percent,
        questions=tuple(
            QuestionText(
                id=item.question.id,
                prompt_en=item.question.prompt_en,
                prompt_sw=item.question.prompt_sw,
                choices=tuple(ChoiceText(c.id, c.text_en, c.text_sw) for c in item.choices),
            )
            for item in items
            if item.choices  # a question with no choices cannot be answered on a keypad
        ),
    )


async def given_answers(*, session: AsyncSession, attempt_id: uuid.UUID) -> dict[uuid.UUID, uuid.UUID]:
    """The answers already stored for an attempt (one resumed from another channel)."""
    rows = await session.execute(
        sa.select(Answer.question_id, Answer.choice_id).where(
            Answer.attempt_id == attempt_id, Answer.choice_id.is_not(None)
        )
    )
    return {question: choice for question, choice in rows if choice is not None}


async def progress_report(*, session: AsyncSession, learner_id: uuid.UUID) -> list[CourseReport]:
    """Per enrolled course: lessons completed (%), the last quiz scores and the certificate."""
    courses = await enrolled_courses(session=session, learner_id=learner_id)
    if not courses:
        return []
    ids = [c.id for c in courses]
    totals = dict(
        (
            await session.execute(
                sa.select(Lesson.course_id, sa.func.count(Lesson.id))
                .where(Lesson.course_id.in_(ids), Lesson.deleted_at.is_(None))
                .group_by(Lesson.course_id)
            )
        ).all()
    )
    done = dict(
        (
            await session.execute(
                sa.select(LessonProgress.course_id, sa.func.count(LessonProgress.id))
                .join(Lesson, Lesson.id == LessonProgress.lesson_id)
                .where(
                    LessonProgress.learner_id == learner_id,
                    LessonProgress.course_id.in_(ids),
                    LessonProgress.completed_at.is_not(None),
                    LessonProgress.deleted_at.is_(None),
                    Lesson.deleted_at.is_(None),
                )
                .group_by(LessonProgress.course_id)
            )
        ).all()
    )
    scores: dict[uuid.UUID, list[int]] = defaultdict(list)
    attempts = await session.execute(
        sa.select(Quiz.course_id, Attempt.score_percent)
        .join(Quiz, Quiz.id == Attempt.quiz_id)
        .where(
            Attempt.learner_id == learner_id,
            Attempt.status == AttemptStatus.SUBMITTED,
            Attempt.deleted_at.is_(None),
            Quiz.course_id.in_(ids),
        )
        .order_by(Attempt.submitted_at.desc(), Attempt.id.desc())
    )
    for course_id, percent in attempts:
        if len(scores[course_id]) < LAST_SCORES:
            scores[course_id].append(int(percent or 0))
    codes = dict(
        (
            await session.execute(
                sa.select(Certificate.course_id, Certificate.code).where(
                    Certificate.learner_id == learner_id,
                    Certificate.course_id.in_(ids),
                    Certificate.revoked_at.is_(None),
                    Certificate.deleted_at.is_(None),
                )
            )
        ).all()
    )
    reports = []
    for course in courses:
        total = int(totals.get(course.id, 0))
        percent = int(done.get(course.id, 0)) * 100 // total if total else 0
        code = codes.get(course.id)
        reports.append(
            CourseReport(
                course=course,
                percent=percent,
                last_scores=tuple(scores[course.id]),
                certificate_code=format_code(code) if code else None,
            )
        )
    return reports


async def learner_subscriptions(*, session: AsyncSession, learner_id: uuid.UUID) -> list[SubscriptionBrief]:
    """The learner's subscriptions with what they cost, live ones first."""
    rows = await session.execute(
        sa.select(Subscription, Product.id, Product.name_en, Product.name_sw, Price)
        .join(Product, Product.id == Subscription.product_id)
        .join(Price, Price.id == Subscription.price_id)
        .where(Subscription.learner_id == learner_id, Subscription.deleted_at.is_(None))
        .order_by(
            (Subscription.status == SubscriptionStatus.CANCELLED).asc(),
            Subscription.current_period_end.desc(),
            Subscription.id,
        )
    )
    return [
        SubscriptionBrief(
            id=sub.id,
            status=sub.status,
            product=Titled(product_id, name_en, name_sw),
            amount_minor=price.amount_minor,
            currency=price.currency,
            interval=price.interval,
            period_end=sub.current_period_end,
            grace_until=sub.grace_until,
        )
        for sub, product_id, name_en, name_sw, price in rows
    ]
