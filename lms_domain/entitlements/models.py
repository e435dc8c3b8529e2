"""What a learner may open. Written only by the payment and subscription flows."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, IdMixin, SyncMixin, TenantMixin
from lms_domain.types import enum_column


class EntitlementSource(StrEnum):
    PURCHASE = "purchase"
    SUBSCRIPTION = "subscription"
    GRANT = "grant"  # given by an admin (scholarship, staff child)


class Entitlement(Base, IdMixin, SyncMixin, TenantMixin):
    """Down-only to edges, which read it to let a learner open a paid course offline."""

    __tablename__ = "entitlements"

    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"), index=True)
    product_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), default=None
    )
    course_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"), default=None)
    source: Mapped[EntitlementSource] = mapped_column(enum_column(EntitlementSource, "source"))
    source_id: Mapped[uuid.UUID | None] = mapped_column(default=None)  # order, subscription or grant
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        sa.CheckConstraint("product_id IS NOT NULL OR course_id IS NOT NULL", name="grants_something"),
        sa.CheckConstraint("valid_until IS NULL OR valid_until > valid_from", name="validity_ordered"),
    )
