"""Read projections: the rows a session would give, as plain dicts, and never a write."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from lms_domain.access import Actor
from lms_domain.courses.authoring import list_courses
from lms_domain.courses.schemas import CourseListQuery
from lms_domain.projections import SqliteThreadProjections, open_projections
from lms_domain.tenancy.models import Institution, Role
from tests.factories import make_course, make_institution


async def test_a_projection_lists_what_a_session_lists(engine: AsyncEngine, session: AsyncSession) -> None:
    school = await make_institution(session)
    other = await make_institution(session, name="Other School")
    for title in ("Biology", "Chemistry", "Physics"):
        await make_course(session, institution=school, lessons=1, questions=1, title=title)
    await make_course(session, institution=other, lessons=1, questions=1, title="Not yours")
    await session.commit()
    actor = Actor(user_id=None, role=Role.INSTRUCTOR, institution_id=school.id)

    projections = open_projections(engine)
    try:
        async with projections.connect() as projection:
            first, cursor = await list_courses(session=projection, actor=actor, query=CourseListQuery(limit=2))
            assert cursor is not None
            rest, end = await list_courses(
                session=projection, actor=actor, query=CourseListQuery(limit=2, cursor=cursor)
            )
        through_session, _ = await list_courses(session=session, actor=actor, query=CourseListQuery(limit=10))
    finally:
        await projections.close()

    assert end is None
    assert [row["title_en"] for row in [*first, *rest]] == ["Biology", "Chemistry", "Physics"]
    assert [dict(row) for row in through_session] == [*first, *rest]
    assert all(type(row) is dict for row in first)  # pydantic's fast path
    assert all(row["institution_id"] == school.id for row in first)  # typed values, not strings


@pytest.mark.backend_only("sqlite")
async def test_sqlite_projections_cannot_write(engine: AsyncEngine) -> None:
    projections = open_projections(engine)
    assert isinstance(projections, SqliteThreadProjections)
    try:
        async with projections.connect() as projection:
            with pytest.raises(sa.exc.OperationalError, match="readonly"):
                await projection.fetch(sa.delete(Institution))
    finally:
        await projections.close()


@pytest.mark.backend_only("sqlite")
async def test_sqlite_projections_see_each_commit_at_once(engine: AsyncEngine, session: AsyncSession) -> None:
    # Pooled connections in autocommit hold no read snapshot between statements.
    projections = open_projections(engine)
    count = sa.select(sa.func.count().label("n")).select_from(Institution)
    try:
        async with projections.connect() as projection:
            before = (await projection.fetch(count))[0]["n"]
            await make_institution(session, name="Committed later")
            await session.commit()
            assert (await projection.fetch(count))[0]["n"] == before + 1
    finally:
        await projections.close()
