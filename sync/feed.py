"""Reading the central feed: the rows a node has not seen, in sequence order, one batch.

The outbox is the index: its ``(scope, seq)`` key pages by keyset (never OFFSET), and a row
is sent once, at its latest change (``change_seq``), however often it changed since the
cursor: rows are coalesced for free. The batch stops at a row count and a byte budget,
whichever comes first, and the cursor it returns covers every entry it looked at.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.changefeed.models import OutboxEntry
from sync.codec import dumps, encode_value, encoder_for
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


@functools.lru_cache(maxsize=128)
def _shape(name: str) -> tuple[tuple[str, ...], tuple[Callable[[Any], Any], ...], int, int]:
    """A table's wire columns, their encoders, and where id and change_seq sit among them."""
    columns = tuple(wire_columns(POLICIES[name]))
    target = table(name)
    encoders = tuple(encoder_for(target.c[c]) for c in columns)
    return columns, encoders, columns.index("id"), columns.index("change_seq")


class _Size:
    """The batch's byte budget, estimated from a JSON sample of every 32nd row of a table:
    serialising every row only to count it cost a tenth of a pull."""

    def __init__(self) -> None:
        self.per_row: dict[str, int] = {}
        self.seen: dict[str, int] = {}

    def of(self, name: str, encoded: list[Any]) -> int:
        count = self.seen.get(name, 0)
        self.seen[name] = count + 1
        if count % 32 == 0:
            self.per_row[name] = len(dumps(encoded)) + 1
        return self.per_row[name]


async def read_batch(
    session: AsyncSession,
    scope: SyncScope,
    since: Cursor,
    *,
    max_rows: int,
    max_bytes: int,
    spare: uuid.UUID | None = None,
) -> PullBatch:
    """The next batch after ``since``; ``more`` says whether another request would find rows.

    ``spare``: a node that holds everything it pushed. Entries naming it as their origin are
    rows it pushed and the central server stored as sent; the cursor moves past them, but
    their rows are not sent back (a pushed change would otherwise return on the next pull).
    An entry that is not a row's latest is skipped anyway, so a later change by anyone else
    still arrives, at its own entry.
    """
    batch = PullBatch(cursor=since, more=False)
    size = _Size()
    for feed, after in since.feeds(scope.institution_id):
        room = max_rows - batch.rows
        if room <= 0:
            batch.more = True
            break
        entries = (
            await session.execute(
                sa.select(OutboxEntry.seq, OutboxEntry.table_name, OutboxEntry.row_id, OutboxEntry.origin_node_id)
                .where(OutboxEntry.scope == feed, OutboxEntry.seq > after)
                .order_by(OutboxEntry.seq)
                .limit(room)
            )
        ).all()
        if not entries:
            continue
        window = len(entries)
        last_seq = entries[-1][0]
        if spare is not None:
            entries = [e for e in entries if e[3] != spare]
        rows_by_table = await _current_rows(session, scope, entries)
        companions: dict[str, set[uuid.UUID]] = defaultdict(set)
        full = False
        for seq, name, row_id, _origin in entries:
            found = rows_by_table.get(name)
            row = found.get(row_id) if found else None
            if row is None:
                continue
            columns, encoders, _, seq_at = _shape(name)
            # Only the row's latest change carries it: earlier entries are superseded.
            if row[seq_at] != seq:
                continue
            encoded = [encode(value) for encode, value in zip(encoders, row, strict=True)]
            batch.add(name, list(columns), encoded)
            batch.rows += 1
            batch.raw_bytes += size.of(name, encoded)
            if name in COMPANIONS:
                column, _ = COMPANIONS[name]
                value = row[columns.index(column)]
                if value is not None:
                    companions[name].add(value)
            if batch.raw_bytes >= max_bytes:
                last_seq = seq
                full = True
                break
        batch.cursor = batch.cursor.advanced(feed, last_seq)
        await _add_companions(session, batch, companions)
        if full or window == room:
            batch.more = True
            break
    return batch


async def _current_rows(
    session: AsyncSession, scope: SyncScope, entries: Sequence[Any]
) -> dict[str, dict[uuid.UUID, Sequence[Any]]]:
    wanted: dict[str, list[uuid.UUID]] = defaultdict(list)
    for _seq, name, row_id, *_ in entries:
        if name in POLICIES:  # a table that never leaves the central server is skipped here
            wanted[name].append(row_id)
    found: dict[str, dict[uuid.UUID, Sequence[Any]]] = {}
    for name, ids in wanted.items():
        target = table(name)
        columns, _, id_at, _ = _shape(name)
        result = await session.execute(sa.select(*[target.c[c] for c in columns]).where(target.c.id.in_(ids)))
        rows: list[Sequence[Any]] = list(result.all())
        if scope.learner_id is not None:
            as_dicts = [dict(zip(columns, r, strict=True)) for r in rows]
            allowed = {r["id"] for r in await learner_rows(session, scope, name, as_dicts)}
            rows = [r for r in rows if r[id_at] in allowed]
        found[name] = {r[id_at]: r for r in rows}
    return found


async def _add_companions(session: AsyncSession, batch: PullBatch, wanted: dict[str, set[uuid.UUID]]) -> None:
    for name, ids in wanted.items():
        _, companion = COMPANIONS[name]
        target = table(companion)
        columns = [c.name for c in target.columns]
        for row in await session.execute(sa.select(target).where(target.c.id.in_(ids))):
            batch.add(companion, columns, [encode_value(v) for v in row])
