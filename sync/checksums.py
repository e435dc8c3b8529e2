"""Per-table checksums of a scope: how two nodes tell, cheaply, that they hold the same rows.

Order-independent (rows are hashed one by one and the digests XOR-folded), over the columns
that say what a row holds (private and feed columns left out), over live rows: tombstones are
collected at different times on different nodes, so a deleted row counts by its absence.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from sync.codec import encode_value
from sync.feed import learner_rows
from sync.policy import CATALOG, POLICIES, content_columns, table
from sync.protocol import SyncScope


def _where(name: str, scope: SyncScope) -> sa.ColumnElement[bool]:
    target = table(name)
    live = target.c.deleted_at.is_(None)
    if name == "institutions":
        return sa.and_(live, target.c.id == scope.institution_id)
    if name in CATALOG:
        mine = sa.or_(target.c.institution_id.is_(None), target.c.institution_id == scope.institution_id)
        return sa.and_(live, mine)
    return sa.and_(live, target.c.institution_id == scope.institution_id)


async def scope_checksums(session: AsyncSession, scope: SyncScope, page: int = 5000) -> dict[str, dict[str, Any]]:
    """``{table: {"rows": n, "sum": hex}}`` for every synced table, streamed in keyset pages."""
    out: dict[str, dict[str, Any]] = {}
    for name, policy in POLICIES.items():
        target = table(name)
        columns = content_columns(policy)
        selected = [target.c[c] for c in columns]
        folded = 0
        count = 0
        after = None
        while True:
            stmt = sa.select(*selected).where(_where(name, scope)).order_by(target.c.id).limit(page)
            if after is not None:
                stmt = stmt.where(target.c.id > after)
            rows = [dict(r._mapping) for r in await session.execute(stmt)]
            if not rows:
                break
            after = rows[-1]["id"]
            if scope.learner_id is not None:
                rows = await learner_rows(session, scope, name, rows)
            for row in rows:
                encoded = json.dumps([encode_value(row[c]) for c in columns], sort_keys=True).encode()
                digest = hashlib.blake2b(encoded, digest_size=16).digest()
                folded ^= int.from_bytes(digest, "big")
                count += 1
        out[name] = {"rows": count, "sum": f"{folded:032x}"}
    return out
