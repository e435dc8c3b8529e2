"""aiosqlite, one thread hop per statement.

SQLAlchemy's aiosqlite adapter drives an aiosqlite cursor: open it, execute, fetch the rows,
close it. Each of those is a round trip to the connection's thread, and each round trip
waits for the event loop to come back to it. Under load the loop is busy with other
requests, so a four-statement write transaction spends most of its time, with SQLite's
single write lock held, queued behind unrelated work: every other writer waits too.

Here a cursor does the whole statement (execute, fetch every row, close) in one hop and
hands SQLAlchemy the buffered rows. SQLAlchemy buffers them anyway (it has no server-side
cursors on this driver worth streaming), so nothing changes but the number of hops.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class OneHopCursor:
    """The subset of aiosqlite's cursor that SQLAlchemy's adapter uses."""

    arraysize = 1

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> OneHopCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    def _run(self, many: bool, sql: str, parameters: Any) -> tuple[list[Any], Any, int, int | None]:
        # On the connection's thread: sqlite3 objects never leave it.
        connection = self._connection._conn
        cursor = connection.executemany(sql, parameters) if many else connection.execute(sql, parameters)
        try:
            rows = cursor.fetchall() if cursor.description else []
            return rows, cursor.description, cursor.rowcount, cursor.lastrowid
        finally:
            cursor.close()

    async def _hop(self, many: bool, sql: str, parameters: Any) -> OneHopCursor:
        # aiosqlite's ``_execute`` (untyped) queues a call for the connection's thread, as
        # SQLAlchemy's own adapter does with its ``_tx`` queue.
        result = await self._connection._execute(self._run, many, sql, parameters)  # type: ignore[no-untyped-call]
        self._rows, self.description, self.rowcount, self.lastrowid = result
        return self

    async def execute(self, sql: str, parameters: Any = None) -> OneHopCursor:
        return await self._hop(False, sql, () if parameters is None else parameters)

    async def executemany(self, sql: str, parameters: Any) -> OneHopCursor:
        return await self._hop(True, sql, parameters)

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        count = self.arraysize if size is None else size
        taken, self._rows = self._rows[:count], self._rows[count:]
        return taken

    async def fetchall(self) -> Sequence[Any]:
        taken, self._rows = self._rows, []
        return taken

    async def close(self) -> None:
        self._rows = []

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None

    async def nextset(self) -> None:
        return None


class OneHopConnection(aiosqlite.Connection):
    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        return OneHopCursor(self)


def connector(database: str, *, timeout: float = 30) -> OneHopConnection:
    """For ``create_async_engine(async_creator=...)``: awaiting the connection starts its
    thread and opens the file, as ``aiosqlite.connect`` does."""

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(database, timeout=timeout)

    connection = OneHopConnection(connect, iter_chunk_size=64)
    connection._thread.daemon = True  # as SQLAlchemy's own adapter does: never block exit
    return connection


_UUID_NEW = uuid.UUID.__new__
_SET = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown


def _uuid_from_hex(value: str | None) -> uuid.UUID | None:
    """SQLite keeps a UUID as 32 hex digits. ``uuid.UUID(hex)`` re-checks and re-strips the
    string in Python (a tenth of a 50-row list's request went there); the same object made
    from the integer costs a third of that. Anything but 32 digits takes the careful path."""
    if value is None:
        return None
    if len(value) != 32:
        return uuid.UUID(value)
    made = _UUID_NEW(uuid.UUID)
    _SET(made, "int", int(value, 16))
    _SET(made, "is_safe", _UNKNOWN)
    return made


class HexUuid(sa.Uuid):  # type: ignore[type-arg]
    """``sa.Uuid`` as SQLite stores it (CHAR(32)), read back faster."""

    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if not self.as_uuid:
            processor: Callable[[Any], Any] | None = super().result_processor(dialect, coltype)  # type: ignore[no-untyped-call]
            return processor
        return _uuid_from_hex


def use_fast_types(dialect: Dialect) -> None:
    """Give this SQLite dialect (one engine's, not the class) the faster UUID reader; call
    before the engine runs its first statement (types are adapted once per dialect)."""
    dialect.colspecs = {**dialect.colspecs, sa.Uuid: HexUuid}
