"""Read-only progress queries, shared by enrollment, certificates and every channel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.courses.models import Lesson, LessonProgress, Section


@dataclass(frozen=True)
class CourseProgress:
    course_id: uuid.UUID
    lessons_total: int
    lessons_completed: int

    @property
    def percent(self) -> int:
        if self.lessons_total == 0:
            return 0
        return self.lessons_completed * 100 // self.lessons_total


async def course_progress(*, session: AsyncSession, learner_id: uuid.UUID, course_id: uuid.UUID) -> CourseProgress:
    total = await session.scalar(
        sa.select(sa.func.count(Lesson.id)).where(Lesson.course_id == course_id, Lesson.deleted_at.is_(None))
    )
    completed = await session.scalar(
        sa.select(sa.func.count(LessonProgress.id))
        .join(Lesson, Lesson.id == LessonProgress.lesson_id)
        .where(
            LessonProgress.learner_id == learner_id,
            LessonProgress.course_id == course_id,
            LessonProgress.completed_at.is_not(None),
            Lesson.deleted_at.is_(None),
        )
    )
    return CourseProgress(course_id=course_id, lessons_total=total or 0, lessons_completed=completed or 0)


@dataclass(frozen=True)
class LessonStatus:
    """One lesson of a course and what one learner has done with it (None: never opened)."""

    lesson: Lesson
    progress: LessonProgress | None

    @property
    def completed(self) -> bool:
        return self.progress is not None and self.progress.completed_at is not None


async def lesson_statuses(*, session: AsyncSession, learner_id: uuid.UUID, course_id: uuid.UUID) -> list[LessonStatus]:
    """Every live lesson of the course in reading order, with the learner's progress on it.

    Counts the same lessons as ``course_progress``, so a list and its totals always agree.
    """
    rows = await session.execute(
        sa.select(Lesson, LessonProgress)
        .outerjoin(Section, Section.id == Lesson.section_id)
        .outerjoin(
            LessonProgress,
            sa.and_(
                LessonProgress.lesson_id == Lesson.id,
                LessonProgress.learner_id == learner_id,
                LessonProgress.deleted_at.is_(None),
            ),
        )
        .where(Lesson.course_id == course_id, Lesson.deleted_at.is_(None))
        .order_by(Section.position, Section.id, Lesson.position, Lesson.id)
    )
    return [LessonStatus(lesson, progress) for lesson, progress in rows]


def summarise(course_id: uuid.UUID, statuses: list[LessonStatus]) -> CourseProgress:
    return CourseProgress(
        course_id=course_id,
        lessons_total=len(statuses),
        lessons_completed=sum(1 for s in statuses if s.completed),
    )
