"""Reading the central feed: the rows a node has not seen, in sequence order, one batch.

The outbox is the index: its ``(scope, seq)`` key pages by keyset (never OFFSET), and a row
is sent once, at its latest change (``change_seq``), however often it changed since the
cursor: rows are coalesced for free. The batch stops at a row count and a byte budget,
whichever comes first, and the cursor it returns covers every entry it looked at.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.changefeed.models import OutboxEntry
from sync.codec import dumps, encode_value
from sync.policy import CATALOG, COMPANIONS, POLICIES, table, wire_columns
from sync.protocol import Cursor, SyncScope

# Learner rows that name their learner through a parent row.
_PARENTS = {"answers": ("attempts", "attempt_id"), "subscription_items": ("subscriptions", "subscription_id")}


@dataclass
class PullBatch:
    cursor: Cursor
    more: bool
    tables: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)
    rows: int = 0
    raw_bytes: int = 0

    def add(self, name: str, columns: list[str], row: list[Any]) -> None:
        self.tables.setdefault(name, (columns, []))[1].append(row)

    def document(self) -> dict[str, Any]:
        return {
            "cursor": str(self.cursor),
            "more": self.more,
            "rows": self.rows,
            "tables": [{"t": name, "c": cols, "r": rows} for name, (cols, rows) in self.tables.items()],
        }


async def learner_rows(
    session: AsyncSession, scope: SyncScope, name: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A phone's scope: the catalogue, its institution's row, and its own learner's rows."""
    learner = scope.learner_id
    if name == "institutions" or name in CATALOG:
        return rows
    if name == "learners":
        return [r for r in rows if r["id"] == learner]
    if "learner_id" in table(name).c:
        return [r for r in rows if r["learner_id"] == learner]
    if name not in _PARENTS:
        return []  # staff logins and anything else not the learner's own
    parent, key = _PARENTS[name]
    parents = table(parent)
    wanted = {r[key] for r in rows}
    mine = set(
        await session.scalars(sa.select(parents.c.id).where(parents.c.id.in_(wanted), parents.c.learner_id == learner))
    )
    return [r for r in rows if r[key] in mine]


async def read_batch(
    session: AsyncSession, scope: SyncScope, since: Cursor, *, max_rows: int, max_bytes: int
) -> PullBatch:
    """The next batch after ``since``; ``more`` says whether another request would find rows."""
    batch = PullBatch(cursor=since, more=False)
    for feed, after in since.feeds(scope.institution_id):
        room = max_rows - batch.rows
        if room <= 0:
            batch.more = True
            break
        entries = (
            await session.execute(
                sa.select(OutboxEntry.seq, OutboxEntry.table_name, OutboxEntry.row_id)
                .where(OutboxEntry.scope == feed, OutboxEntry.seq > after)
                .order_by(OutboxEntry.seq)
                .limit(room)
            )
        ).all()
        if not entries:
            continue
        rows_by_table = await _current_rows(session, scope, entries)
        companions: dict[str, set[uuid.UUID]] = defaultdict(set)
        last_seq = after
        full = False
        for seq, name, row_id in entries:
            row = rows_by_table.get(name, {}).get(row_id)
            last_seq = seq
            # Only the row's latest change carries it: earlier entries are superseded.
            if row is None or row["change_seq"] != seq:
                continue
            columns = wire_columns(POLICIES[name])
            encoded = [encode_value(row[c]) for c in columns]
            batch.add(name, columns, encoded)
            batch.rows += 1
            batch.raw_bytes += len(dumps(encoded))
            if name in COMPANIONS:
                column, _ = COMPANIONS[name]
                if row[column] is not None:
                    companions[name].add(row[column])
            if batch.raw_bytes >= max_bytes:
                full = True
                break
        batch.cursor = batch.cursor.advanced(feed, last_seq)
        await _add_companions(session, batch, companions)
        if full or len(entries) == room:
            batch.more = True
            break
    return batch


async def _current_rows(
    session: AsyncSession, scope: SyncScope, entries: Sequence[Any]
) -> dict[str, dict[uuid.UUID, dict[str, Any]]]:
    wanted: dict[str, list[uuid.UUID]] = defaultdict(list)
    for _seq, name, row_id in entries:
        if name in POLICIES:  # a table that never leaves the central server is skipped here
            wanted[name].append(row_id)
    found: dict[str, dict[uuid.UUID, dict[str, Any]]] = {}
    for name, ids in wanted.items():
        target = table(name)
        columns = [target.c[c] for c in wire_columns(POLICIES[name])]
        rows = [dict(r._mapping) for r in await session.execute(sa.select(*columns).where(target.c.id.in_(ids)))]
        if scope.learner_id is not None:
            rows = await learner_rows(session, scope, name, rows)
        found[name] = {r["id"]: r for r in rows}
    return found


async def _add_companions(session: AsyncSession, batch: PullBatch, wanted: dict[str, set[uuid.UUID]]) -> None:
    for name, ids in wanted.items():
        _, companion = COMPANIONS[name]
        target = table(companion)
        columns = [c.name for c in target.columns]
        for row in await session.execute(sa.select(target).where(target.c.id.in_(ids))):
            batch.add(companion, columns, [encode_value(v) for v in row])
