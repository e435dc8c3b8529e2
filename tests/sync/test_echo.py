"""A node is spared the rows it pushed itself, unless it may no longer hold them.

Sending a pushed row straight back doubled the traffic of every push and made the central
server read and encode each row twice. The saving must never cost a row: a row the merge
changed comes back, and a node that dropped its rows (a fresh copy) or whose watermark is
behind (a restored backup) gets everything.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from lms_domain.courses.models import Enrollment, LessonProgress
from lms_domain.learning import service as learning
from lms_domain.learning.schemas import ProgressUpdate
from lms_domain.tenancy.models import Learner
from sync import state
from sync.client import SyncError
from sync.protocol import Cursor
from sync.runner import forget_synced_rows
from tests.sync.conftest import Central, Edge, EdgeFactory, School


async def _enroll_with_progress(edge: Edge, school: School, percent: int = 30) -> None:
    learner = school.learners[1]
    async with edge.node.db.write() as session, session.begin():
        await learning.enroll(
            session=session,
            actor=edge.actor,
            course_id=school.course.course.id,
            learner_id=learner.id,
            clock=edge.clock,
        )
        await learning.record_progress(
            session=session,
            actor=edge.actor,
            lesson_id=school.course.lessons[0].id,
            data=ProgressUpdate(learner_id=learner.id, percent=percent),
            clock=edge.clock,
        )


async def _watermark(edge: Edge) -> str:
    async with edge.node.db.read() as session:
        acked = int((await state.read(session, state.PUSH))["acked"])
    return f"{edge.node.identity.epoch}.{acked}"


def _tables(document: dict[str, object]) -> set[str]:
    return {t["t"] for t in document["tables"]}  # type: ignore[attr-defined,index]


async def test_new_rows_a_node_pushed_do_not_come_back_but_reach_its_neighbours(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge, neighbour = await make_edge(central.a), await make_edge(central.a)
    await edge.sync()
    await neighbour.sync()
    await _enroll_with_progress(edge, central.a)

    report = await edge.sync()

    assert (report.pushed_rows, report.pulled_rows) == (2, 0)
    seen = await neighbour.sync()
    assert seen.pulled_rows == 2
    assert await neighbour.scalar(sa.select(sa.func.count()).select_from(Enrollment)) == 1


async def test_a_row_the_merge_changed_comes_back(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    learner_id = central.a.learners[0].id
    async with edge.node.db.write() as session, session.begin():
        learner = await session.get(Learner, learner_id)
        assert learner is not None
        learner.display_name = "Renamed at school"

    report = await edge.sync()

    # The learner existed centrally: its entry names the central server, so the node
    # receives the merged row (here the same; a monotone or narrowed merge may differ).
    assert (report.pushed_rows, report.pulled_rows) == (1, 1)
    assert await central.scalar(sa.select(Learner.display_name).where(Learner.id == learner_id)) == "Renamed at school"


async def test_a_node_behind_its_watermark_or_without_one_gets_its_own_rows(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    await _enroll_with_progress(edge, central.a)
    await edge.sync()
    current = await _watermark(edge)
    epoch, acked = current.split(".")

    spared = await edge.client.pull(Cursor(), 5000, pushed=current)
    behind = await edge.client.pull(Cursor(), 5000, pushed=f"{epoch}.{int(acked) - 1}")
    plain = await edge.client.pull(Cursor(), 5000)

    assert "enrollments" not in _tables(spared) and "lesson_progress" not in _tables(spared)
    assert {"enrollments", "lesson_progress"} <= _tables(behind)
    assert {"enrollments", "lesson_progress"} <= _tables(plain)
    with pytest.raises(SyncError) as refused:
        await edge.client.pull(Cursor(), 10, pushed="soon")
    assert (refused.value.status, refused.value.code) == (422, "invalid_request")


async def test_a_fresh_copy_brings_back_what_the_node_pushed_even_if_cut_short(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    await _enroll_with_progress(edge, central.a, percent=45)
    await edge.sync()
    async with edge.node.db.apply() as session, session.begin():
        await forget_synced_rows(session)
    assert await edge.scalar(sa.select(sa.func.count()).select_from(Enrollment)) == 0

    # The copy is cut after its first small batch: the next sync still must not be spared.
    real_pull = edge.client.pull
    calls = 0

    async def link_drops_after_one_batch(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise SyncError(503, "link_down", "the school's link dropped")
        return await real_pull(*args, **kwargs)

    edge.client.pull = link_drops_after_one_batch  # type: ignore[method-assign]
    with pytest.raises(SyncError):
        await edge.sync(batch_rows=5)
    edge.client.pull = real_pull  # type: ignore[method-assign]
    async with edge.node.db.read() as session:
        assert await state.read(session, state.RECOPY) == {"active": True}
    await edge.sync()

    assert await edge.scalar(sa.select(sa.func.count()).select_from(Enrollment)) == 1
    assert await edge.scalar(sa.select(LessonProgress.percent)) == 45
    async with edge.node.db.read() as session:
        assert await state.read(session, state.RECOPY) == {}
