"""Enrolling and recording lesson progress."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor
from lms_domain.assessments.certificates import refresh_completion
from lms_domain.clock import Clock
from lms_domain.courses.models import (
    Course,
    CourseAccess,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    LessonProgress,
    Prerequisite,
)
from lms_domain.db import lock_or_claim
from lms_domain.entitlements.service import has_active_entitlement
from lms_domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied, PreconditionFailed
from lms_domain.i18n import pick
from lms_domain.ids import natural_id
from lms_domain.notifications.service import notify_learner
from lms_domain.tenancy.models import Learner, Role


async def get_learner(*, session: AsyncSession, learner_id: uuid.UUID) -> Learner:
    learner = await session.get(Learner, learner_id)
    if learner is None or learner.deleted_at is not None:
        raise NotFound("learner not found")
    return learner


async def get_course_for(
    *, session: AsyncSession, learner: Learner, course_id: uuid.UUID, or_enrolled: bool = False
) -> Course:
    """The course if this learner may see it: their institution's or the catalogue's, not
    deleted, and published; with ``or_enrolled`` also an unpublished one they enrolled in
    (their own record of it stays theirs). Otherwise NotFound (no leak)."""
    course = await session.get(Course, course_id)
    if course is None or course.deleted_at is not None or course.institution_id not in (None, learner.institution_id):
        raise NotFound("course not found")
    if not course.is_published and not (or_enrolled and await _enrollment_row(session, learner.id, course.id)):
        raise NotFound("course not found")
    return course


async def _enrollment_row(session: AsyncSession, learner_id: uuid.UUID, course_id: uuid.UUID) -> Enrollment | None:
    """The learner's enrollment in the course in any status, unless deleted."""
    enrollment = await session.get(Enrollment, natural_id("enrollment", learner_id, course_id))
    if enrollment is None or enrollment.deleted_at is not None:
        return None
    return enrollment


async def ensure_learner_may_open(*, session: AsyncSession, who: Actor | Learner, course: Course) -> None:
    """Lesson bodies, files and quiz questions of a paid course are for learners enrolled in
    it (enrolling needs the entitlement); its outline stays open so learners can see what
    they would buy. Staff read what they can see. 403, not 404: the course is visible."""
    if course.access is not CourseAccess.PAID:
        return
    if isinstance(who, Actor):
        if who.role is not Role.LEARNER:
            return
        learner_id = who.own_learner_id()
    else:
        learner_id = who.id
    enrollment = await _enrollment_row(session, learner_id, course.id)
    if enrollment is None or enrollment.status is EnrollmentStatus.WITHDRAWN:
        raise PermissionDenied("enroll in this course to open its lessons and quizzes", code="enrollment_required")


async def enroll(*, session: AsyncSession, learner_id: uuid.UUID, course_id: uuid.UUID, clock: Clock) -> Enrollment:
    """Enroll a learner; idempotent. Enforces prerequisites and, for paid courses, an entitlement."""
    learner = await get_learner(session=session, learner_id=learner_id)
    course = await get_course_for(session=session, learner=learner, course_id=course_id)
    enrollment_id = natural_id("enrollment", learner.id, course.id)
    existing = await session.get(Enrollment, enrollment_id)
    if existing is not None and existing.status is not EnrollmentStatus.WITHDRAWN and existing.deleted_at is None:
        return existing

    required = set(
        await session.scalars(
            # A deleted required course can no longer be completed: it stops being required.
            sa.select(Prerequisite.required_course_id)
            .join(Course, Course.id == Prerequisite.required_course_id)
            .where(Prerequisite.course_id == course.id, Prerequisite.deleted_at.is_(None), Course.deleted_at.is_(None))
        )
    )
    if required:
        completed = set(
            await session.scalars(
                sa.select(Enrollment.course_id).where(
                    Enrollment.learner_id == learner.id,
                    Enrollment.course_id.in_(required),
                    Enrollment.status == EnrollmentStatus.COMPLETED,
                    Enrollment.deleted_at.is_(None),
                )
            )
        )
        missing = sorted(str(c) for c in required - completed)
        if missing:
            raise PreconditionFailed(
                "complete the prerequisite courses first", code="prerequisites_missing", missing=missing
            )

    now = clock.now()
    if course.access is CourseAccess.PAID and not await has_active_entitlement(
        session=session, learner_id=learner.id, course_id=course.id, at=now
    ):
        raise PreconditionFailed("this course needs an active purchase or subscription", code="entitlement_required")

    # Queued before the synced write below (see ``payments.booking``), in the learner's language.
    await notify_learner(
        session=session,
        learner_id=learner.id,
        event="enrollment_confirmed",
        values={"course_title": pick(learner.language, course.title_en, course.title_sw)},
        dedupe_key=f"enrollment_confirmed:{enrollment_id}:{now.isoformat()}",
        now=now,
    )
    if existing is not None:
        existing.status = EnrollmentStatus.ACTIVE
        existing.deleted_at = None
        existing.enrolled_at = now
        enrollment = existing
    else:
        enrollment = Enrollment(
            id=enrollment_id,
            institution_id=learner.institution_id,
            learner_id=learner.id,
            course_id=course.id,
            enrolled_at=now,
        )
        session.add(enrollment)
    await session.flush()
    return enrollment


