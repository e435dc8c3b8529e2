"""Stamp synced rows and write their outbox entries inside the flush that changes them.

Doing this in ``before_flush`` rather than in each service means no code path can
change a synced row without leaving a change behind, which is the failure mode that
costs offline systems their data (a forgotten dirty bit).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, attributes

from lms_domain.changefeed.hlc import HybridLogicalClock
from lms_domain.changefeed.models import ChangeOp, OutboxEntry, SyncCounter
from lms_domain.clock import Clock, SystemClock
from lms_domain.db import READ_ONLY_OPTION, SyncMixin
from lms_domain.ids import new_id

CATALOG_SCOPE = "catalog"
CENTRAL_SCOPE = "central"  # changes recorded for audit but never sent to an edge
SESSION_INFO_KEY = "somo.sync"


class NodeRole(StrEnum):
    CENTRAL = "central"
    EDGE = "edge"


@dataclass
class SyncContext:
    """Who is writing: the node's identity, its role and its hybrid logical clock."""

    node_id: uuid.UUID
    role: NodeRole = NodeRole.CENTRAL
    clock: Clock = field(default_factory=SystemClock)
    hlc: HybridLogicalClock = field(init=False)

    def __post_init__(self) -> None:
        self.hlc = HybridLogicalClock(self.clock)


def scope_of(row: SyncMixin) -> str:
    """The feed a row belongs to: its institution, or the shared catalogue."""
    if row.__sync_scope__ == "self":
        return str(row.id)  # type: ignore[attr-defined]
    institution_id = getattr(row, "institution_id", None)
    if institution_id is not None:
        return str(institution_id)
    return CENTRAL_SCOPE if row.__sync_scope__ == "tenant_only" else CATALOG_SCOPE


def _was_soft_deleted(row: SyncMixin) -> bool:
    added = list(attributes.get_history(row, "deleted_at").added or ())
    return bool(added) and added[0] is not None


def _before_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    if session.info.get(READ_ONLY_OPTION) and (session.new or session.dirty or session.deleted):
        raise RuntimeError("a read-only unit of work tried to write; use a read-write one")
    changed: list[tuple[SyncMixin, ChangeOp]] = []
    for obj in session.new:
        if isinstance(obj, SyncMixin):
            changed.append((obj, ChangeOp.DELETE if obj.deleted_at else ChangeOp.UPSERT))
    for obj in session.dirty:
        if isinstance(obj, SyncMixin) and _changes_synced_content(session, obj):
            changed.append((obj, ChangeOp.DELETE if _was_soft_deleted(obj) else ChangeOp.UPSERT))
    for obj in session.deleted:
        if isinstance(obj, SyncMixin):
            raise RuntimeError(f"{type(obj).__name__} is synced: set deleted_at instead of deleting the row")
    if not changed:
        return
    context = session.info.get(SESSION_INFO_KEY)
    if not isinstance(context, SyncContext):
        raise RuntimeError("synced rows changed in a session without a SyncContext")

    now = context.clock.now()
    by_scope: dict[str, list[tuple[SyncMixin, ChangeOp, int]]] = defaultdict(list)
    for row, op in changed:
        if row.id is None:  # type: ignore[attr-defined]
            row.id = new_id()  # type: ignore[attr-defined]
        base_hlc = _committed_hlc(row)
        # Newer than the version it replaces, whatever this node's clock says (that version
        # may have come from a school whose clock runs a day ahead).
        context.hlc.observe(base_hlc)
        row.hlc = context.hlc.tick()
        row.origin_node_id = context.node_id
        if cast("datetime | None", row.created_at) is None:
            row.created_at = now
        row.updated_at = now
        # Force the column into the UPDATE even when the clock has not moved; otherwise
        # the column's onupdate default would stamp the wall clock instead of ours.
        attributes.flag_modified(row, "updated_at")
        by_scope[scope_of(row)].append((row, op, base_hlc))

    for scope in sorted(by_scope):  # a fixed lock order, so two writers cannot deadlock
        rows = by_scope[scope]
        last = _take_sequence(session, scope, len(rows))
        for offset, (row, op, base_hlc) in enumerate(rows):
            seq = last - len(rows) + 1 + offset
            if context.role is NodeRole.CENTRAL:
                row.change_seq = seq
            session.add(
                OutboxEntry(
                    scope=scope,
                    seq=seq,
                    table_name=type(row).__tablename__,  # type: ignore[attr-defined]
                    row_id=row.id,  # type: ignore[attr-defined]
                    op=op,
                    hlc=row.hlc,
                    base_hlc=base_hlc,
                    origin_node_id=context.node_id,
                    created_at=now,
                )
            )


def _changes_synced_content(session: Session, row: SyncMixin) -> bool:
    """Modified in something other than its private columns (a login's failed-attempt count
    is the node's own business, and costs every other node nothing)."""
    if not session.is_modified(row, include_collections=False):
        return False
    private = row.__sync_private__
    if not private:
        return True
    state = attributes.instance_state(row)
    return any(attr.key not in private and attr.history.has_changes() for attr in state.attrs)


def _committed_hlc(row: SyncMixin) -> int:
    """The version the row had when this unit of work loaded it (0 for a new row)."""
    history = attributes.get_history(row, "hlc")
    if history.deleted:
        return int(history.deleted[0] or 0)
    return int(history.unchanged[0] or 0) if history.unchanged else 0


def _sequence_statement(dialect: str, scope: str, count: int) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(SyncCounter)
        .values(scope=scope, value=count)
        .on_conflict_do_update(
            index_elements=[SyncCounter.scope],
            set_={"value": SyncCounter.value + count},
        )
        .returning(SyncCounter.value)
    )


def _take_sequence(session: Session, scope: str, count: int) -> int:
    """Reserve ``count`` numbers in ``scope``; the row lock lasts until commit."""
    stmt = _sequence_statement(session.get_bind().dialect.name, scope, count)
    # Core execution on the flush connection: the ORM statement path costs more than the SQL.
    return int(session.connection().execute(stmt).scalar_one())


async def take_sequence(session: AsyncSession, scope: str, count: int) -> int:
    """The same reservation for writers that bypass the ORM flush (a sync batch's merge)."""
    stmt = _sequence_statement(session.get_bind().dialect.name, scope, count)
    return int((await session.execute(stmt)).scalar_one())


def install_change_capture() -> None:
    """Register the flush hook once per process (idempotent)."""
    if not event.contains(Session, "before_flush", _before_flush):
        event.listen(Session, "before_flush", _before_flush)
