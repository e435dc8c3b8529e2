"""Read projections: lists that go straight to JSON, run without an ORM session.

A session per read costs more than the query on a hot list (identity map, transaction and
greenlet bookkeeping). A projection is only ``execute``: a Core statement in, buffered rows
out, nothing to flush, nothing to roll back.

On PostgreSQL it is an ``AsyncConnection`` in autocommit. On SQLite, SQLAlchemy's aiosqlite
adapter makes four hops to the connection's thread per statement (cursor, execute, fetch,
close); here the whole statement (checkout, execute, fetch, checkin) runs on the standard
``sqlite3`` driver in one hop to a small thread pool, and the rows come back as dicts.
Connections there are ``query_only``: a projection cannot write, whatever it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.base import Executable

from lms_domain.db import READ_ONLY_OPTION
from lms_domain.sqlite_driver import use_fast_types

Params = Mapping[str, Any] | None


class Projection(Protocol):
    """One statement in, its rows out as plain dicts (pydantic validates a dict in its fast
    path, a SQLAlchemy row mapping through ``.get`` per field, three times slower)."""

    async def fetch(self, statement: Executable, parameters: Params = None) -> list[dict[str, Any]]: ...


def _as_dicts(result: Result[Any]) -> list[dict[str, Any]]:
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


class ConnectionProjection:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def fetch(self, statement: Executable, parameters: Params = None) -> list[dict[str, Any]]:
        return _as_dicts(await self._connection.execute(statement, dict(parameters or {})))


class Projections(Protocol):
    """Where handlers get a projection, one per unit of work."""

    def connect(self) -> AbstractAsyncContextManager[Projection]: ...

    async def close(self) -> None: ...


class ConnectionProjections:
    """PostgreSQL (or any async driver): a pooled connection in autocommit, so a read makes
    no BEGIN/COMMIT round trips."""

    def __init__(self, engine: AsyncEngine) -> None:
        options: dict[str, Any] = {READ_ONLY_OPTION: True}
        if engine.dialect.name == "postgresql":
            options["isolation_level"] = "AUTOCOMMIT"
        self._engine = engine.execution_options(**options)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Projection]:
        async with self._engine.connect() as connection:
            yield ConnectionProjection(connection)

    async def close(self) -> None:
        """The engine belongs to the caller."""


class SqliteThreadProjection:
    """One statement, one hop: the thread checks a connection out, runs and fetches, and
    checks it back in. Each statement sees the last commit (WAL), as in autocommit."""

    def __init__(self, engine: sa.Engine, executor: ThreadPoolExecutor) -> None:
        self._engine = engine
        self._executor = executor

    def _run(self, statement: Executable, parameters: Params) -> list[dict[str, Any]]:
        with self._engine.connect() as connection:
            return _as_dicts(connection.execute(statement, dict(parameters or {})))

    async def fetch(self, statement: Executable, parameters: Params = None) -> list[dict[str, Any]]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, statement, parameters)


class SqliteThreadProjections:
    """A small synchronous ``sqlite3`` pool beside the async engine, on the same file."""

    def __init__(self, engine: AsyncEngine, *, workers: int = 4) -> None:
        url = engine.url.set(drivername="sqlite")
        # As many connections as threads: a thread never waits for a connection. No reset on
        # return: query_only connections in autocommit never hold a transaction.
        self._sync = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=sa.QueuePool,
            pool_size=workers,
            max_overflow=0,
            pool_reset_on_return=None,
        )
        use_fast_types(self._sync.dialect)
        sa.event.listen(self._sync, "connect", _read_only_sqlite)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="somo-read")
        self._projection = SqliteThreadProjection(self._sync, self._executor)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Projection]:
        yield self._projection

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._sync.dispose()


def _read_only_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit (SELECTs never open a transaction); the busy timeout is ``connect_args``'.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA query_only=ON")


def open_projections(engine: AsyncEngine) -> Projections:
    """The projections for this engine's database; close them before disposing the engine."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return SqliteThreadProjections(engine)
    return ConnectionProjections(engine)
