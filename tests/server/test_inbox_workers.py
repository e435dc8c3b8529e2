"""The inbox workers: every submitted event is processed once, in batches, a failing event
neither stops its batch nor is lost (its error is recorded on the row), and drain waits."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock, FixedClock
from lms_domain.ids import new_id
from lms_domain.payments.models import Provider, WebhookEvent, WebhookStatus
from server.inbox_workers import InboxWorkers
from tests.conftest import T0


async def _events(sessionmaker: async_sessionmaker[AsyncSession], n: int) -> list[uuid.UUID]:
    ids = [new_id() for _ in range(n)]
    async with sessionmaker() as session, session.begin():
        session.add_all(
            WebhookEvent(
                id=event_id,
                provider=Provider.MPESA,
                kind="stk_callback",
                event_key=f"ws_CO_{i}",
                body_sha256=f"{i:064d}",
                body="{}",
                status=WebhookStatus.RECEIVED,
                received_at=T0,
            )
            for i, event_id in enumerate(ids)
        )
    return ids


async def test_events_are_processed_once_in_batches_and_failures_are_recorded(
    sessionmaker: async_sessionmaker[AsyncSession], clock: FixedClock
) -> None:
    ids = await _events(sessionmaker, 10)
    bad = ids[3]
    seen: list[uuid.UUID] = []
    transactions: set[int] = set()

    async def work(session: AsyncSession, event_id: uuid.UUID, _: Clock) -> None:
        transactions.add(id(session))
        seen.append(event_id)
        if event_id == bad:
            raise RuntimeError("no such intent")
        await session.execute(
            sa.update(WebhookEvent).where(WebhookEvent.id == event_id).values(status=WebhookStatus.PROCESSED)
        )

    workers = InboxWorkers(sessionmaker, clock, workers=1, batch=4)
    for event_id in ids + ids[:5]:  # duplicates while queued add nothing
        workers.submit_tx(work, event_id)
    await workers.drain()
    await workers.stop()

    assert sorted(seen) == sorted(ids)
    assert len(transactions) == 3  # 10 events, 4 per transaction
    async with sessionmaker() as session:
        rows = {row.id: row for row in await session.scalars(sa.select(WebhookEvent))}
    assert rows[bad].status is WebhookStatus.RECEIVED and "no such intent" in (rows[bad].error or "")
    assert rows[bad].attempts == 1
    assert all(rows[i].status is WebhookStatus.PROCESSED for i in ids if i != bad)


async def test_standalone_work_runs_beside_batches_and_drain_waits_for_it(
    sessionmaker: async_sessionmaker[AsyncSession], clock: FixedClock
) -> None:
    [event_id] = await _events(sessionmaker, 1)
    done = asyncio.Event()

    async def slow(_: uuid.UUID) -> None:
        await asyncio.sleep(0.05)
        done.set()

    workers = InboxWorkers(sessionmaker, clock, workers=2)
    workers.submit(slow, event_id)
    assert len(workers) == 1
    await workers.drain()
    assert done.is_set() and len(workers) == 0
    await workers.stop()
