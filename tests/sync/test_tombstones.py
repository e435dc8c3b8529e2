"""Deletes travel as tombstones and are collected once every node has pulled past them; a
client that slept through a collection is told so and copies afresh."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from lms_domain.changefeed.models import OutboxEntry
from lms_domain.tenancy.models import Learner
from server.jobs import context_of, run_job
from sync import state
from sync.checksums import scope_checksums
from sync.client import SyncClient, SyncError
from sync.protocol import SyncScope
from tests.sync.conftest import Central, Edge, EdgeFactory


async def delete_learner(edge: Edge, learner_id: uuid.UUID) -> None:
    async with edge.node.db.write() as session, session.begin():
        learner = await session.get(Learner, learner_id)
        assert learner is not None
        learner.deleted_at = edge.clock.now()


async def collect(central: Central) -> dict[str, int]:
    summary = await run_job(context_of(central.app), "sync-tombstones")
    assert summary is not None
    return summary


async def central_has(central: Central, learner_id: uuid.UUID) -> bool:
    return await central.scalar(sa.select(sa.func.count()).where(Learner.id == learner_id)) == 1


async def same_as_central(central: Central, edge: Edge) -> bool:
    scope = SyncScope(central.a.institution.id, uuid.uuid4())
    async with central.makers() as session:
        expected = await scope_checksums(session, scope)
    async with edge.node.db.read() as session:
        return await scope_checksums(session, scope) == expected


async def test_a_tombstone_is_collected_once_every_node_has_pulled_past_it(
    central: Central, make_edge: EdgeFactory
) -> None:
    first = await make_edge(central.a)
    second = await make_edge(central.a)
    await first.sync()
    await second.sync()
    gone = central.a.learners[2].id
    await delete_learner(first, gone)
    await first.sync()
    await first.sync()  # the central server now knows it applied its own deletion's echo

    assert await first.scalar(sa.select(sa.func.count()).where(Learner.id == gone)) == 0, "no tombstones kept here"
    assert (await collect(central))["rows"] == 0, "the second node has not heard yet"
    assert await central_has(central, gone)

    await second.sync()
    await second.sync()
    summary = await collect(central)

    assert summary["rows"] == 1 and not await central_has(central, gone)
    assert summary["feed_entries"] > 0, "superseded feed entries go too"
    assert await second.scalar(sa.select(sa.func.count()).where(Learner.id == gone)) == 0
    assert await same_as_central(central, first) and await same_as_central(central, second)


async def test_a_revoked_node_does_not_hold_collection_back(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    lost = await make_edge(central.a)  # stolen, never synced
    await edge.sync()
    admin = await central.token(central.a.admin_login)
    assert (await central.api("DELETE", f"/api/v1/edge-nodes/{lost.node.identity.node_id}", admin))[0] == 204
    await delete_learner(edge, central.a.learners[1].id)
    await edge.sync()
    await edge.sync()

    assert (await collect(central))["rows"] == 1


async def test_a_client_that_slept_through_a_collection_copies_afresh(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    async with edge.node.db.read() as session:
        old = await state.cursor(session)
    async with central.makers() as session, session.begin():  # more happens, and is collected
        learner = await session.get(Learner, central.a.learners[2].id)
        assert learner is not None
        learner.deleted_at = central.clock.now()
    await edge.sync()
    await edge.sync()
    assert (await collect(central))["rows"] == 1
    phone = SyncClient(central.http, central.url, bearer=await central.token(central.a.learner_login))

    with pytest.raises(SyncError) as expired:
        await phone.pull(old, 100)
    assert (expired.value.status, expired.value.code) == (410, "cursor_expired")

    async with edge.node.db.write() as session, session.begin():  # as if restored from that day
        await state.write(session, state.CURSOR, {"value": str(old)})
    report = await edge.sync()

    assert report.recopied and report.pulled_rows > 0
    assert await same_as_central(central, edge)
    assert await edge.scalar(sa.select(sa.func.count()).select_from(OutboxEntry)) == 0
