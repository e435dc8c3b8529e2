"""Sequences become visible in order: a cursor that moved past seq k never misses a change
numbered below k that committed later. On Postgres, with writers holding their transactions
open while a reader pulls in a tight loop."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sync.feed import read_batch
from sync.protocol import Cursor, SyncScope
from tests.factories import make_institution, make_learner

WRITERS = 12


@pytest.mark.backend_only("postgres")
async def test_a_cursor_never_skips_a_change_that_commits_late(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        institution = await make_institution(session)
    scope = SyncScope(institution.id, uuid.uuid4())
    rng = random.Random(7)
    written: set[uuid.UUID] = set()
    done = asyncio.Event()

    async def writer(n: int) -> None:
        for _ in range(5):
            async with sessionmaker() as session, session.begin():
                learner = await make_learner(session, institution=institution, name=f"W{n}", pin=None)
                # Hold the transaction (and its sequence number) open a while.
                await asyncio.sleep(rng.uniform(0, 0.03))
            written.add(learner.id)

    seen: set[uuid.UUID] = set()
    cursor = Cursor()

    async def reader() -> None:
        nonlocal cursor
        while True:
            finished = done.is_set()
            async with sessionmaker() as session:
                batch = await read_batch(session, scope, cursor, max_rows=7, max_bytes=10**6)
            for name, (columns, rows) in batch.tables.items():
                if name == "learners":
                    seen.update(uuid.UUID(hex=row[columns.index("id")]) for row in rows)
            cursor = batch.cursor
            if finished and not batch.more:
                return
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    done.set()
    await reading

    assert len(written) == WRITERS * 5
    assert written <= seen, f"{len(written - seen)} committed changes were skipped by the cursor"
