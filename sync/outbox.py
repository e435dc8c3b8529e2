"""A node's side of a push: the next batch of its outbox, and what to do with the answer.

The outbox holds one entry per local change, written in the change's own transaction.
A batch sends each changed row once, as it is now, at the position of its *earliest*
pending change, so a learner created at school still travels before the enrollment that
names it. The batch's range and a digest of its entries are saved before it is sent
("in flight"): after a crash the node re-sends exactly that batch, which the central server
recognises as a replay; new changes that reuse old numbers (a restored backup) cannot match.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.changefeed.models import OutboxEntry
from sync import state
from sync.codec import dumps, encode_value
from sync.policy import COMPANIONS, POLICIES, table, wire_columns


@dataclass
class PushBatch:
    from_seq: int
    to_seq: int
    digest: str
    rows: int
    document: dict[str, Any]
    deletes: int = 0


def _digest(entry_ids: list[uuid.UUID]) -> str:
    h = hashlib.sha256()
    for entry_id in entry_ids:
        h.update(entry_id.bytes)
    return h.hexdigest()


async def pending_count(session: AsyncSession) -> int:
    return int(await session.scalar(sa.select(sa.func.count()).select_from(OutboxEntry)) or 0)


async def next_batch(
    session: AsyncSession, *, node_id: uuid.UUID, feed: str, epoch: int, max_rows: int, max_bytes: int
) -> PushBatch | None:
    """The next batch to push (the one in flight, if a previous run died sending it).

    ``feed`` is the node's institution: the numbering it pushes in. Changes a node made in
    another feed (the shared catalogue) are never its to push and are dropped on acknowledgement.
    """
    push = await state.read(session, state.PUSH)
    acked = int(push.get("acked", 0))
    inflight = push.get("inflight")
    stmt = sa.select(OutboxEntry).where(OutboxEntry.scope == feed, OutboxEntry.seq > acked).order_by(OutboxEntry.seq)
    stmt = stmt.where(OutboxEntry.seq <= int(inflight["to"])) if inflight else stmt.limit(max_rows)
    entries = list(await session.scalars(stmt))
    if not entries:
        return None

    first_entry: dict[tuple[str, uuid.UUID], OutboxEntry] = {}
    for entry in entries:
        first_entry.setdefault((entry.table_name, entry.row_id), entry)
    wanted: dict[str, list[uuid.UUID]] = defaultdict(list)
    for name, row_id in first_entry:
        wanted[name].append(row_id)
    current: dict[tuple[str, uuid.UUID], dict[str, Any]] = {}
    for name, ids in wanted.items():
        policy = POLICIES.get(name)
        if policy is None or not policy.edge_may_push:
            continue  # a down-only row changed here stays local; the central copy wins on next pull
        target = table(name)
        selected = [target.c[c] for c in wire_columns(policy) if c != "change_seq"]
        for found in await session.execute(sa.select(*selected).where(target.c.id.in_(ids))):
            current[(name, found.id)] = dict(found._mapping)

    tables: dict[str, tuple[list[str], list[list[Any]], list[int]]] = {}
    companions: dict[str, set[uuid.UUID]] = defaultdict(set)
    sent: set[tuple[str, uuid.UUID]] = set()
    used: list[OutboxEntry] = []
    size = 0
    deletes = 0
    for entry in entries:
        used.append(entry)
        key = (entry.table_name, entry.row_id)
        row = current.get(key)
        # Sent once, at its first pending change; a version merged in from elsewhere is not ours to send.
        if row is None or key in sent or row["origin_node_id"] != node_id:
            continue
        sent.add(key)
        deletes += row.get("deleted_at") is not None
        columns = list(row)
        encoded = [encode_value(row[c]) for c in columns]
        chunk = tables.setdefault(entry.table_name, (columns, [], []))
        chunk[1].append(encoded)
        chunk[2].append(first_entry[key].base_hlc)
        size += len(dumps(encoded))
        if entry.table_name in COMPANIONS:
            column, _ = COMPANIONS[entry.table_name]
            if row.get(column) is not None:
                companions[entry.table_name].add(row[column])
        if size >= max_bytes and not inflight:
            break

    documents: list[dict[str, Any]] = []
    for name, ids_wanted in companions.items():
        _, companion = COMPANIONS[name]
        target = table(companion)
        found_rows = (await session.execute(sa.select(target).where(target.c.id.in_(ids_wanted)))).all()
        documents.append(
            {
                "t": companion,
                "c": [c.name for c in target.columns],
                "r": [[encode_value(v) for v in r] for r in found_rows],
            }
        )
    documents.extend({"t": name, "c": cols, "r": rows, "b": bases} for name, (cols, rows, bases) in tables.items())
    from_seq, to_seq = used[0].seq, used[-1].seq
    digest = _digest([e.id for e in used])
    if not inflight:
        await state.update(session, state.PUSH, inflight={"from": from_seq, "to": to_seq, "digest": digest})
    return PushBatch(
        from_seq=from_seq,
        to_seq=to_seq,
        digest=digest,
        rows=len(sent),
        deletes=deletes,
        document={
            "epoch": epoch,
            "from_seq": from_seq,
            "to_seq": to_seq,
            "digest": digest,
            "acked": acked,
            "tables": documents,
        },
    )


async def acknowledge(session: AsyncSession, *, feed: str, to_seq: int) -> None:
    """The central server holds everything up to ``to_seq``: drop those entries."""
    await session.execute(sa.delete(OutboxEntry).where(sa.or_(OutboxEntry.scope != feed, OutboxEntry.seq <= to_seq)))
    await state.update(session, state.PUSH, acked=to_seq, inflight=None)


async def restart_numbering(session: AsyncSession) -> None:
    """After a new epoch: everything still in the outbox goes again, from the start."""
    await state.update(session, state.PUSH, acked=0, inflight=None)
