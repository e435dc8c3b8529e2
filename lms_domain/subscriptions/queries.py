"""Reading subscriptions. Writing them belongs to the payment and dunning flows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_learners_row, learner_scope
from lms_domain.pagination import paginate
from lms_domain.subscriptions.models import Subscription, SubscriptionItem, SubscriptionRenewalAttempt
from lms_domain.subscriptions.schemas import (
    RenewalAttemptOut,
    SubscriptionDetail,
    SubscriptionItemOut,
    SubscriptionListQuery,
    SubscriptionOut,
)


async def list_subscriptions(
    *, session: AsyncSession, actor: Actor, query: SubscriptionListQuery
) -> tuple[Sequence[Subscription], str | None]:
    """Learners see their own subscriptions; staff their institution's."""
    stmt = learner_scope(
        sa.select(Subscription).where(Subscription.deleted_at.is_(None)),
        learner_column=Subscription.learner_id,
        institution_column=Subscription.institution_id,
        actor=actor,
    )
    if query.learner_id is not None:
        stmt = stmt.where(Subscription.learner_id == query.learner_id)
    if query.status is not None:
        stmt = stmt.where(Subscription.status == query.status)
    return await paginate(session, stmt, Subscription.id, cursor=query.cursor, limit=query.limit)


async def get_subscription(*, session: AsyncSession, actor: Actor, subscription_id: uuid.UUID) -> SubscriptionDetail:
    subscription = await session.get(Subscription, subscription_id)
    ensure_learners_row(subscription, actor, what="subscription")
    assert subscription is not None
    items = await session.scalars(
        sa.select(SubscriptionItem)
        .where(SubscriptionItem.subscription_id == subscription.id, SubscriptionItem.deleted_at.is_(None))
        .order_by(SubscriptionItem.id)
    )
    attempts = await session.scalars(
        sa.select(SubscriptionRenewalAttempt)
        .where(SubscriptionRenewalAttempt.subscription_id == subscription.id)
        .order_by(SubscriptionRenewalAttempt.period_start, SubscriptionRenewalAttempt.attempt_no)
    )
    return SubscriptionDetail(
        **SubscriptionOut.model_validate(subscription).model_dump(),
        items=[SubscriptionItemOut.model_validate(item) for item in items],
        renewal_attempts=[RenewalAttemptOut.model_validate(attempt) for attempt in attempts],
    )
