"""Read-only progress queries, shared by enrollment, certificates and every channel."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.courses.models import Lesson, LessonProgress


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
