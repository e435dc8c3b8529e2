"""Outbox and sequence counters: the change feed every synced write lands in."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

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
    origin_node_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("scope", "seq"),
        sa.Index("ix_sync_outbox_table_row", "table_name", "row_id"),
    )
