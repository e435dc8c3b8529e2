"""The SQLite driver: each statement is one hop to the connection's thread, and SQLAlchemy
still gets what a DB-API cursor gives (rows, rowcount, RETURNING, errors)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from lms_domain.sqlite_driver import OneHopConnection

pytestmark = pytest.mark.backend_only("sqlite")

_ROWS = sa.table("hop_rows", sa.column("id", sa.Integer), sa.column("label", sa.String))


class _CountingQueue:
    """Counts what is handed to the connection's thread, and hands it on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.hops = 0

    def put_nowait(self, item: Any) -> None:
        self.hops += 1
        self.inner.put_nowait(item)


async def test_a_statement_is_one_hop(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("CREATE TEMP TABLE hop_rows (id INTEGER PRIMARY KEY, label TEXT UNIQUE)"))
        await conn.execute(sa.insert(_ROWS), [{"id": n, "label": f"row {n}"} for n in range(1, 101)])
        driver = (await conn.get_raw_connection()).driver_connection
        assert isinstance(driver, OneHopConnection)
        counter = _CountingQueue(driver._tx)
        driver._tx = counter  # type: ignore[assignment]
        rows = (await conn.execute(sa.select(_ROWS).order_by(_ROWS.c.id))).all()
        assert counter.hops == 1  # aiosqlite's own cursor takes four: open, execute, fetch, close
        assert len(rows) == 100 and rows[-1].label == "row 100"


async def test_rowcount_returning_and_errors_reach_sqlalchemy(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("CREATE TEMP TABLE hop_rows (id INTEGER PRIMARY KEY, label TEXT UNIQUE)"))
        await conn.execute(sa.insert(_ROWS), [{"id": n, "label": f"row {n}"} for n in range(1, 6)])
        await conn.commit()
        updated = await conn.execute(sa.update(_ROWS).where(_ROWS.c.id <= 3).values(label=_ROWS.c.label + "!"))
        assert updated.rowcount == 3  # the ORM's stale-row check depends on it
        returned = await conn.execute(sa.insert(_ROWS).values(id=6, label="six").returning(_ROWS.c.id))
        assert returned.scalar_one() == 6
        with pytest.raises(sa.exc.IntegrityError):
            await conn.execute(sa.insert(_ROWS).values(id=7, label="six"))
        await conn.rollback()  # the update and the insert before the error go with it
        labels = (await conn.execute(sa.select(_ROWS.c.label).order_by(_ROWS.c.id))).scalars().all()
        assert labels == [f"row {n}" for n in range(1, 6)]


async def test_uuids_read_back_equal_whatever_form_they_were_stored_in(engine: AsyncEngine) -> None:
    ids = sa.table("hop_ids", sa.column("id", sa.Uuid()))
    stored = uuid.uuid4()
    legacy = uuid.uuid4()  # written by hand with hyphens, as a raw-SQL fix-up might
    async with engine.connect() as conn:
        await conn.execute(sa.text("CREATE TEMP TABLE hop_ids (id CHAR(36))"))
        await conn.execute(sa.insert(ids).values(id=stored))
        await conn.execute(sa.text("INSERT INTO hop_ids (id) VALUES (:id)"), {"id": str(legacy)})
        await conn.execute(sa.text("INSERT INTO hop_ids (id) VALUES (NULL)"))
        read = (await conn.execute(sa.select(ids.c.id))).scalars().all()
    assert read == [stored, legacy, None]
    assert all(type(value) is uuid.UUID for value in read[:2])
    assert {read[0]: "found"}[stored] == "found"  # hashes as the original does
    assert str(read[0]) == str(stored) and read[0].version == 4
