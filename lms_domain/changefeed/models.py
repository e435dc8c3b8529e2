"""Outbox and sequence counters: the change feed every synced write lands in."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, IdMixin, utcnow
from lms_domain.types import enum_column


class ChangeOp(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class SyncCounter(Base):
    """One row per scope. Taking it ``FOR UPDATE`` in the writing transaction is what
    makes sequence numbers become visible in order on Postgres: a writer holding a lower
    number blocks the next writer until it commits."""

    __tablename__ = "sync_counters"

    scope: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger, default=0)

    __table_args__ = (sa.CheckConstraint("value >= 0", name="value_non_negative"),)


class OutboxEntry(Base, IdMixin):
    """A change to a synced row, written in the same transaction as the change.

    On the central server the entries of a scope, ordered by ``seq``, are the feed edges
    pull. On an edge node they are the queue of local changes still to push.
    """

    __tablename__ = "sync_outbox"

    scope: Mapped[str] = mapped_column(sa.String(64))
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    table_name: Mapped[str] = mapped_column(sa.String(64))
    row_id: Mapped[uuid.UUID]
    op: Mapped[ChangeOp] = mapped_column(enum_column(ChangeOp, "op"))
    hlc: Mapped[int] = mapped_column(sa.BigInteger)
    # The row's version before this change: what the writer last saw. A push carries it, so
    # the receiver can tell a concurrent edit (a conflict to log) from a plain successor.
    base_hlc: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    origin_node_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("scope", "seq"),
        sa.Index("ix_sync_outbox_table_row", "table_name", "row_id"),
    )


class SyncConflict(Base, IdMixin):
    """A last-writer-wins merge where both sides had changed the row since the writer last
    saw it: the loser is kept here, whole, so a person can see and restore it (the lesson
    of conflicts hidden in a text column nobody reads)."""

    __tablename__ = "sync_conflicts"

    table_name: Mapped[str] = mapped_column(sa.String(64))
    row_id: Mapped[uuid.UUID] = mapped_column(index=True)
    institution_id: Mapped[uuid.UUID | None] = mapped_column(index=True, default=None)
    winner_hlc: Mapped[int] = mapped_column(sa.BigInteger)
    winner_node_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    loser_hlc: Mapped[int] = mapped_column(sa.BigInteger)
    loser_node_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    loser: Mapped[dict[str, Any]] = mapped_column(default=dict)
    detected_by: Mapped[uuid.UUID]  # the node that merged: the central server or an edge
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncRejection(Base, IdMixin):
    """A pushed row refused: out of the node's scope, a table it may not write, or a
    uniqueness collision. Logged (never dropped silently) and acknowledged, so one bad row
    cannot wedge a node's outbox for ever."""

    __tablename__ = "sync_rejections"

    node_id: Mapped[uuid.UUID] = mapped_column(index=True)
    institution_id: Mapped[uuid.UUID | None] = mapped_column(index=True, default=None)
    table_name: Mapped[str] = mapped_column(sa.String(64))
    row_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    reason: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    row: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncState(Base):
    """A node's own sync bookkeeping (identity, cursor, watermarks, last error), one row per
    key. Lives in the node's database, so a restored backup restores it with the data it
    describes, which is exactly what the epoch check then catches."""

    __tablename__ = "sync_state"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
