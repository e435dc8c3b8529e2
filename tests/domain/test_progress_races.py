"""Reports for one lesson arriving together (a phone resending, two tabs) all succeed, and
the row ends at the highest percent, whether or not it existed before."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import FixedClock
from lms_domain.courses.models import LessonProgress
from lms_domain.courses.service import enroll, record_progress
from tests.factories import make_course, make_institution, make_learner

REPORTS = 12


@pytest.mark.parametrize("existing", [False, True], ids=["first-report", "existing-row"])
async def test_concurrent_reports_for_one_lesson_all_land(
    sessionmaker: async_sessionmaker[AsyncSession], clock: FixedClock, existing: bool
) -> None:
    async with sessionmaker() as session, session.begin():
        school = await make_institution(session)
        learner = await make_learner(session, institution=school)
        fx = await make_course(session, institution=school, lessons=2, questions=1)
        await enroll(session=session, learner_id=learner.id, course_id=fx.course.id, clock=clock)
        if existing:
            await record_progress(
                session=session, learner_id=learner.id, lesson_id=fx.lessons[0].id, percent=1, clock=clock
            )
    lesson_id: uuid.UUID = fx.lessons[0].id

    async def report(percent: int) -> int:
        async with sessionmaker() as session, session.begin():
            row = await record_progress(
                session=session, learner_id=learner.id, lesson_id=lesson_id, percent=percent, clock=clock
            )
            return row.percent

    seen = await asyncio.gather(*(report(p) for p in range(10, 10 + 5 * REPORTS, 5)))

    assert len(seen) == REPORTS  # none failed on a lost race
    async with sessionmaker() as session:
        rows = list(await session.scalars(sa.select(LessonProgress).where(LessonProgress.lesson_id == lesson_id)))
    assert [row.percent for row in rows] == [10 + 5 * (REPORTS - 1)]
