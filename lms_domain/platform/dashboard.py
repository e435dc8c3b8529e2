"""The console's dashboard figures, for one school or (platform admins) all of them.

Revenue comes from the ledger, never from orders or intents: the ledger is what settled. It is
net of refunds and excludes VAT, which is owed to KRA rather than earned.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, tenant_filter
from lms_domain.ledger.accounts import REFUNDS, REVENUE
from lms_domain.ledger.models import JournalEntry, LedgerAccount, Posting
from lms_domain.payments.models import IntentStatus, PaymentIntent
from lms_domain.platform.models import EdgeNode, EdgeNodeStatus
from lms_domain.subscriptions.models import Subscription, SubscriptionStatus
from lms_domain.tenancy.models import Learner

NAIROBI = ZoneInfo("Africa/Nairobi")
STALE_AFTER = timedelta(hours=24)


class StaleNode(BaseModel):
    id: uuid.UUID
    name: str
    institution_id: uuid.UUID
    last_sync_at: datetime | None


class Dashboard(BaseModel):
    learners: int
    subscriptions_active: int
    subscriptions_past_due: int
    subscriptions_grace: int
    revenue_today_minor: int
    revenue_month_minor: int
    currency: str = "KES"
    failed_payments_today: int
    stale_nodes: list[StaleNode]


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=NAIROBI)


async def net_revenue(
    session: AsyncSession, actor: Actor, start: datetime, end: datetime, currency: str = "KES"
) -> int:
    """Revenue net of refunds posted in [start, end), as a positive figure."""
    stmt = (
        sa.select(sa.func.coalesce(sa.func.sum(Posting.amount_minor), 0))
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(
            LedgerAccount.code.in_((REVENUE, REFUNDS)),
            Posting.currency == currency,
            JournalEntry.occurred_at >= start,
            JournalEntry.occurred_at < end,
        )
    )
    stmt = tenant_filter(stmt, LedgerAccount.institution_id, actor)
    # Credit-normal: sales are negative postings, so the figure people expect is the negation.
    return -int(await session.scalar(stmt) or 0)


async def dashboard(*, session: AsyncSession, actor: Actor, now: datetime) -> Dashboard:
    actor.require_staff()
    today = now.astimezone(NAIROBI).date()
    day_start, day_end = _local_midnight(today), _local_midnight(today + timedelta(days=1))
    month_start = _local_midnight(today.replace(day=1))

    learners = await session.scalar(
        tenant_filter(
            sa.select(sa.func.count()).select_from(Learner).where(Learner.deleted_at.is_(None)),
            Learner.institution_id,
            actor,
        )
    )
    by_status = dict(
        (
            await session.execute(
                tenant_filter(
                    sa.select(Subscription.status, sa.func.count())
                    .where(Subscription.deleted_at.is_(None))
                    .group_by(Subscription.status),
                    Subscription.institution_id,
                    actor,
                )
            )
        ).all()
    )
    failed = await session.scalar(
        tenant_filter(
            sa.select(sa.func.count())
            .select_from(PaymentIntent)
            .where(
                PaymentIntent.status.in_((IntentStatus.FAILED, IntentStatus.EXPIRED)),
                # When the intent failed, by the flows' clock; updated_at is only the fallback.
                sa.func.coalesce(PaymentIntent.resolved_at, PaymentIntent.updated_at) >= day_start,
                sa.func.coalesce(PaymentIntent.resolved_at, PaymentIntent.updated_at) < day_end,
            ),
            PaymentIntent.institution_id,
            actor,
        )
    )
    stale_stmt = tenant_filter(
        sa.select(EdgeNode)
        .where(
            EdgeNode.status == EdgeNodeStatus.ACTIVE,
            sa.or_(EdgeNode.last_sync_at.is_(None), EdgeNode.last_sync_at < now - STALE_AFTER),
        )
        .order_by(EdgeNode.last_sync_at.asc().nulls_first(), EdgeNode.id)
        .limit(50),
        EdgeNode.institution_id,
        actor,
    )
    stale = [
        StaleNode(id=n.id, name=n.name, institution_id=n.institution_id, last_sync_at=n.last_sync_at)
        for n in await session.scalars(stale_stmt)
    ]
    show_money = actor.is_admin  # instructors see learning figures, not the school's takings
    return Dashboard(
        learners=int(learners or 0),
        subscriptions_active=int(by_status.get(SubscriptionStatus.ACTIVE, 0)),
        subscriptions_past_due=int(by_status.get(SubscriptionStatus.PAST_DUE, 0)),
        subscriptions_grace=int(by_status.get(SubscriptionStatus.GRACE, 0)),
        revenue_today_minor=await net_revenue(session, actor, day_start, day_end) if show_money else 0,
        revenue_month_minor=await net_revenue(session, actor, month_start, day_end) if show_money else 0,
        failed_payments_today=int(failed or 0) if show_money else 0,
        stale_nodes=stale if actor.is_admin else [],
    )
