"""A course's structure as staff author it and learners read it: sections, lessons, assets,
tags and prerequisites.

Every child row takes its course's ``institution_id`` and is reached through its course:
reading needs the course to be readable (``authoring.get_course``: learners only see
published courses), writing needs it to be editable (``ensure_editable``). A row of
another institution, or under a deleted parent, is simply not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, catalog_filter, ensure_editable, ensure_visible, owning_institution
from lms_domain.assessments.models import Quiz
from lms_domain.clock import Clock
from lms_domain.courses import authoring
from lms_domain.courses.content_schemas import (
    AssetCreate,
    LessonCreate,
    LessonUpdate,
    SectionCreate,
    SectionUpdate,
    TagCreate,
)
from lms_domain.courses.models import Asset, Course, CourseTag, Lesson, Prerequisite, Section, Tag
from lms_domain.courses.schemas import ListQuery
from lms_domain.courses.service import ensure_learner_may_open
from lms_domain.db import apply_changes
from lms_domain.errors import Conflict, InvalidInput, NotFound
from lms_domain.ids import natural_id, new_id
from lms_domain.pagination import paginate

Row = TypeVar("Row", Section, Lesson, Asset)
PageOf = tuple[Sequence[Any], str | None]


async def readable_course(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, what: str) -> Course:
    """The course if the actor may read it; NotFound naming ``what`` otherwise, so a child's
    404 does not reveal that its course exists."""
    try:
        return await authoring.get_course(session=session, actor=actor, course_id=course_id)
    except NotFound:
        raise NotFound(f"{what} not found") from None


async def editable_course(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID) -> Course:
    course = await session.get(Course, course_id)
    ensure_editable(course, actor, what="course")
    assert course is not None
    return course


async def _child(session: AsyncSession, model: type[Row], row_id: uuid.UUID, actor: Actor, what: str) -> Row:
    row = await session.get(model, row_id)
    ensure_visible(row, actor, catalog=True, what=what)
    assert row is not None
    return row


# Sections


async def list_sections(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, query: ListQuery) -> PageOf:
    await readable_course(session=session, actor=actor, course_id=course_id, what="course")
    stmt = sa.select(Section).where(Section.course_id == course_id, Section.deleted_at.is_(None))
    return await paginate(session, stmt, Section.id, cursor=query.cursor, limit=query.limit)


async def create_section(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, data: SectionCreate) -> Section:
    course = await editable_course(session=session, actor=actor, course_id=course_id)
    section = Section(id=new_id(), course_id=course.id, institution_id=course.institution_id, **data.model_dump())
    session.add(section)
    await session.flush()
    return section


async def editable_section(*, session: AsyncSession, actor: Actor, section_id: uuid.UUID) -> Section:
    section = await _child(session, Section, section_id, actor, "section")
    await editable_course(session=session, actor=actor, course_id=section.course_id)
    return section


async def update_section(*, session: AsyncSession, actor: Actor, section_id: uuid.UUID, data: SectionUpdate) -> Section:
    section = await editable_section(session=session, actor=actor, section_id=section_id)
    apply_changes(section, data.model_dump(exclude_unset=True))
    await session.flush()
    return section


async def delete_section(*, session: AsyncSession, actor: Actor, section_id: uuid.UUID, clock: Clock) -> None:
    """Refused while lessons or quizzes still live in it: deleting them is a separate,
    deliberate act, and a live lesson under a deleted section would be unreachable."""
    section = await editable_section(session=session, actor=actor, section_id=section_id)
    lesson = await session.scalar(
        sa.select(Lesson.id).where(Lesson.section_id == section.id, Lesson.deleted_at.is_(None)).limit(1)
    )
    quiz = await session.scalar(
        sa.select(Quiz.id).where(Quiz.section_id == section.id, Quiz.deleted_at.is_(None)).limit(1)
    )
    if lesson is not None or quiz is not None:
        raise Conflict("move or delete the section's lessons and quizzes first", code="section_not_empty")
    section.deleted_at = clock.now()
    await session.flush()


# Lessons


async def readable_section(*, session: AsyncSession, actor: Actor, section_id: uuid.UUID) -> Section:
    section = await _child(session, Section, section_id, actor, "section")
    await readable_course(session=session, actor=actor, course_id=section.course_id, what="section")
    return section


async def list_lessons(*, session: AsyncSession, actor: Actor, section_id: uuid.UUID, query: ListQuery) -> PageOf:
    section = await readable_section(session=session, actor=actor, section_id=section_id)
    stmt = sa.select(Lesson).where(Lesson.section_id == section.id, Lesson.deleted_at.is_(None))
    return await paginate(session, stmt, Lesson.id, cursor=query.cursor, limit=query.limit)


async def create_lesson(*, session: AsyncSession, actor: Actor, section_id: uuid.UUID, data: LessonCreate) -> Lesson:
    section = await editable_section(session=session, actor=actor, section_id=section_id)
    lesson = Lesson(
        id=new_id(),
        section_id=section.id,
        course_id=section.course_id,
        institution_id=section.institution_id,
        **data.model_dump(),
    )
    session.add(lesson)
    await session.flush()
    return lesson


async def get_lesson(*, session: AsyncSession, actor: Actor, lesson_id: uuid.UUID) -> Lesson:
    """The lesson with its body (and the way to its files): for staff, and for learners
    who may open the course (a paid one needs an enrollment)."""
    lesson = await _child(session, Lesson, lesson_id, actor, "lesson")
    course = await readable_course(session=session, actor=actor, course_id=lesson.course_id, what="lesson")
    await ensure_learner_may_open(session=session, who=actor, course=course)
    return lesson


async def editable_lesson(*, session: AsyncSession, actor: Actor, lesson_id: uuid.UUID) -> Lesson:
    lesson = await _child(session, Lesson, lesson_id, actor, "lesson")
    await editable_course(session=session, actor=actor, course_id=lesson.course_id)
    return lesson


async def update_lesson(*, session: AsyncSession, actor: Actor, lesson_id: uuid.UUID, data: LessonUpdate) -> Lesson:
    lesson = await editable_lesson(session=session, actor=actor, lesson_id=lesson_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("section_id") is not None and changes["section_id"] != lesson.section_id:
        target = await session.get(Section, changes["section_id"])
        if target is None or target.deleted_at is not None or target.course_id != lesson.course_id:
            raise InvalidInput("the section must belong to the lesson's course", code="section_not_in_course")
    apply_changes(lesson, changes)
    await session.flush()
    return lesson


async def delete_lesson(*, session: AsyncSession, actor: Actor, lesson_id: uuid.UUID, clock: Clock) -> None:
    """Its assets go with it: they belong to the lesson alone."""
    lesson = await editable_lesson(session=session, actor=actor, lesson_id=lesson_id)
    now = clock.now()
    lesson.deleted_at = now
    assets = await session.scalars(sa.select(Asset).where(Asset.lesson_id == lesson.id, Asset.deleted_at.is_(None)))
    for asset in assets:
        asset.deleted_at = now
    await session.flush()


# Assets


async def list_assets(*, session: AsyncSession, actor: Actor, lesson_id: uuid.UUID, query: ListQuery) -> PageOf:
    lesson = await get_lesson(session=session, actor=actor, lesson_id=lesson_id)
    stmt = sa.select(Asset).where(Asset.lesson_id == lesson.id, Asset.deleted_at.is_(None))
    return await paginate(session, stmt, Asset.id, cursor=query.cursor, limit=query.limit)


async def create_asset(*, session: AsyncSession, actor: Actor, lesson_id: uuid.UUID, data: AssetCreate) -> Asset:
    lesson = await editable_lesson(session=session, actor=actor, lesson_id=lesson_id)
    asset = Asset(id=new_id(), lesson_id=lesson.id, institution_id=lesson.institution_id, **data.model_dump())
    session.add(asset)
    await session.flush()
    return asset


async def delete_asset(*, session: AsyncSession, actor: Actor, asset_id: uuid.UUID, clock: Clock) -> None:
    asset = await _child(session, Asset, asset_id, actor, "asset")
    lesson = await session.get(Lesson, asset.lesson_id)
    ensure_visible(lesson, actor, catalog=True, what="asset")
    assert lesson is not None
    await editable_course(session=session, actor=actor, course_id=lesson.course_id)
    asset.deleted_at = clock.now()
    await session.flush()


# Tags


async def list_tags(*, session: AsyncSession, actor: Actor, query: ListQuery) -> PageOf:
    """The actor's institution's tags and the catalogue's."""
    stmt = catalog_filter(sa.select(Tag).where(Tag.deleted_at.is_(None)), Tag.institution_id, actor)
    return await paginate(session, stmt, Tag.id, cursor=query.cursor, limit=query.limit)


