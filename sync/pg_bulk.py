"""Postgres bulk statements for the central server's side of a push: one array per column.

SQLAlchemy's executemany with ``RETURNING`` renders a batch as one ``VALUES`` list with a
bound parameter per value: Python handles each value, and Postgres parses and plans a new
statement for every batch size (15 columns x 2,000 rows is 30,000 parameters). With
``unnest($1::uuid[], $2::varchar[], ...)`` the statement takes one parameter per column, is
prepared once per shape, and asyncpg encodes the arrays in C. The statements run on the
session's own connection, inside its transaction.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.types import UTCDateTime


def _array_type(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, UTCDateTime | sa.DateTime):
        return "TIMESTAMP WITH TIME ZONE"
    if isinstance(kind, sa.Enum):
        return "VARCHAR"
    if isinstance(kind, sa.JSON):
        return "JSON"
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(kind.compile(dialect=dialect))


def unnest_source(target: sa.Table, columns: Sequence[str]) -> sa.TextClause:
    """``unnest(CAST($1 AS UUID[]), ...) AS u(col, ...)`` for ``columns`` of ``target``."""
    arrays = ", ".join(f"CAST(${i} AS {_array_type(target.c[name])}[])" for i, name in enumerate(columns, 1))
    names = ", ".join(f'"{name}"' for name in columns)
    return sa.text(f"unnest({arrays}) AS u({names})")


@functools.lru_cache(maxsize=64)
def _json_columns(target: sa.Table, columns: tuple[str, ...]) -> frozenset[int]:
    return frozenset(i for i, name in enumerate(columns) if isinstance(target.c[name].type, sa.JSON))


def column_arrays(target: sa.Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """The rows as one list per column, in the form asyncpg encodes: JSON as text (the
    connection's codec, set by SQLAlchemy, takes JSON as already-serialised text)."""
    arrays = [[row[name] for row in rows] for name in columns]
    for index in _json_columns(target, tuple(columns)):
        arrays[index] = [None if v is None else json.dumps(v) for v in arrays[index]]
    return arrays


async def driver(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's connection (same transaction)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


@functools.lru_cache(maxsize=16)
def unnest_insert_sql(target: sa.Table, columns: tuple[str, ...]) -> str:
    """A plain insert of the rows given as one array per column (``column_arrays``)."""
    source: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(unnest_source(target, columns))
    stmt = sa.insert(target).from_select(list(columns), source, include_defaults=False)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(stmt.compile(dialect=dialect))
