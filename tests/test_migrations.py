"""The migrations build exactly the models' schema on empty SQLite and Postgres databases.

Synchronous tests: alembic's environment runs its own event loop, as it does under
``somo migrate``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.util import CommandError

from lms_domain.db import create_engine
from lms_domain.models import Base
from server.migrate import alembic_config, check, head_revision, upgrade


async def _tables_and_version(url: str) -> tuple[set[str], str | None]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
            version = (
                await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
                if ("alembic_version" in tables)
                else None
            )
        return tables, version
    finally:
        await engine.dispose()


def test_upgrade_head_matches_the_models(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    check(empty_database_url)  # raises if autogenerate finds any difference
    tables, version = asyncio.run(_tables_and_version(empty_database_url))
    assert set(Base.metadata.tables) <= tables
    assert version == head_revision()


def test_downgrade_to_base_and_back(empty_database_url: str) -> None:
    upgrade(empty_database_url)
    command.downgrade(alembic_config(empty_database_url), "base")
    tables, _ = asyncio.run(_tables_and_version(empty_database_url))
    assert tables & set(Base.metadata.tables) == set()
    upgrade(empty_database_url)
    check(empty_database_url)


def test_check_notices_a_schema_drift(empty_database_url: str) -> None:
    upgrade(empty_database_url)

    async def add_stray_table() -> None:
        engine = create_engine(empty_database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text("CREATE TABLE stray_table (id INTEGER PRIMARY KEY)"))
        finally:
            await engine.dispose()

    asyncio.run(add_stray_table())
    with pytest.raises(CommandError):
        check(empty_database_url)


def test_constraints_have_stable_names(empty_database_url: str) -> None:
    upgrade(empty_database_url)

    async def inspect() -> tuple[list[Any], list[Any]]:
        engine = create_engine(empty_database_url)
        try:
            async with engine.connect() as conn:
                uniques = await conn.run_sync(lambda c: sa.inspect(c).get_unique_constraints("enrollments"))
                checks = await conn.run_sync(lambda c: sa.inspect(c).get_check_constraints("invoices"))
        finally:
            await engine.dispose()
        return uniques, checks

    uniques, checks = asyncio.run(inspect())
    assert {u["name"] for u in uniques} >= {"uq_enrollments_learner_id_course_id"}
    assert {c["name"] for c in checks} >= {"ck_invoices_vat_plus_net_is_total", "ck_invoices_vat_rate_in_range"}
