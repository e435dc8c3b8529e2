"""A node applying a pulled batch: merge every table in one statement, move the cursor.

The rows and the cursor commit in one short transaction, so a kill before the commit
re-fetches this batch and a kill after it starts at the next one: at most one batch is
ever sent twice, and sending it twice changes nothing (the merges are joins). Rows are
written with Core statements, not the ORM, so applying the feed never writes the node's
own outbox: nothing pulled is ever pushed back.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.changefeed import SyncContext
from lms_domain.changefeed.models import OutboxEntry, SyncConflict
from lms_domain.errors import InvalidInput
from sync import state
from sync.codec import check_columns, decode_rows, decode_stored, encode_value
from sync.merge import insert_absent, upsert
from sync.policy import (
    COMPANIONS,
    POLICIES,
    Merge,
    TablePolicy,
    content_columns,
    same_content,
    table,
    wire_columns,
)
from sync.protocol import Cursor

_COMPANION_TABLES = frozenset(name for _, name in COMPANIONS.values())


@dataclass
class Applied:
    rows: int = 0
    conflicts: int = 0
    max_hlc: int = 0
    tombstones: int = 0


def split(document: Any, rows_per_part: int) -> list[dict[str, Any]]:
    """One pull answer as parts of at most ``rows_per_part`` rows, for short transactions:
    learners' writes wait for one part, not a whole batch. Only the last part moves the
    cursor, so a kill between parts re-applies the batch (which changes nothing)."""
    if not isinstance(document, dict) or not isinstance(document.get("tables"), list):
        raise InvalidInput("a pull answer is an object with a list of tables", code="malformed_batch")
    parts: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    room = rows_per_part
    for chunk in document["tables"]:
        rows = chunk.get("r") if isinstance(chunk, dict) else None
        if not isinstance(rows, list):
            current.append(chunk)  # apply_batch refuses it, with the reason
            continue
        start = 0
        while start < len(rows) or (start == 0 and not rows):
            take = rows[start : start + room]
            current.append({**chunk, "r": take})
            start += max(len(take), 1)
            room -= len(take)
            if room <= 0:
                parts.append({"tables": current})
                current, room = [], rows_per_part
    parts.append({"tables": current})
    head = {k: v for k, v in document.items() if k != "tables"}
    return [{**head, **part} for part in parts]


async def apply_batch(
    session: AsyncSession,
    document: Any,
    *,
    context: SyncContext,
    now: datetime,
    expected: Cursor,
    write_cursor: bool = True,
) -> tuple[Cursor, bool, Applied]:
    """Apply one pull answer (or one part of it); returns the new cursor and whether the feed
    has more. The cursor is stored only with ``write_cursor`` (the last part)."""
    if not isinstance(document, dict) or not isinstance(document.get("tables"), list):
        raise InvalidInput("a pull answer is an object with a list of tables", code="malformed_batch")
    new_cursor = Cursor.parse(document.get("cursor"))
    if new_cursor.catalog < expected.catalog or new_cursor.institution < expected.institution:
        raise InvalidInput("the answer's cursor is behind the one asked for", code="cursor_regressed")
    dialect = session.get_bind().dialect.name
    applied = Applied()
    for chunk in document["tables"]:
        if not isinstance(chunk, dict) or not isinstance(chunk.get("t"), str):
            raise InvalidInput("each table entry needs t, c and r", code="malformed_batch")
        name = chunk["t"]
        if name in _COMPANION_TABLES:
            target = table(name)
            columns = check_columns(target, chunk.get("c"), [c.name for c in target.columns])
            rows = decode_rows(target, columns, chunk.get("r"))
            if rows:
                await session.execute(insert_absent(name, dialect), rows)
            continue
        policy = POLICIES.get(name)
        if policy is None:
            raise InvalidInput(f"{name} is not a synced table", code="unknown_table")
        target = table(name)
        columns = check_columns(target, chunk.get("c"), wire_columns(policy))
        if dialect == "sqlite":
            await _apply_sqlite(session, policy, columns, chunk.get("r"), context, now, applied)
            continue
        rows = decode_rows(target, columns, chunk.get("r"))
        if not rows:
            continue
        pending = await _pending(session, policy, rows) if policy.merge is not Merge.SERVER else set()
        if pending and policy.logs_conflicts:
            applied.conflicts += await _log_lost_local_edits(session, policy, rows, pending, context.node_id, now)
        for row in rows:
            applied.max_hlc = max(applied.max_hlc, row.get("hlc") or 0)
            if row.get("deleted_at") is not None:
                applied.tombstones += 1
            for column, value in policy.fill.items():
                row.setdefault(column, value)
        # Private columns the node fills itself (a local password) are never overwritten.
        stmt = upsert(policy, [*columns, *policy.fill], dialect, updatable=frozenset(columns))
        await session.execute(stmt, rows)
        if pending:
            context.hlc.observe(max(r["hlc"] for r in rows))  # the new stamps beat what arrived
            await _restamp(session, policy, pending, context)
        applied.rows += len(rows)
    if write_cursor:
        await state.write(session, state.CURSOR, {"value": str(new_cursor)})
    if applied.max_hlc:
        context.hlc.observe(applied.max_hlc)  # later local edits then dominate what was seen
    return new_cursor, bool(document.get("more")), applied


@functools.lru_cache(maxsize=256)
def _sqlite_merge(name: str, columns: tuple[str, ...], updatable: frozenset[str]) -> tuple[str, tuple[int, ...]]:
    """The merge statement as SQLite SQL, and for each ``?`` the index of its value in a row
    laid out as ``columns``."""
    stmt = upsert(POLICIES[name], list(columns), "sqlite", updatable=updatable)
    compiled = stmt.compile(dialect=sqlite.dialect(), column_keys=list(columns))
    order = compiled.positiontup or []
    if sorted(order) != sorted(columns):
        raise RuntimeError(f"the {name} merge binds {order}, not one value per column")
    return compiled.string, tuple(columns.index(key) for key in order)


async def _apply_sqlite(
    session: AsyncSession,
    policy: TablePolicy,
    columns: list[str],
    raw_rows: Any,
    context: SyncContext,
    now: datetime,
    applied: Applied,
) -> None:
    """The fast path at a node: rows decoded straight to SQLite's stored form and merged by the
    driver's executemany, which runs in the driver's thread: the event loop, serving learners,
    does a fraction of the work the ORM's type processing would."""
    target = table(policy.name)
    stored = decode_stored(target, columns, raw_rows)
    if not stored:
        return
    id_at, hlc_at = columns.index("id"), columns.index("hlc")
    deleted_at = columns.index("deleted_at") if "deleted_at" in columns else None
    pending: set[uuid.UUID] = set()
    if policy.merge is not Merge.SERVER:
        conn = await session.connection()
        waiting = await conn.exec_driver_sql(
            "SELECT DISTINCT row_id FROM sync_outbox WHERE table_name = ?", (policy.name,)
        )
        pending_hex = {r[0] for r in waiting}
        if pending_hex:
            mine = [raw for raw, row in zip(raw_rows, stored, strict=True) if row[id_at] in pending_hex]
            pending = {uuid.UUID(hex=row[id_at]) for row in stored if row[id_at] in pending_hex}
            if mine and policy.logs_conflicts:
                decoded = decode_rows(target, columns, mine)
                applied.conflicts += await _log_lost_local_edits(
                    session, policy, decoded, pending, context.node_id, now
                )
    top = max(row[hlc_at] or 0 for row in stored)
    applied.max_hlc = max(applied.max_hlc, top)
    if deleted_at is not None:
        applied.tombstones += sum(row[deleted_at] is not None for row in stored)
    fill = tuple(policy.fill)
    sql, order = _sqlite_merge(policy.name, (*columns, *fill), frozenset(columns))
    extra = tuple(policy.fill[c] for c in fill)
    params = []
    for row in stored:
        full = row + extra if extra else row
        params.append(tuple([full[i] for i in order]))
    conn = await session.connection()
    await conn.exec_driver_sql(sql, params)
    applied.rows += len(stored)
    if pending:
        context.hlc.observe(top)  # the new stamps beat what arrived
        await _restamp(session, policy, pending, context)


