"""The central server applying a node's push: check every row, merge, and re-publish.

One push is one transaction: the merged rows, their new places in the institution's feed,
the conflict and rejection logs and the node's acknowledged watermark commit together, so
a kill at any moment leaves either all of it or none of it, and the node re-sends at most
that one batch. A malformed batch is refused whole (4xx, nothing written); a well-formed
row that is out of the node's scope is rejected alone, logged, and acknowledged, so it can
never wedge the node's outbox.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.changefeed import SyncContext
from lms_domain.changefeed.capture import take_sequence
from lms_domain.changefeed.models import ChangeOp, SyncConflict, SyncRejection
from lms_domain.db import Base
from lms_domain.errors import InvalidInput
from lms_domain.ids import new_id
from sync import pg_bulk
from sync.codec import check_columns, decode_rows, encode_value
from sync.merge import insert_absent, unnest_upsert_sql, upsert
from sync.policy import (
    CATALOG,
    COMPANIONS,
    POLICIES,
    TablePolicy,
    content_columns,
    same_content,
    table,
    wire_columns,
)
from sync.protocol import SyncScope


@dataclass
class PushOutcome:
    applied: int = 0
    unchanged: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    conflicts: int = 0
    max_hlc: int = 0

    def document(self, acked: int) -> dict[str, Any]:
        return {
            "acked": acked,
            "applied": self.applied,
            "unchanged": self.unchanged,
            "conflicts": self.conflicts,
            "rejected": self.rejected,
        }


@dataclass
class _Chunk:
    name: str
    policy: TablePolicy | None
    rows: list[dict[str, Any]]
    bases: list[int]
    columns: list[str]


def _fk_order(name: str) -> int:
    """Parents before children, so a learner created at school lands before the enrollment
    that names it."""
    order = {t.name: i for i, t in enumerate(Base.metadata.sorted_tables)}
    return order.get(name, len(order))


def parse_chunks(document: Any) -> list[_Chunk]:
    """Structure and types, all checked before anything is written."""
    if not isinstance(document, dict) or not isinstance(document.get("tables"), list):
        raise InvalidInput("a push is an object with a list of tables", code="malformed_batch")
    chunks = []
    for chunk in document["tables"]:
        if not isinstance(chunk, dict) or not isinstance(chunk.get("t"), str):
            raise InvalidInput("each table entry needs t, c and r", code="malformed_batch")
        name = chunk["t"]
        policy = POLICIES.get(name)
        companion = name in {c for _, c in COMPANIONS.values()}
        if policy is None and not companion:
            raise InvalidInput(f"{name} is not a synced table", code="unknown_table")
        target = table(name)
        allowed = [c for c in wire_columns(policy) if c != "change_seq"] if policy else [c.name for c in target.columns]
        columns = check_columns(target, chunk.get("c"), allowed)
        rows = decode_rows(target, columns, chunk.get("r"))
        bases = chunk.get("b", [0] * len(rows))
        if not isinstance(bases, list) or len(bases) != len(rows) or not all(isinstance(b, int) for b in bases):
            raise InvalidInput(f"{name}: b must hold one base version per row", code="malformed_batch")
        if policy is not None and not {"hlc", "origin_node_id", "institution_id"} <= set(columns):
            raise InvalidInput(f"{name}: rows need hlc, origin_node_id and institution_id", code="malformed_batch")
        if len({row["id"] for row in rows}) != len(rows):
            raise InvalidInput(f"{name}: a row appears twice in one push", code="malformed_batch")
        chunks.append(_Chunk(name, policy, rows, bases, columns))
    return sorted(chunks, key=lambda c: _fk_order(c.name))


_OUTBOX = table("sync_outbox")
_OUTBOX_COLUMNS = (
    "id", "scope", "seq", "table_name", "row_id", "op", "hlc", "base_hlc", "origin_node_id", "created_at",
)  # fmt: skip


class Receiver:
    """Applies one push for one node; the caller owns the transaction and the node lock."""

    def __init__(self, session: AsyncSession, scope: SyncScope, context: SyncContext, now: datetime) -> None:
        self.session = session
        self.scope = scope
        self.context = context
        self.now = now
        self.outcome = PushOutcome()
        self.accepted: dict[str, set[uuid.UUID]] = defaultdict(set)
        self.dialect = session.get_bind().dialect.name

    def _among(self, column: sa.ColumnElement[Any], ids: Any) -> sa.ColumnElement[bool]:
        """``column IN ids``; on Postgres ``= ANY(array)``, one prepared statement for any count."""
        if self.dialect == "postgresql":
            return column == sa.any_(sa.bindparam("ids", list(ids), type_=postgresql.ARRAY(sa.Uuid())))
        return column.in_(ids)

    def _reject(self, name: str, row: dict[str, Any], reason: str, detail: str) -> None:
        row_id = row.get("id")
        self.outcome.rejected.append({"t": name, "id": row_id.hex if row_id else None, "reason": reason})
        self.session.add(
            SyncRejection(
                node_id=self.scope.node_id,
                institution_id=self.scope.institution_id,
                table_name=name,
                row_id=row.get("id"),
                reason=reason,
                detail=detail,
                row={k: encode_value(v) for k, v in row.items()},
                created_at=self.now,
            )
        )

    async def apply(self, chunks: list[_Chunk]) -> PushOutcome:
        for chunk in chunks:
            if chunk.policy is None:
                await self._companions(chunk)
            else:
                await self._chunk(chunk, chunk.policy)
        await self.session.flush()
        return self.outcome

    async def _companions(self, chunk: _Chunk) -> None:
        if chunk.rows:
            await self.session.execute(insert_absent(chunk.name, self.dialect), chunk.rows)
            self.accepted[chunk.name].update(r["id"] for r in chunk.rows)

    async def _chunk(self, chunk: _Chunk, policy: TablePolicy) -> None:
        name = chunk.name
        if not policy.edge_may_push:
            for row in chunk.rows:
                self._reject(name, row, "table_not_writable", f"{name} is written only by the central server")
            return
        existing = await self._existing(policy, [r["id"] for r in chunk.rows])
        kept: list[tuple[dict[str, Any], int]] = []
        for row, base in zip(chunk.rows, chunk.bases, strict=True):
            reason = self._row_problem(row, existing.get(row["id"]))
            if reason:
                self._reject(name, row, *reason)
            else:
                kept.append((row, base))
        kept = await self._check_references(name, kept)
        if not kept:
            return
        if policy.logs_conflicts:
            self._log_conflicts(policy, kept, existing)
        await self._merge(policy, chunk.columns, kept, existing)

    def _row_problem(self, row: dict[str, Any], current: dict[str, Any] | None) -> tuple[str, str] | None:
        if row["institution_id"] != self.scope.institution_id:
            return "out_of_scope", "the row belongs to another institution"
        if current is not None and current["institution_id"] != self.scope.institution_id:
            return "out_of_scope", "the id names a row of another institution"
        if row["origin_node_id"] != self.scope.node_id:
            return "wrong_origin", "a node may only push versions it wrote itself"
        if row["hlc"] <= 0:
            return "no_version", "the row carries no hybrid logical clock value"
        if self.scope.learner_id is not None and not self._learner_owns(row):
            return "out_of_scope", "the row belongs to another learner"
        return None

    def _learner_owns(self, row: dict[str, Any]) -> bool:
        learner = self.scope.learner_id
        if "learner_id" in row:
            return bool(row["learner_id"] == learner)
        if "attempt_id" in row:  # answers: their attempt is checked by reference below
            return True
        return bool(row.get("id") == learner)

    async def _existing(self, policy: TablePolicy, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        target = table(policy.name)
        columns = content_columns(policy) if policy.logs_conflicts else ["id", "institution_id", "hlc"]
        stmt = sa.select(*[target.c[c] for c in columns]).where(self._among(target.c.id, ids))
        return {r.id: dict(r._mapping) for r in await self.session.execute(stmt)}

    async def _check_references(
        self, name: str, kept: list[tuple[dict[str, Any], int]]
    ) -> list[tuple[dict[str, Any], int]]:
        """Every foreign key must name a row this node may see: its institution's, or the
        shared catalogue's. One query per foreign key column per batch, not per row."""
        target = table(name)
        for fk in target.foreign_keys:
            column = fk.parent.name
            referred = fk.column.table
            if column == "institution_id" or referred.name == "institutions":
                continue
            wanted = {row[column] for row, _ in kept if row.get(column) is not None}
            if not wanted:
                continue
            ok = set(self.accepted.get(referred.name, set())) & wanted
            stmt = sa.select(referred.c.id).where(self._among(referred.c.id, wanted - ok))
            if "institution_id" in referred.c:
                stmt = stmt.where(
                    sa.or_(referred.c.institution_id == self.scope.institution_id, referred.c.institution_id.is_(None))
                    if referred.name in CATALOG
                    else referred.c.institution_id == self.scope.institution_id
                )
            if self.scope.learner_id is not None and "learner_id" in referred.c:
                stmt = stmt.where(referred.c.learner_id == self.scope.learner_id)
            ok |= set(await self.session.scalars(stmt))
            still = []
            for row, base in kept:
                if row.get(column) is None or row[column] in ok:
                    still.append((row, base))
                else:
                    self._reject(name, row, "out_of_scope", f"{column} names a row this node may not see")
            kept = still
        return kept

    def _log_conflicts(
        self, policy: TablePolicy, kept: list[tuple[dict[str, Any], int]], existing: dict[uuid.UUID, dict[str, Any]]
    ) -> None:
        """Concurrent means: the central copy changed since the version the node edited."""
        for row, base in kept:
            current = existing.get(row["id"])
            if current is None or current["hlc"] in (base, row["hlc"]) or same_content(row, current):
                continue
            theirs = (row["hlc"], row["origin_node_id"].hex)
            mine = (current["hlc"], current["origin_node_id"].hex if current["origin_node_id"] else "")
            winner, loser = (row, current) if theirs > mine else (current, row)
            self.outcome.conflicts += 1
            self.session.add(
                SyncConflict(
                    table_name=policy.name,
                    row_id=row["id"],
                    institution_id=self.scope.institution_id,
                    winner_hlc=winner["hlc"],
                    winner_node_id=winner["origin_node_id"],
                    loser_hlc=loser["hlc"],
                    loser_node_id=loser["origin_node_id"],
                    loser={k: encode_value(v) for k, v in loser.items() if k != "change_seq"},
                    detected_by=self.context.node_id,
                    created_at=self.now,
                )
            )

    async def _merge(
        self,
        policy: TablePolicy,
        columns: list[str],
        kept: list[tuple[dict[str, Any], int]],
        existing: dict[uuid.UUID, dict[str, Any]],
    ) -> None:
        feed = str(self.scope.institution_id)
        last = await take_sequence(self.session, feed, len(kept))
        first = last - len(kept) + 1
        bases: dict[uuid.UUID, int] = {}
        params = []
        for offset, (row, base) in enumerate(kept):
            params.append({**row, "change_seq": first + offset})
            bases[row["id"]] = base
            self.outcome.max_hlc = max(self.outcome.max_hlc, row["hlc"])
        updatable = policy.edge_updatable
        stmt = upsert(policy, [*columns, "change_seq"], self.dialect, updatable=updatable, returning=True)
        try:
            async with self.session.begin_nested():
                if self.dialect == "postgresql":
                    changed = await self._merge_arrays(policy, [*columns, "change_seq"], params)
                else:
                    changed = list((await self.session.execute(stmt, params)).all())
        except sa.exc.IntegrityError:
            changed = await self._merge_one_by_one(policy, stmt, params)
        by_id = {p["id"]: p for p in params}
        if changed:
            # A row new here was stored exactly as the node sent it: its entry names the node,
            # which is spared it on its next pull. A merged row may differ from the node's copy:
            # its entry names the central server, so the node receives the result.
            fresh = {row_id for row_id, _ in changed if row_id not in existing}
            await self._publish(policy, feed, changed, by_id, bases, fresh)
        self.accepted[policy.name].update(by_id)
        self.outcome.applied += len(changed)
        self.outcome.unchanged += len(params) - len(changed)

    async def _merge_arrays(self, policy: TablePolicy, columns: list[str], params: list[dict[str, Any]]) -> list[Any]:
        """The merge on Postgres, one array per column (``sync.pg_bulk``). A uniqueness
        collision surfaces as SQLAlchemy's ``IntegrityError``, as on the other path."""
        sql = unnest_upsert_sql(policy, columns, updatable=policy.edge_updatable)
        arrays = pg_bulk.column_arrays(table(policy.name), columns, params)
        connection = await pg_bulk.driver(self.session)
        try:
            records = await connection.fetch(sql, *arrays)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise sa.exc.IntegrityError(sql[:200], None, exc) from exc
        return [(r[0], r[1]) for r in records]

    async def _publish(
        self,
        policy: TablePolicy,
        feed: str,
        changed: list[Any],
        by_id: dict[uuid.UUID, dict[str, Any]],
        bases: dict[uuid.UUID, int],
        fresh: set[uuid.UUID],
    ) -> None:
        """The feed entries of the rows the merge changed, at the sequence numbers it gave
        them, in one statement (an ORM object per merged row cost a fifth of a push)."""
        deleted, upserted = ChangeOp.DELETE.value, ChangeOp.UPSERT.value
        node, central = self.scope.node_id, self.context.node_id
        entries = [
            {
                "id": new_id(),
                "scope": feed,
                "seq": seq,
                "table_name": policy.name,
                "row_id": row_id,
                "op": deleted if by_id[row_id].get("deleted_at") else upserted,
                "hlc": by_id[row_id]["hlc"],
                "base_hlc": bases[row_id],
                "origin_node_id": node if row_id in fresh else central,
                "created_at": self.now,
            }
            for row_id, seq in changed
        ]
        if self.dialect == "postgresql":
            connection = await pg_bulk.driver(self.session)
            arrays = pg_bulk.column_arrays(_OUTBOX, _OUTBOX_COLUMNS, entries)
            await connection.execute(pg_bulk.unnest_insert_sql(_OUTBOX, _OUTBOX_COLUMNS), *arrays)
        else:
            await self.session.execute(sa.insert(_OUTBOX), entries)

    async def _merge_one_by_one(self, policy: TablePolicy, stmt: Any, params: list[dict[str, Any]]) -> list[Any]:
        """A uniqueness collision (two schools' new learners with one account number):
        find the offending rows, reject them by name, keep the rest. Never dropped silently."""
        changed: list[Any] = []
        for row in params:
            try:
                async with self.session.begin_nested():
                    changed.extend((await self.session.execute(stmt, [row])).all())
            except sa.exc.IntegrityError as exc:
                self._reject(policy.name, row, "collision", str(exc.orig).splitlines()[0][:500])
        return changed