async def create_tag(*, session: AsyncSession, actor: Actor, data: TagCreate) -> Tag:
    """Id ``natural_id('tag', institution, slug)``, so two nodes creating the same tag offline
    converge; a deleted tag of that slug comes back to life with the new names."""
    actor.require_staff()
    institution_id = owning_institution(actor, data.institution_id)
    owner = Tag.institution_id.is_(None) if institution_id is None else Tag.institution_id == institution_id
    # Tags made elsewhere (the seed, older nodes) may carry other ids: match on the slug too.
    taken = await session.scalar(
        sa.select(Tag.id).where(owner, Tag.slug == data.slug, Tag.deleted_at.is_(None)).limit(1)
    )
    if taken is not None:
        raise Conflict(f"a tag with slug {data.slug!r} exists", code="tag_exists")
    tag_id = natural_id("tag", institution_id, data.slug)
    tag = await session.get(Tag, tag_id)
    if tag is None:
        tag = Tag(id=tag_id, institution_id=institution_id, slug=data.slug)
        session.add(tag)
    tag.name_en = data.name_en
    tag.name_sw = data.name_sw
    tag.deleted_at = None
    await session.flush()
    return tag


async def list_course_tags(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, query: ListQuery) -> PageOf:
    await readable_course(session=session, actor=actor, course_id=course_id, what="course")
    stmt = (
        sa.select(Tag)
        .join(CourseTag, CourseTag.tag_id == Tag.id)
        .where(CourseTag.course_id == course_id, CourseTag.deleted_at.is_(None), Tag.deleted_at.is_(None))
    )
    return await paginate(session, stmt, Tag.id, cursor=query.cursor, limit=query.limit)


