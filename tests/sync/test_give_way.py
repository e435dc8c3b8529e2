"""While learners use a school's node, its sync gives way to them; otherwise it runs flat out.

The sync knows learners are there only from their units of work on the learners' engine, so
its own work must never look like theirs (it would slow every sync down for nothing).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import sqlalchemy as sa

import sync.runner
from tests.sync.conftest import Central, Edge, EdgeFactory


async def _learner_reading(edge: Edge, stop: asyncio.Event) -> None:
    while not stop.is_set():
        async with edge.node.db.read() as session:
            await session.execute(sa.select(1))
        await asyncio.sleep(0.02)


async def test_a_learners_read_is_noticed_and_the_syncs_own_work_is_not(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge = await make_edge(central.a)
    activity = edge.node.db.activity
    assert activity is not None
    activity.last = float("-inf")

    await edge.sync()
    await edge.sync()

    assert not activity.recent(within_s=3600), "a sync alone must not count as a learner"
    async with edge.node.db.read() as session:
        await session.execute(sa.select(1))
    assert activity.recent()


async def test_while_learners_use_the_node_the_pull_asks_for_smaller_batches(
    central: Central, make_edge: EdgeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync.runner, "BUSY_BATCH_ROWS", 5)
    idle, busy = await make_edge(central.a), await make_edge(central.a)

    quiet = await idle.sync()
    stop = asyncio.Event()
    learner = asyncio.create_task(_learner_reading(busy, stop))
    try:
        await asyncio.sleep(0.05)
        crowded = await busy.sync()
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await learner

    assert quiet.pulled_batches == 1 and quiet.pulled_rows > 10
    assert crowded.pulled_rows == quiet.pulled_rows, "giving way loses nothing"
    assert crowded.pulled_batches >= quiet.pulled_rows // 5
