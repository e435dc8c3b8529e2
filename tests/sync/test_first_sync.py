"""Enrol a node, pull its scope, push its changes: the happy path end to end over HTTP."""

from __future__ import annotations

import sqlalchemy as sa

from lms_domain.changefeed.models import OutboxEntry
from lms_domain.courses.models import Course, Enrollment, LessonProgress
from lms_domain.learning import service as learning
from lms_domain.learning.schemas import ProgressUpdate
from lms_domain.platform.models import EdgeNode
from lms_domain.tenancy.models import Institution, Learner, User
from tests.sync.conftest import Central, EdgeFactory


async def test_a_new_node_pulls_its_school_and_the_catalogue_and_nothing_else(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge = await make_edge(central.a)
    report = await edge.sync()

    assert report.pulled_rows > 0
    assert await edge.scalar(sa.select(sa.func.count()).select_from(Institution)) == 1
    assert await edge.scalar(sa.select(Institution.id)) == central.a.institution.id
    assert await edge.scalar(sa.select(sa.func.count()).select_from(Learner)) == 3
    async with edge.node.db.read() as session:
        courses = set(await session.scalars(sa.select(Course.id)))
        hashes = set(await session.scalars(sa.select(User.password_hash)))
        pins = set(await session.scalars(sa.select(Learner.pin_hash)))
    assert courses == {central.a.course.course.id, central.catalogue.course.id}
    assert hashes == {"!"}, "password hashes never leave the central server"
    assert pins == {None}, "USSD PINs never leave the central server"


async def test_changes_made_at_school_reach_the_central_server_and_empty_the_outbox(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    learner = central.a.learners[1]
    lesson = central.a.course.lessons[0]
    async with edge.node.db.write() as session, session.begin():
        await learning.enroll(
            session=session,
            actor=edge.actor,
            course_id=central.a.course.course.id,
            learner_id=learner.id,
            clock=edge.clock,
        )
        await learning.record_progress(
            session=session,
            actor=edge.actor,
            lesson_id=lesson.id,
            data=ProgressUpdate(learner_id=learner.id, percent=60),
            clock=edge.clock,
        )
    assert await edge.scalar(sa.select(sa.func.count()).select_from(OutboxEntry)) > 0

    report = await edge.sync()

    assert report.pushed_rows == 2 and report.rejected == []
    assert await edge.scalar(sa.select(sa.func.count()).select_from(OutboxEntry)) == 0
    assert await central.scalar(sa.select(Enrollment.origin_node_id).where(Enrollment.learner_id == learner.id)) == (
        edge.node.identity.node_id
    )
    assert await central.scalar(sa.select(LessonProgress.percent).where(LessonProgress.learner_id == learner.id)) == 60
    node = await central.scalar(sa.select(EdgeNode).where(EdgeNode.id == edge.node.identity.node_id))
    assert node.last_sync_at is not None and node.rows_pushed == 2


async def test_a_sync_with_nothing_to_do_costs_one_request(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    await edge.sync()  # the first copy, and a token

    report = await edge.sync()

    assert (report.requests, report.pushed_rows, report.pulled_rows) == (1, 0, 0)
