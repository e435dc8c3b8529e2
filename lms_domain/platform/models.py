"""Platform plumbing every channel relies on: edge nodes, refresh tokens, idempotency
keys and the audit log. Central-only."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, IdMixin, TenantMixin, TimestampMixin, utcnow
from lms_domain.types import enum_column


class EdgeNodeStatus(StrEnum):
    PENDING = "pending"  # registered; waiting for its one-time enrollment code to be used
    ACTIVE = "active"
    REVOKED = "revoked"


class EdgeNode(Base, IdMixin, TimestampMixin, TenantMixin):
    """A school server. Its identity is enrolled, never derived from a MAC or hostname."""

    __tablename__ = "edge_nodes"

    name: Mapped[str] = mapped_column(sa.String(120))
    status: Mapped[EdgeNodeStatus] = mapped_column(
        enum_column(EdgeNodeStatus, "status"), default=EdgeNodeStatus.PENDING
    )
    enrollment_code_hash: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    public_key: Mapped[str | None] = mapped_column(sa.Text, default=None)
    epoch: Mapped[int] = mapped_column(default=0)  # bumped when a restored database re-enrolls
    last_pull_seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # its institution feed
    last_pull_catalog_seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # The last push batch acknowledged: its outbox range and a digest of its entries, so a
    # retried batch (lost answer) is told apart from new changes reusing old numbers (a
    # restored database), which would otherwise be acknowledged and lost.
    last_push_seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_push_from: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_push_digest: Mapped[str] = mapped_column(sa.String(64), default="")
    rows_pushed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    rows_rejected: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_sync_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class RefreshToken(Base, IdMixin):
    """Only the hash is stored; a token is revoked by stamping ``revoked_at``."""

    __tablename__ = "refresh_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    family_id: Mapped[uuid.UUID]  # rotation chain: reuse of a rotated token revokes the family
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    user_agent: Mapped[str | None] = mapped_column(sa.String(255), default=None)


class IdempotencyState(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class IdempotencyKey(Base, IdMixin):
    """Stripe-style idempotency for POSTs that create money or enrollments."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(sa.String(64))  # the caller (user id) and route
    key: Mapped[str] = mapped_column(sa.String(255))
    request_sha256: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[IdempotencyState] = mapped_column(
        enum_column(IdempotencyState, "state"), default=IdempotencyState.IN_PROGRESS
    )
    response_status: Mapped[int | None] = mapped_column(default=None)
    response_body: Mapped[str | None] = mapped_column(sa.Text, default=None)
    response_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    __table_args__ = (sa.UniqueConstraint("scope", "key"),)


class AuditLog(Base, IdMixin):
    """Who did what, when, with the before and after of the row."""

    __tablename__ = "audit_log"

    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("institutions.id", ondelete="RESTRICT"), default=None, index=True
    )
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    action: Mapped[str] = mapped_column(sa.String(64))
    target_type: Mapped[str] = mapped_column(sa.String(64))
    target_id: Mapped[str] = mapped_column(sa.String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    request_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    # The console opens a record's history (learner, user, node) from its page.
    __table_args__ = (sa.Index("ix_audit_log_target", "target_type", "target_id"),)