async def _course_tag(session: AsyncSession, course_id: uuid.UUID, tag_id: uuid.UUID) -> CourseTag | None:
    # By the pair, not the natural id: the unique constraint is on the pair, and rows made
    # elsewhere (the seed) may carry other ids.
    return await session.scalar(
        sa.select(CourseTag).where(CourseTag.course_id == course_id, CourseTag.tag_id == tag_id).limit(1)
    )


async def attach_tag(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, tag_id: uuid.UUID) -> Tag:
    """Idempotent; a detached tag is re-attached by reviving its row."""
    course = await editable_course(session=session, actor=actor, course_id=course_id)
    tag = await session.get(Tag, tag_id)
    ensure_visible(tag, actor, catalog=True, what="tag")
    assert tag is not None
    # A course may only carry tags everyone who sees the course can see.
    if tag.institution_id is not None and tag.institution_id != course.institution_id:
        raise NotFound("tag not found")
    link = await _course_tag(session, course.id, tag.id)
    if link is None:
        session.add(
            CourseTag(
                id=natural_id("course_tag", course.id, tag.id),
                institution_id=course.institution_id,
                course_id=course.id,
                tag_id=tag.id,
            )
        )
    elif link.deleted_at is not None:
        link.deleted_at = None
    await session.flush()
    return tag


