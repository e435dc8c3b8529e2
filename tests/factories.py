"""Async factories: ``await make_learner(session, ...)`` builds what a test needs, no more."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.assessments.models import Question, QuestionChoice, Quiz
from lms_domain.commerce.models import Price, PriceInterval, Product, ProductKind
from lms_domain.courses.models import Course, CourseAccess, Lesson, Section
from lms_domain.entitlements.models import Entitlement, EntitlementSource
from lms_domain.i18n import Language
from lms_domain.ids import new_id
from lms_domain.security import Hasher
from lms_domain.subscriptions.models import Subscription, SubscriptionStatus
from lms_domain.tenancy.models import Institution, Learner
from lms_domain.tenancy.service import create_institution, create_learner

# Cheap argon2 parameters: tests check behaviour, not hashing cost.
FAST_HASHER = Hasher(time_cost=1, memory_cost_kib=64, parallelism=1)


async def make_institution(session: AsyncSession, *, name: str = "Test School", code: str | None = None) -> Institution:
    return await create_institution(session=session, name=name, code=code or f"T{uuid.uuid4().hex[:8]}")


async def make_learner(
    session: AsyncSession,
    *,
    institution: Institution | None = None,
    name: str = "Wanjiku Test",
    phone: str | None = None,
    pin: str | None = "1234",
    language: Language = Language.EN,
) -> Learner:
    institution = institution or await make_institution(session)
    return await create_learner(
        session=session,
        institution_id=institution.id,
        display_name=name,
        phone=phone,
        pin=pin,
        language=language,
        hasher=FAST_HASHER,
    )


@dataclass
class CourseFixture:
    course: Course
    lessons: list[Lesson]
    quiz: Quiz
    questions: list[Question]
    correct: dict[uuid.UUID, uuid.UUID]  # question id -> correct choice id
    wrong: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)


async def make_course(
    session: AsyncSession,
    *,
    institution: Institution | None,
    lessons: int = 2,
    questions: int = 4,
    access: CourseAccess = CourseAccess.FREE,
    pass_mark: int = 50,
    max_attempts: int | None = None,
    title: str = "Form 1 Biology",
) -> CourseFixture:
    """A published course with one section, ``lessons`` lessons and a final quiz whose
    questions each have one right and two wrong choices."""
    inst_id = institution.id if institution else None
    course = Course(
        id=new_id(),
        institution_id=inst_id,
        slug=f"c-{uuid.uuid4().hex[:6]}",
        title_en=title,
        title_sw=f"{title} (sw)",
        access=access,
        is_published=True,
    )
    session.add(course)
    await session.flush()
    section = Section(id=new_id(), institution_id=inst_id, course_id=course.id, title_en="Unit 1")
    session.add(section)
    await session.flush()
    lesson_rows = [
        Lesson(
            id=new_id(),
            institution_id=inst_id,
            section_id=section.id,
            course_id=course.id,
            position=i,
            title_en=f"Lesson {i + 1}",
        )
        for i in range(lessons)
    ]
    session.add_all(lesson_rows)
    quiz = Quiz(
        id=new_id(),
        institution_id=inst_id,
        course_id=course.id,
        title_en="Final",
        is_final=True,
        pass_mark_percent=pass_mark,
        max_attempts=max_attempts,
    )
    session.add(quiz)
    await session.flush()
    fixture = CourseFixture(course=course, lessons=lesson_rows, quiz=quiz, questions=[], correct={})
    for q in range(questions):
        question = Question(id=new_id(), institution_id=inst_id, quiz_id=quiz.id, position=q, prompt_en=f"Q{q + 1}?")
        session.add(question)
        await session.flush()
        fixture.questions.append(question)
        for c in range(3):
            choice = QuestionChoice(
                id=new_id(),
                institution_id=inst_id,
                question_id=question.id,
                position=c,
                text_en=f"choice {c}",
                is_correct=c == 1,
            )
            session.add(choice)
            if c == 1:
                fixture.correct[question.id] = choice.id
            elif c == 0:
                fixture.wrong[question.id] = choice.id
    await session.flush()
    return fixture


async def make_subscription(
    session: AsyncSession,
    *,
    learner: Learner,
    due: datetime,
    amount_minor: int = 30000,
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    product: Product | None = None,
) -> Subscription:
    """A monthly subscription of ``learner`` whose current period ends at ``due``, with its
    entitlement (as a paid checkout leaves it)."""
    if product is None:
        product = Product(
            id=new_id(),
            institution_id=learner.institution_id,
            sku=f"sub-{uuid.uuid4().hex[:6]}",
            kind=ProductKind.SUBSCRIPTION,
            name_en="Premium",
        )
        session.add(product)
        await session.flush()
    price = Price(
        id=new_id(),
        institution_id=learner.institution_id,
        product_id=product.id,
        amount_minor=amount_minor,
        interval=PriceInterval.MONTH,
    )
    session.add(price)
    await session.flush()
    start = due - timedelta(days=30)
    subscription = Subscription(
        id=new_id(),
        institution_id=learner.institution_id,
        learner_id=learner.id,
        product_id=product.id,
        price_id=price.id,
        status=status,
        current_period_start=start,
        current_period_end=due,
    )
    session.add(subscription)
    session.add(
        Entitlement(
            id=new_id(),
            institution_id=learner.institution_id,
            learner_id=learner.id,
            product_id=product.id,
            source=EntitlementSource.SUBSCRIPTION,
            source_id=subscription.id,
            valid_from=start,
            valid_until=due,
        )
    )
    await session.flush()
    return subscription