async def _pending(session: AsyncSession, policy: TablePolicy, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Rows of the batch this node has changed and not pushed yet."""
    ids = [r["id"] for r in rows]
    stmt = sa.select(OutboxEntry.row_id).where(OutboxEntry.table_name == policy.name, OutboxEntry.row_id.in_(ids))
    return set(await session.scalars(stmt))


async def _restamp(session: AsyncSession, policy: TablePolicy, pending: set[uuid.UUID], context: SyncContext) -> None:
    """A row with an unpushed local change, merged with a version from elsewhere, becomes a new
    local version of the merge. Otherwise the merge would carry the other node's version stamp,
    the push (which sends only this node's own versions) would skip it, and what this node
    contributed (a later deletion, a higher progress) would never reach the central server."""
    target = table(policy.name)
    stmt = (
        sa.update(target)
        .where(target.c.id == sa.bindparam("row_id"))
        .values(hlc=sa.bindparam("new_hlc"), origin_node_id=sa.bindparam("me"))
    )
    await session.execute(
        stmt, [{"row_id": row_id, "new_hlc": context.hlc.tick(), "me": context.node_id} for row_id in pending]
    )


async def _log_lost_local_edits(
    session: AsyncSession,
    policy: TablePolicy,
    rows: list[dict[str, Any]],
    pending: set[uuid.UUID],
    node_id: uuid.UUID,
    now: datetime,
) -> int:
    """A row edited here and not yet pushed, overtaken by a newer version from elsewhere: the
    local edit loses, and is kept in the conflict log rather than vanishing."""
    target = table(policy.name)
    local = {
        r.id: dict(r._mapping)
        for r in await session.execute(
            sa.select(*[target.c[c] for c in content_columns(policy)]).where(target.c.id.in_(pending))
        )
    }
    logged = 0
    for row in rows:
        mine = local.get(row["id"])
        if mine is None:
            continue
        theirs_version = (row["hlc"], row["origin_node_id"].hex if row["origin_node_id"] else "")
        mine_version = (mine["hlc"], mine["origin_node_id"].hex if mine["origin_node_id"] else "")
        if theirs_version <= mine_version or same_content(row, mine):
            continue  # the local edit wins (the central server logs it when it arrives), or is the same
        logged += 1
        session.add(
            SyncConflict(
                table_name=policy.name,
                row_id=row["id"],
                institution_id=row.get("institution_id"),
                winner_hlc=row["hlc"],
                winner_node_id=row["origin_node_id"],
                loser_hlc=mine["hlc"],
                loser_node_id=mine["origin_node_id"],
                loser={k: encode_value(v) for k, v in mine.items()},
                detected_by=node_id,
                created_at=now,
            )
        )
    return logged
