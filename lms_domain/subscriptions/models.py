"""Subscriptions, their renewal attempts and the per-institution dunning schedule.

State (``status``) is what entitlements derive from; the retry schedule lives in
``SubscriptionRenewalAttempt`` rows, so changing one never silently changes the other.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, IdMixin, SyncMixin, TenantMixin, TimestampMixin
from lms_domain.types import enum_column


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAST_DUE = "past_due"  # a renewal failed or was not approved; dunning runs
    GRACE = "grace"  # still past due but access kept until grace_until
    UNPAID = "unpaid"  # dunning exhausted; access removed
    CANCELLED = "cancelled"


class Subscription(Base, IdMixin, SyncMixin, TenantMixin):
    """Down-only to edges: they need the state to grant access offline."""

    __tablename__ = "subscriptions"

    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"), index=True)
    product_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("products.id", ondelete="RESTRICT"))
    price_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("prices.id", ondelete="RESTRICT"))
    status: Mapped[SubscriptionStatus] = mapped_column(
        enum_column(SubscriptionStatus, "status"), default=SubscriptionStatus.ACTIVE
    )
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    grace_until: Mapped[datetime | None] = mapped_column(default=None)
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        sa.CheckConstraint("current_period_end > current_period_start", name="period_ordered"),
        sa.Index("ix_subscriptions_status_period_end", "status", "current_period_end"),
    )


class SubscriptionItem(Base, IdMixin, SyncMixin, TenantMixin):
    __tablename__ = "subscription_items"

    subscription_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    price_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("prices.id", ondelete="RESTRICT"))
    quantity: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "price_id"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    )


class RenewalOutcome(StrEnum):
    SCHEDULED = "scheduled"
    INVITED = "invited"  # learner asked to approve (SMS / USSD)
    APPROVED = "approved"  # learner approved; a push was fired
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"  # never approved in time
    SKIPPED = "skipped"  # paid through another channel first


class SubscriptionRenewalAttempt(Base, IdMixin, TimestampMixin, TenantMixin):
    """Every try at renewing one period: an invitation, an approval and its payment prompt.

    ``attempt_no`` counts all tries of the period (a learner may approve again after a failed
    prompt); ``dunning_step`` marks the ones the scheduler made: 0 the renewal invitation before
    the due date, 1..n the dunning schedule's attempts after it. The database holds both unique
    per (subscription, period), so two scheduler processes cannot both dun a learner for the
    same step.
    """

    __tablename__ = "subscription_renewal_attempts"

    subscription_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("subscriptions.id", ondelete="RESTRICT"))
    period_start: Mapped[datetime]
    attempt_no: Mapped[int]
    dunning_step: Mapped[int | None] = mapped_column(sa.SmallInteger, default=None)
    outcome: Mapped[RenewalOutcome] = mapped_column(
        enum_column(RenewalOutcome, "outcome"), default=RenewalOutcome.SCHEDULED
    )
    scheduled_for: Mapped[datetime]
    invited_at: Mapped[datetime | None] = mapped_column(default=None)
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    payment_intent_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("payment_intents.id", ondelete="RESTRICT"), default=None
    )
    failure_class: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    detail: Mapped[str | None] = mapped_column(sa.String(255), default=None)

    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "period_start", "attempt_no"),
        sa.UniqueConstraint("subscription_id", "period_start", "dunning_step", name="uq_renewal_attempts_step"),
        sa.CheckConstraint("attempt_no >= 0", name="attempt_no_non_negative"),
    )


class DunningSchedule(Base, IdMixin, TimestampMixin, TenantMixin):
    """Retry offsets in days after the due date (default T+0, +1, +3, +7), then grace."""

    __tablename__ = "dunning_schedules"

    offsets_days: Mapped[list[int]] = mapped_column(default=lambda: [0, 1, 3, 7])
    grace_days: Mapped[int] = mapped_column(default=7)
    quiet_start_hour: Mapped[int] = mapped_column(default=22)  # Africa/Nairobi
    quiet_end_hour: Mapped[int] = mapped_column(default=7)

    __table_args__ = (
        sa.UniqueConstraint("institution_id"),
        sa.CheckConstraint("grace_days >= 0 AND grace_days <= 90", name="grace_in_range"),
        sa.CheckConstraint(
            "quiet_start_hour BETWEEN 0 AND 23 AND quiet_end_hour BETWEEN 0 AND 23", name="quiet_hours_in_range"
        ),
    )


class SubscriptionUsage(Base, IdMixin, SyncMixin, TenantMixin):
    """Append-only usage events (lessons opened, quiz attempts), made at school or central."""

    __tablename__ = "subscription_usage"

    subscription_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"))
    metric: Mapped[str] = mapped_column(sa.String(32))
    quantity: Mapped[int] = mapped_column(default=1)
    recorded_at: Mapped[datetime]

    __table_args__ = (sa.CheckConstraint("quantity > 0", name="quantity_positive"),)


class QueuedRenewalStatus(StrEnum):
    QUEUED = "queued"  # made at a school's edge node; waiting for the central server
    PROMPTED = "prompted"  # the central server sent the payment prompt
    REFUSED = "refused"  # not renewable now (cancelled, already paid, prompted a minute ago)
    FAILED = "failed"  # the provider could not be reached, three times


class QueuedRenewal(Base, IdMixin, SyncMixin, TenantMixin):
    """A renewal approved at a school while payments are out of reach: the edge writes it, the
    central server sends the prompt and writes the outcome back (so the school sees it after
    its next sync). Same approval flow as REST and USSD, one prompt per approval."""

    __tablename__ = "queued_renewals"

    subscription_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"))
    phone: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    period_start: Mapped[datetime | None] = mapped_column(default=None)
    requested_at: Mapped[datetime]
    status: Mapped[QueuedRenewalStatus] = mapped_column(
        enum_column(QueuedRenewalStatus, "status"), default=QueuedRenewalStatus.QUEUED
    )
    tries: Mapped[int] = mapped_column(default=0)
    outcome: Mapped[str | None] = mapped_column(sa.String(200), default=None)  # for the school to read
    attempt_id: Mapped[uuid.UUID | None] = mapped_column(default=None)

    __table_args__ = (sa.Index("ix_queued_renewals_status", "status"),)
