"""SQLite locking: writers queue for the lock, readers never wait for writers."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lms_domain.changefeed import SyncContext
from lms_domain.db import make_sessionmaker
from lms_domain.tenancy.models import Institution
from tests.factories import make_institution


@pytest.mark.backend_only("sqlite")  # Postgres readers never wait for writers (MVCC)
async def test_reads_do_not_wait_for_an_open_write(engine: AsyncEngine, sync_context: SyncContext) -> None:
    writers = make_sessionmaker(engine, sync_context)
    readers = make_sessionmaker(engine, sync_context, read_only=True)
    async with writers() as setup:
        await make_institution(setup, name="Before")
        await setup.commit()

    async with writers() as writer:
        await make_institution(writer, name="Uncommitted")  # holds SQLite's write lock
        async with readers() as reader:
            names = await asyncio.wait_for(reader.scalars(sa.select(Institution.name)), timeout=2)
            assert list(names) == ["Before"]
        second_writer = asyncio.create_task(_count_after_write(writers))
        await asyncio.sleep(0.3)
        assert not second_writer.done()  # a second writer waits for the lock instead of failing
        await writer.commit()
    assert await asyncio.wait_for(second_writer, timeout=10) == 3


async def _count_after_write(writers: async_sessionmaker[AsyncSession]) -> int:
    async with writers() as session:
        await make_institution(session, name="Second")
        await session.commit()
        return int(await session.scalar(sa.select(sa.func.count()).select_from(Institution)) or 0)


@pytest.mark.backend_only("sqlite")
async def test_a_connection_returned_mid_transaction_frees_the_writer_queue(engine: AsyncEngine) -> None:
    # A connection closed without commit or rollback must not keep other writers waiting.
    conn = await engine.connect()
    await conn.execute(sa.text("SELECT 1"))  # BEGIN IMMEDIATE: this connection now writes
    await conn.close()
    async with engine.begin() as other:
        await asyncio.wait_for(other.execute(sa.text("SELECT 1")), timeout=2)
