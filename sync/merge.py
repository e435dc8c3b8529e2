"""The merge of ``sync.policy`` as one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` per table.

The merge runs inside the database, on a whole batch in one statement, on SQLite and
Postgres alike: no row is read into Python to be compared, which is where the slow
systems in ``sync-lessons.md`` spent their time (one query per row). The ``WHERE`` makes
a row that would not change produce no write at all, so a replayed batch costs reads only
and, on the central server, assigns no new sequence numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sync.pg_bulk import unnest_source
from sync.policy import POLICIES, Combine, Merge, TablePolicy, table

VERSION_COLUMNS = ("hlc", "origin_node_id", "updated_at", "change_seq")


def _newer(excluded: Any, target: sa.Table) -> sa.ColumnElement[bool]:
    """The incoming version wins: a higher HLC, or the same HLC from a higher node id."""
    return sa.or_(
        excluded.hlc > target.c.hlc,
        sa.and_(excluded.hlc == target.c.hlc, excluded.origin_node_id > target.c.origin_node_id),
    )


def _sticky_delete(excluded: Any, target: sa.Table) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[bool]]:
    """Delete wins and the earliest deletion time is kept: a tombstone never comes back to
    life because a concurrent edit had a higher clock."""
    mine, theirs = target.c.deleted_at, excluded.deleted_at
    value = sa.case(
        (mine.is_(None), theirs),
        (theirs.is_(None), mine),
        (theirs < mine, theirs),
        else_=mine,
    )
    changes = sa.and_(theirs.is_not(None), sa.or_(mine.is_(None), theirs < mine))
    return value, changes


def _join(kind: Combine, mine: Any, theirs: Any) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[bool]]:
    better = theirs > mine if kind is Combine.MAX else theirs < mine
    value = sa.case((mine.is_(None), theirs), (theirs.is_(None), mine), (better, theirs), else_=mine)
    return value, sa.and_(theirs.is_not(None), sa.or_(mine.is_(None), better))


def upsert(
    policy: TablePolicy,
    columns: Sequence[str],
    dialect: str,
    *,
    updatable: frozenset[str] | None = None,
    returning: bool = False,
) -> Any:
    """The merge statement for rows carrying ``columns``, to run with executemany.

    ``updatable`` narrows what an existing row may have changed (an edge editing a learner
    may touch the profile, not the account number); the version columns always move.
    Built once per shape and cached: a sync sends the same few shapes thousands of times.
    """
    return _upsert(policy.name, tuple(columns), dialect, updatable, returning)


def unnest_upsert_sql(policy: TablePolicy, columns: Sequence[str], *, updatable: frozenset[str] | None) -> str:
    """``upsert`` for Postgres as SQL text taking one array per column (``unnest``), with
    ``RETURNING id, change_seq``: one prepared statement whatever the batch size, and no
    per-value parameter handling in Python (see ``sync.pg_bulk``)."""
    return _unnest_upsert(policy.name, tuple(columns), updatable)


@functools.lru_cache(maxsize=512)
def _unnest_upsert(name: str, columns: tuple[str, ...], updatable: frozenset[str] | None) -> str:
    target = table(name)
    # Columns a node never sends (private ones) take their defaults, as constants in the text.
    defaults = [c for c in target.columns if c.name not in columns and c.default is not None and c.default.is_scalar]
    constants = [sa.literal(c.default.arg, type_=c.type).label(c.name) for c in defaults]  # type: ignore[union-attr]
    source = sa.select(sa.literal_column("*"), *constants).select_from(unnest_source(target, columns)).where(sa.true())
    insert = postgresql.insert(target).from_select(
        [*columns, *(c.name for c in defaults)], source, include_defaults=False
    )
    stmt = _merge_clause(POLICIES[name], insert, target, columns, updatable).returning(target.c.id, target.c.change_seq)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


@functools.lru_cache(maxsize=512)
def _upsert(
    name: str, columns: tuple[str, ...], dialect: str, updatable: frozenset[str] | None, returning: bool
) -> Any:
    policy = POLICIES[name]
    target = table(policy.name)
    insert = postgresql.insert(target) if dialect == "postgresql" else sqlite.insert(target)
    stmt = _merge_clause(policy, insert, target, columns, updatable)
    if returning:
        stmt = stmt.returning(target.c.id, target.c.change_seq)
    return stmt


def _merge_clause(
    policy: TablePolicy, insert: Any, target: sa.Table, columns: Sequence[str], updatable: frozenset[str] | None
) -> Any:
    excluded = insert.excluded
    sets: dict[str, Any] = {}
    where: sa.ColumnElement[bool]

    def may_set(name: str) -> bool:
        return name != "id" and (updatable is None or name in updatable or name in VERSION_COLUMNS)

    if policy.merge is Merge.SERVER:
        # The central feed's order is the version: a replayed older batch never regresses a row.
        for name in columns:
            if may_set(name):
                sets[name] = excluded[name]
        where = sa.or_(target.c.change_seq.is_(None), excluded.change_seq > target.c.change_seq)
    else:
        newer = _newer(excluded, target)
        conditions = [newer]
        for name in columns:
            if not may_set(name) or name == "deleted_at":
                continue
            combine = policy.combine.get(name) if policy.merge is Merge.MONOTONE else None
            if combine is not None:
                sets[name], improves = _join(combine, target.c[name], excluded[name])
                conditions.append(improves)
            elif name == "hlc":
                sets[name] = sa.case((excluded.hlc > target.c.hlc, excluded.hlc), else_=target.c.hlc)
            elif name == "change_seq":
                sets[name] = excluded.change_seq
            else:
                sets[name] = sa.case((newer, excluded[name]), else_=target.c[name])
        if "deleted_at" in columns and may_set("deleted_at"):
            sets["deleted_at"], deletes = _sticky_delete(excluded, target)
            conditions.append(deletes)
        where = sa.or_(*conditions)

    return insert.on_conflict_do_update(index_elements=[target.c.id], set_=sets, where=where)


def insert_absent(name: str, dialect: str) -> Any:
    """Insert rows whose id is not there yet; companions (phones) are immutable by id."""
    target = table(name)
    insert = postgresql.insert(target) if dialect == "postgresql" else sqlite.insert(target)
    return insert.on_conflict_do_nothing()
