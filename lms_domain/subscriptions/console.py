"""What the admin console reads about subscriptions: a searchable list by state, and each
subscription's renewal and dunning history (attempts, the prompts they sent, renewals queued
at a school, and the messages the learner was sent). Read-only and tenant-scoped."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, tenant_filter
from lms_domain.commerce.models import Price, PriceInterval, Product
from lms_domain.errors import NotFound
from lms_domain.notifications.models import NotificationLog
from lms_domain.pagination import CURSOR_PATTERN, keyset_page
from lms_domain.payments.console import EXPORT_LIMIT, PAGE_SIZE, IntentRow, intent_row, learner_condition
from lms_domain.payments.models import Payment, PaymentIntent
from lms_domain.subscriptions import queries
from lms_domain.subscriptions.models import QueuedRenewal, Subscription, SubscriptionStatus
from lms_domain.subscriptions.schemas import SubscriptionDetail
from lms_domain.tenancy.models import Learner


class SubscriptionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: SubscriptionStatus | None = None
    q: str = Field(default="", max_length=100, description="Learner name, phone or account number.")
    since: datetime | None = Field(default=None, description="Current period ends on or after.")
    until: datetime | None = Field(default=None, description="Current period ends before.")
    sort: Literal["due", "-due", "created", "-created"] = "due"
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN)
    limit: int = Field(default=PAGE_SIZE, ge=1, le=EXPORT_LIMIT)


class SubscriptionRow(BaseModel):
    id: uuid.UUID
    institution_id: uuid.UUID
    learner_id: uuid.UUID
    learner_name: str
    account_no: str
    product_name: str
    amount_minor: int
    currency: str
    interval: PriceInterval
    status: SubscriptionStatus
    current_period_start: datetime
    current_period_end: datetime
    grace_until: datetime | None
    cancel_at_period_end: bool
    cancelled_at: datetime | None
    created_at: datetime


class QueuedRenewalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    requested_at: datetime
    phone: str | None
    period_start: datetime | None
    status: str
    tries: int
    outcome: str | None


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    event: str
    channel: str
    recipient: str
    status: str
    body: str
    created_at: datetime
    scheduled_for: datetime | None
    sent_at: datetime | None
    error: str | None


class SubscriptionHistory(BaseModel):
    subscription: SubscriptionRow
    detail: SubscriptionDetail
    intents: list[IntentRow]
    queued: list[QueuedRenewalOut]
    notifications: list[NotificationOut]


def _rows_stmt() -> Any:
    return (
        sa.select(Subscription, Learner.display_name, Learner.account_no, Product.name_en, Price)
        .join(Learner, Learner.id == Subscription.learner_id)
        .join(Product, Product.id == Subscription.product_id)
        .join(Price, Price.id == Subscription.price_id)
        .where(Subscription.deleted_at.is_(None))
    )


def _row(subscription: Subscription, name: str, account_no: str, product: str, price: Price) -> SubscriptionRow:
    return SubscriptionRow(
        id=subscription.id,
        institution_id=subscription.institution_id,
        learner_id=subscription.learner_id,
        learner_name=name,
        account_no=account_no,
        product_name=product,
        amount_minor=price.amount_minor,
        currency=price.currency,
        interval=price.interval,
        status=subscription.status,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
        grace_until=subscription.grace_until,
        cancel_at_period_end=subscription.cancel_at_period_end,
        cancelled_at=subscription.cancelled_at,
        created_at=subscription.created_at,
    )


async def list_subscriptions(
    *, session: AsyncSession, actor: Actor, query: SubscriptionQuery
) -> tuple[list[SubscriptionRow], str | None]:
    """The actor's school's subscriptions by state, soonest due first by default."""
    actor.require_admin()
    stmt = tenant_filter(_rows_stmt(), Subscription.institution_id, actor)
    if query.status is not None:
        stmt = stmt.where(Subscription.status == query.status)
    if query.q.strip():
        stmt = stmt.where(learner_condition(query.q))
    if query.since is not None:
        stmt = stmt.where(Subscription.current_period_end >= query.since)
    if query.until is not None:
        stmt = stmt.where(Subscription.current_period_end < query.until)
    column = Subscription.created_at if query.sort.lstrip("-") == "created" else Subscription.current_period_end
    rows, cursor = await keyset_page(
        session,
        stmt,
        Subscription,
        column,
        descending=query.sort.startswith("-"),
        cursor=query.cursor,
        limit=query.limit,
    )
    return [_row(*row) for row in rows], cursor


async def subscription_history(
    *, session: AsyncSession, actor: Actor, subscription_id: uuid.UUID
) -> SubscriptionHistory:
    """One subscription with every renewal attempt (``queries.get_subscription``, as
    ``GET /subscriptions/{id}`` answers), the prompts sent for it, renewals queued at a school,
    and the reminders, dunning and failure messages sent about it."""
    actor.require_admin()
    detail = await queries.get_subscription(session=session, actor=actor, subscription_id=subscription_id)
    row = (await session.execute(_rows_stmt().where(Subscription.id == subscription_id))).first()
    if row is None:
        raise NotFound("subscription not found")
    intents = await session.execute(
        sa.select(PaymentIntent, Learner.display_name, Payment.provider_receipt)
        .outerjoin(Learner, Learner.id == PaymentIntent.learner_id)
        .outerjoin(Payment, Payment.intent_id == PaymentIntent.id)
        .where(PaymentIntent.subscription_id == subscription_id)
        .order_by(PaymentIntent.created_at, PaymentIntent.id)
    )
    intent_rows = [intent_row(intent, name, receipt) for intent, name, receipt in intents]
    queued = await session.scalars(
        sa.select(QueuedRenewal)
        .where(QueuedRenewal.subscription_id == subscription_id)
        .order_by(QueuedRenewal.requested_at, QueuedRenewal.id)
    )
    # Messages about this subscription carry its id in their dedupe key (renewal invitation,
    # dunning step, grace ending, cancelled); a failed prompt's message carries the intent's.
    keys = [NotificationLog.dedupe_key.contains(f":{subscription_id}:", autoescape=True)]
    keys += [NotificationLog.dedupe_key.startswith(f"payment_failed:{i.id}", autoescape=True) for i in intent_rows]
    notifications = await session.scalars(
        sa.select(NotificationLog)
        .where(NotificationLog.learner_id == detail.learner_id, sa.or_(*keys))
        .order_by(NotificationLog.created_at, NotificationLog.id)
    )
    return SubscriptionHistory(
        subscription=_row(*row),
        detail=detail,
        intents=intent_rows,
        queued=[QueuedRenewalOut.model_validate(q) for q in queued],
        notifications=[NotificationOut.model_validate(n) for n in notifications],
    )