async def withdraw(*, session: AsyncSession, learner_id: uuid.UUID, course_id: uuid.UUID) -> Enrollment:
    """Withdraw a learner from a course; idempotent. Progress, attempts and the row itself
    stay, so enrolling again picks up where the learner left off."""
    enrollment = await session.get(Enrollment, natural_id("enrollment", learner_id, course_id))
    if enrollment is None or enrollment.deleted_at is not None:
        raise NotFound("enrollment not found")
    if enrollment.status is EnrollmentStatus.COMPLETED:
        # Completion backs an issued certificate; withdrawing would contradict it.
        raise Conflict("a completed course cannot be withdrawn from", code="enrollment_completed")
    if enrollment.status is not EnrollmentStatus.WITHDRAWN:
        enrollment.status = EnrollmentStatus.WITHDRAWN
        await session.flush()
    return enrollment


async def active_enrollment(*, session: AsyncSession, learner: Learner, course_id: uuid.UUID) -> Enrollment:
    enrollment = await _enrollment_row(session, learner.id, course_id)
    if enrollment is None or enrollment.status is EnrollmentStatus.WITHDRAWN:
        raise PreconditionFailed("enroll in the course first", code="not_enrolled")
    return enrollment


async def record_progress(
    *,
    session: AsyncSession,
    learner_id: uuid.UUID,
    lesson_id: uuid.UUID,
    percent: int,
    clock: Clock,
    observed_at: datetime | None = None,
) -> LessonProgress:
    """Record progress on a lesson. Monotonic and idempotent: percent never falls, the
    earliest completion wins, and replaying the same report changes nothing."""
    if not 0 <= percent <= 100:
        raise InvalidInput("percent must be between 0 and 100", code="invalid_percent")
    learner = await get_learner(session=session, learner_id=learner_id)
    lesson = await session.get(Lesson, lesson_id)
    if lesson is None or lesson.deleted_at is not None:
        raise NotFound("lesson not found")
    await get_course_for(session=session, learner=learner, course_id=lesson.course_id)
    await active_enrollment(session=session, learner=learner, course_id=lesson.course_id)

    at = observed_at or clock.now()
    if at.tzinfo is None:
        raise InvalidInput("observed_at needs a timezone", code="naive_datetime")
    progress_id = natural_id("lesson_progress", learner.id, lesson.id)
    # Two reports for one lesson at once (a phone resending) queue here instead of the second
    # failing on the row version, or the duplicate key, the first one wrote.
    progress = await lock_or_claim(session, LessonProgress, progress_id)
    completed_at = at if percent == 100 else None
    if progress is None:
        progress = LessonProgress(
            id=progress_id,
            institution_id=learner.institution_id,
            learner_id=learner.id,
            lesson_id=lesson.id,
            course_id=lesson.course_id,
            percent=percent,
            first_seen_at=at,
            last_seen_at=at,
            completed_at=completed_at,
        )
        session.add(progress)
    else:
        # Assign only what changes, so an idempotent replay leaves no outbox entry behind.
        if percent > progress.percent:
            progress.percent = percent
        if at < progress.first_seen_at:
            progress.first_seen_at = at
        if at > progress.last_seen_at:
            progress.last_seen_at = at
        if completed_at is not None and (progress.completed_at is None or completed_at < progress.completed_at):
            progress.completed_at = completed_at
    await session.flush()
    if progress.completed_at is not None:
        await refresh_completion(session=session, learner=learner, course_id=lesson.course_id, clock=clock)
    return progress
