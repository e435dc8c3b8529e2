"""Conflict policy per table, over the real protocol: last writer wins with a logged
conflict for profiles, monotone merges for progress, and merges a skewed clock cannot bend."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.orm.exc

from lms_domain.changefeed.models import SyncConflict
from lms_domain.courses.models import Enrollment, LessonProgress
from lms_domain.learning import service as learning
from lms_domain.learning.schemas import ProgressUpdate
from lms_domain.tenancy.models import Learner
from sync.runner import SyncReport, pull
from tests.sync.conftest import Central, Edge, EdgeFactory


async def rename_at(makers: Any, learner_id: uuid.UUID, name: str) -> None:
    async with makers() as session, session.begin():
        learner = await session.get(Learner, learner_id)
        learner.display_name = name


async def progress_at(
    makers: Any, actor: Any, clock: Any, learner_id: uuid.UUID, course_id: uuid.UUID, lesson_id: uuid.UUID, pct: int
) -> None:
    async with makers() as session, session.begin():
        enrolled = await session.scalar(
            sa.select(Enrollment.id).where(Enrollment.learner_id == learner_id, Enrollment.course_id == course_id)
        )
        if enrolled is None:
            await learning.enroll(session=session, actor=actor, course_id=course_id, learner_id=learner_id, clock=clock)
        await learning.record_progress(
            session=session,
            actor=actor,
            lesson_id=lesson_id,
            data=ProgressUpdate(learner_id=learner_id, percent=pct),
            clock=clock,
        )


def central_actor(central: Central) -> Any:
    from lms_domain.access import Actor
    from lms_domain.tenancy.models import Role

    return Actor(user_id=None, role=Role.INSTITUTION_ADMIN, institution_id=central.a.institution.id)


async def names(holder: Central | Edge) -> dict[uuid.UUID, str]:
    makers = holder.makers if isinstance(holder, Central) else holder.node.db.read
    async with makers() as session:
        rows = await session.execute(
            sa.select(Learner.id, Learner.display_name).where(Learner.institution_id == holder_institution(holder))
        )
        return {k: v for k, v in rows}  # noqa: C416 - rows are Row objects, not pairs


def holder_institution(holder: Central | Edge) -> uuid.UUID:
    return holder.a.institution.id if isinstance(holder, Central) else holder.node.identity.institution_id


async def test_concurrent_profile_edits_converge_and_the_loser_is_logged(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    learner = central.a.learners[0].id
    await rename_at(central.makers, learner, "Changed at the office")
    await rename_at(edge.node.db.write, learner, "Changed at school")

    await edge.sync()

    assert await names(central) == await names(edge)
    conflict = await central.scalar(sa.select(SyncConflict))
    assert conflict is not None and conflict.row_id == learner and conflict.table_name == "learners"
    winner = (await names(central))[learner]
    assert {winner, conflict.loser["display_name"]} == {"Changed at the office", "Changed at school"}


async def test_a_plain_successor_is_not_a_conflict(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    learner = central.a.learners[0].id
    await rename_at(edge.node.db.write, learner, "Edited once at school")
    await edge.sync()
    await rename_at(central.makers, learner, "Then at the office")
    await edge.sync()
    await rename_at(edge.node.db.write, learner, "Then at school again")

    await edge.sync()

    assert (await names(central))[learner] == "Then at school again" == (await names(edge))[learner]
    assert await central.scalar(sa.select(sa.func.count()).select_from(SyncConflict)) == 0


async def test_progress_from_two_places_merges_monotonically(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    course = central.a.course
    learner = central.a.learners[0].id
    await progress_at(edge.node.db.write, edge.actor, edge.clock, learner, course.course.id, course.lessons[0].id, 60)
    await progress_at(
        central.makers, central_actor(central), central.clock, learner, course.course.id, course.lessons[0].id, 30
    )
    await progress_at(
        central.makers, central_actor(central), central.clock, learner, course.course.id, course.lessons[1].id, 100
    )

    await edge.sync()
    await edge.sync()

    async def percents(makers: Any) -> dict[uuid.UUID, int]:
        async with makers() as session:
            rows = await session.execute(sa.select(LessonProgress.lesson_id, LessonProgress.percent))
            return {k: v for k, v in rows}  # noqa: C416 - rows are Row objects, not pairs

    expected = {course.lessons[0].id: 60, course.lessons[1].id: 100}
    assert await percents(central.makers) == expected == await percents(edge.node.db.read)
    assert await central.scalar(sa.select(sa.func.count()).select_from(SyncConflict)) == 0


@pytest.mark.parametrize("skew", [timedelta(days=-1), timedelta(0), timedelta(days=1)], ids=["-1d", "0", "+1d"])
async def test_a_skewed_node_clock_gives_the_same_merge(
    central: Central, make_edge: EdgeFactory, skew: timedelta
) -> None:
    edge = await make_edge(central.a, skew=skew)
    await edge.sync()
    course = central.a.course
    first, second = central.a.learners[0].id, central.a.learners[1].id
    office = central_actor(central)

    # Causally ordered edits: each writer has seen the other's last version before editing.
    await rename_at(edge.node.db.write, first, "School 1")
    await progress_at(edge.node.db.write, edge.actor, edge.clock, first, course.course.id, course.lessons[0].id, 50)
    await edge.sync()
    await rename_at(central.makers, first, "Office 2")
    await progress_at(central.makers, office, central.clock, first, course.course.id, course.lessons[0].id, 40)
    await edge.sync()
    await rename_at(edge.node.db.write, first, "School 3")
    await rename_at(edge.node.db.write, second, "School only")
    await progress_at(edge.node.db.write, edge.actor, edge.clock, first, course.course.id, course.lessons[1].id, 20)
    await edge.sync()
    await rename_at(central.makers, second, "Office last")
    await edge.sync()

    expected = {first: "School 3", second: "Office last"}
    for holder in (central, edge):
        got = await names(holder)
        assert {k: got[k] for k in expected} == expected
    assert await central.scalar(sa.select(sa.func.count()).select_from(SyncConflict)) == 0
    async with edge.node.db.read() as session:
        rows = await session.execute(sa.select(LessonProgress.lesson_id, LessonProgress.percent))
        on_edge = {k: v for k, v in rows}  # noqa: C416 - rows are Row objects, not pairs
    assert on_edge == {course.lessons[0].id: 50, course.lessons[1].id: 20}


# On SQLite a unit of work that may write holds the one writer lock from its first statement, so
# a merge cannot come in between; on Postgres it can, and the version check refuses the write.
@pytest.mark.backend_only("postgres")
async def test_a_write_based_on_a_version_a_sync_replaced_is_refused(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    learner_id = central.a.learners[0].id
    async with central.makers() as office:
        learner = await office.get(Learner, learner_id)  # the office reads...
        assert learner is not None
        await rename_at(edge.node.db.write, learner_id, "Renamed at school")
        await edge.sync()  # ...a school's newer version is merged meanwhile...
        learner.display_name = "Renamed from a stale read"  # ...and the office writes

        with pytest.raises(sa.orm.exc.StaleDataError):
            await office.commit()

    assert (await names(central))[learner_id] == "Renamed at school"


async def test_what_a_node_adds_to_a_merge_before_pushing_still_reaches_the_central_server(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    course = central.a.course
    learner, leaver = central.a.learners[0].id, central.a.learners[1].id
    await progress_at(edge.node.db.write, edge.actor, edge.clock, learner, course.course.id, course.lessons[0].id, 60)
    async with edge.node.db.write() as session, session.begin():
        row = await session.get(Learner, leaver)
        assert row is not None
        row.deleted_at = edge.clock.now()
    central.clock.advance(timedelta(minutes=5))  # the office's versions are the newer ones
    await progress_at(
        central.makers, central_actor(central), central.clock, learner, course.course.id, course.lessons[0].id, 30
    )
    await rename_at(central.makers, leaver, "Renamed at the office")

    # The node pulls before it pushes (changes made while a sync runs go out next time).
    await pull(edge.node.db, edge.client, SyncReport(), 500)
    await edge.sync()

    async with central.makers() as session:
        percent = await session.scalar(sa.select(LessonProgress.percent).where(LessonProgress.learner_id == learner))
        gone = await session.scalar(sa.select(Learner.deleted_at).where(Learner.id == leaver))
    assert percent == 60, "the node's higher progress was lost"
    assert gone is not None, "the node's deletion was lost"
