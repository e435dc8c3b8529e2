"""Throwaway databases for benchmarks: a file under a temporary folder, or a Postgres
database created for the run and dropped after it."""

from __future__ import annotations

import uuid

import asyncpg


async def fresh_database(backend: str, dsn: str, workdir: str) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{workdir}/bench-{uuid.uuid4().hex[:8]}.db"
    name = f"somo_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return dsn.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"


async def drop_database(url: str, dsn: str) -> None:
    if url.startswith("postgresql"):
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await conn.close()