async def detach_tag(
    *, session: AsyncSession, actor: Actor, course_id: uuid.UUID, tag_id: uuid.UUID, clock: Clock
) -> None:
    course = await editable_course(session=session, actor=actor, course_id=course_id)
    link = await _course_tag(session, course.id, tag_id)
    if link is None or link.deleted_at is not None:
        raise NotFound("the course does not carry that tag")
    link.deleted_at = clock.now()
    await session.flush()


# Prerequisites


async def list_prerequisites(*, session: AsyncSession, actor: Actor, course_id: uuid.UUID, query: ListQuery) -> PageOf:
    """A deleted required course is left out: enrolling no longer needs it."""
    await readable_course(session=session, actor=actor, course_id=course_id, what="course")
    stmt = (
        sa.select(Prerequisite)
        .join(Course, Course.id == Prerequisite.required_course_id)
        .where(Prerequisite.course_id == course_id, Prerequisite.deleted_at.is_(None), Course.deleted_at.is_(None))
    )
    return await paginate(session, stmt, Prerequisite.id, cursor=query.cursor, limit=query.limit)


async def _requires(session: AsyncSession, start: uuid.UUID, target: uuid.UUID) -> bool:
    """Whether ``start`` already needs ``target``, directly or through other courses."""
    seen = {start}
    frontier = {start}
    while frontier:
        if target in frontier:
            return True
        required = set(
            await session.scalars(
                sa.select(Prerequisite.required_course_id).where(
                    Prerequisite.course_id.in_(frontier), Prerequisite.deleted_at.is_(None)
                )
            )
        )
        frontier = required - seen
        seen |= required
    return False


async def add_prerequisite(
    *, session: AsyncSession, actor: Actor, course_id: uuid.UUID, required_course_id: uuid.UUID
) -> Prerequisite:
    """Idempotent. Refuses a course requiring itself and any cycle, which would make both
    courses impossible to start."""
    course = await editable_course(session=session, actor=actor, course_id=course_id)
    if required_course_id == course.id:
        raise InvalidInput("a course cannot require itself", code="prerequisite_self")
    required = await session.get(Course, required_course_id)
    ensure_visible(required, actor, catalog=True, what="course")
    assert required is not None
    # Every learner who can see the course must be able to see (and complete) what it needs.
    if required.institution_id is not None and required.institution_id != course.institution_id:
        raise InvalidInput(
            "the required course must be the same institution's or a catalogue course",
            code="prerequisite_out_of_scope",
        )
    link = await session.scalar(
        sa.select(Prerequisite)
        .where(Prerequisite.course_id == course.id, Prerequisite.required_course_id == required.id)
        .limit(1)
    )
    if link is not None and link.deleted_at is None:
        return link
    if await _requires(session, required.id, course.id):
        raise Conflict("that prerequisite would make a cycle", code="prerequisite_cycle")
    if link is None:
        link = Prerequisite(
            id=natural_id("prerequisite", course.id, required.id),
            institution_id=course.institution_id,
            course_id=course.id,
            required_course_id=required.id,
        )
        session.add(link)
    else:
        link.deleted_at = None
    await session.flush()
    return link


async def remove_prerequisite(
    *, session: AsyncSession, actor: Actor, course_id: uuid.UUID, required_course_id: uuid.UUID, clock: Clock
) -> None:
    course = await editable_course(session=session, actor=actor, course_id=course_id)
    link = await session.scalar(
        sa.select(Prerequisite)
        .where(
            Prerequisite.course_id == course.id,
            Prerequisite.required_course_id == required_course_id,
            Prerequisite.deleted_at.is_(None),
        )
        .limit(1)
    )
    if link is None:
        raise NotFound("the course has no such prerequisite")
    link.deleted_at = clock.now()
    await session.flush()
