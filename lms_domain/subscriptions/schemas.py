"""Subscription schemas, shared by the REST API, the edge and the docs."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from lms_domain.courses.schemas import ListQuery
from lms_domain.subscriptions.models import RenewalOutcome, SubscriptionStatus


class SubscriptionListQuery(ListQuery):
    status: SubscriptionStatus | None = None
    learner_id: uuid.UUID | None = Field(default=None, description="Staff only.")


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID
    learner_id: uuid.UUID
    product_id: uuid.UUID
    price_id: uuid.UUID
    status: SubscriptionStatus
    current_period_start: datetime
    current_period_end: datetime
    grace_until: datetime | None
    cancel_at_period_end: bool
    cancelled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SubscriptionPage(BaseModel):
    items: list[SubscriptionOut]
    next_cursor: str | None = None


class SubscriptionItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    price_id: uuid.UUID
    quantity: int


class RenewalAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    period_start: datetime
    attempt_no: int
    # 0: the invitation before the due date; 1..n: the dunning schedule's reminders; null: a
    # try the learner started (an approval after a failed prompt).
    dunning_step: int | None = None
    outcome: RenewalOutcome
    scheduled_for: datetime
    invited_at: datetime | None
    approved_at: datetime | None
    resolved_at: datetime | None
    payment_intent_id: uuid.UUID | None
    failure_class: str | None
    detail: str | None


class SubscriptionDetail(SubscriptionOut):
    """A subscription with what it charges for and the history of its renewals."""

    items: list[SubscriptionItemOut]
    renewal_attempts: list[RenewalAttemptOut]
