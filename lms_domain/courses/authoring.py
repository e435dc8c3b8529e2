"""Courses as instructors and admins manage them, and as learners browse them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_editable, ensure_visible, owning_institution
from lms_domain.clock import Clock
from lms_domain.courses.models import Course, CourseTag, Tag
from lms_domain.courses.schemas import CourseCreate, CourseListQuery, CourseOut, CourseUpdate
from lms_domain.db import apply_changes
from lms_domain.errors import Conflict, NotFound
from lms_domain.ids import new_id
from lms_domain.pagination import PreparedPage, paginate
from lms_domain.projections import Projection
from lms_domain.tenancy.models import Institution

# Built once: constructing SQL expressions costs more than running this query, and the
# list is the hottest read. The tenant is a bound parameter, so one compiled form serves all.
# Only the columns a course list shows: each one more is a type conversion per row.
_COURSE_ROWS = sa.select(*(Course.__table__.c[name] for name in CourseOut.model_fields)).where(
    Course.deleted_at.is_(None)
)
_TENANT_OR_CATALOG = sa.or_(
    Course.institution_id == sa.bindparam("tenant_id", type_=sa.Uuid()), Course.institution_id.is_(None)
)
# The three lists, as pages built once: an unfiltered list is nearly every request.
_EVERY_COURSE = PreparedPage(_COURSE_ROWS, Course.id)
_PUBLISHED_FOR_LEARNERS = PreparedPage(_COURSE_ROWS.where(_TENANT_OR_CATALOG, Course.is_published.is_(True)), Course.id)
_ALL_FOR_STAFF = PreparedPage(_COURSE_ROWS.where(_TENANT_OR_CATALOG), Course.id)


async def list_courses(
    *, session: AsyncSession | Projection, actor: Actor, query: CourseListQuery
) -> tuple[Sequence[dict[str, Any]], str | None]:
    """Plain rows (not ORM objects): a list goes straight to JSON, so skip the identity
    map. The hottest read: handlers pass a projection rather than a session."""
    params: dict[str, Any] = {}
    if actor.is_platform_admin:
        prepared = _EVERY_COURSE
    else:
        prepared = _ALL_FOR_STAFF if actor.is_staff else _PUBLISHED_FOR_LEARNERS
        params["tenant_id"] = actor.institution_id
    stmt = prepared.stmt
    if actor.is_staff and query.published is not None:
        stmt = stmt.where(Course.is_published.is_(query.published))
    if query.access is not None:
        stmt = stmt.where(Course.access == query.access)
    if query.q:
        pattern = f"%{query.q.lower()}%"
        stmt = stmt.where(
            sa.or_(sa.func.lower(Course.title_en).like(pattern), sa.func.lower(Course.title_sw).like(pattern))
        )
    if query.tag:
        stmt = stmt.where(
            Course.id.in_(
                sa.select(CourseTag.course_id)
                .join(Tag, Tag.id == CourseTag.tag_id)
                .where(Tag.slug == query.tag, Tag.deleted_at.is_(None), CourseTag.deleted_at.is_(None))
            )
        )
    page = prepared if stmt is prepared.stmt else stmt  # a filter makes a statement of its own
    return await paginate(session, page, Course.id, cursor=query.cursor, limit=query.limit, as_rows=True, params=params)


async def get_course(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID) -> Course:
    """Visible to staff of its institution (or any, for the catalogue); learners see it
    only once published."""
    course = await session.get(Course, course_id)
    ensure_visible(course, actor, catalog=True, what="course")
    assert course is not None
    if not actor.is_staff and not course.is_published:
        ensure_visible(None, actor, what="course")
    return course


async def _slug_taken(
    session: AsyncSession, institution_id: uuid.UUID | None, slug: str, exclude: uuid.UUID | None
) -> bool:
    owner = Course.institution_id.is_(None) if institution_id is None else Course.institution_id == institution_id
    stmt = sa.select(Course.id).where(owner, Course.slug == slug, Course.deleted_at.is_(None))
    if exclude is not None:
        stmt = stmt.where(Course.id != exclude)
    return (await session.scalar(stmt.limit(1))) is not None


async def create_course(*, session: AsyncSession, actor: Actor, data: CourseCreate) -> Course:
    actor.require_staff()
    institution_id = owning_institution(actor, data.institution_id)
    if institution_id is not None and await session.get(Institution, institution_id) is None:
        raise NotFound("institution not found")
    if await _slug_taken(session, institution_id, data.slug, None):
        raise Conflict(f"a course with slug {data.slug!r} exists", code="slug_taken")
    course = Course(
        id=new_id(),
        institution_id=institution_id,
        created_by_id=actor.user_id,
        **data.model_dump(exclude={"institution_id"}),
    )
    session.add(course)
    await session.flush()
    return course


async def update_course(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, data: CourseUpdate) -> Course:
    course = await session.get(Course, course_id)
    ensure_editable(course, actor, what="course")
    assert course is not None
    changes = data.model_dump(exclude_unset=True)
    if "slug" in changes and await _slug_taken(session, course.institution_id, changes["slug"], course.id):
        raise Conflict(f"a course with slug {changes['slug']!r} exists", code="slug_taken")
    apply_changes(course, changes)
    await session.flush()
    return course


async def delete_course(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, clock: Clock) -> None:
    """Soft delete, so the deletion syncs to edges like any other change."""
    course = await session.get(Course, course_id)
    ensure_editable(course, actor, what="course")
    assert course is not None
    course.deleted_at = clock.now()
    await session.flush()
