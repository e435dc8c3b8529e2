"""Renewals approved at a school's edge node: queued there, prompted from the central server.

Payments never run at a school (no provider credentials leave the central server), so the
edge records the approval as a row that syncs up; the ``queued-renewals`` job hands each one
to ``approve_renewal``, the flow REST and USSD use, and writes the outcome back on the row.
The row is stored before it is processed and processed once: a replayed push changes nothing
(the merge), and a row leaves ``queued`` in the same transaction that records its outcome.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.access import Actor, ensure_learners_row
from lms_domain.clock import Clock
from lms_domain.errors import DomainError, PreconditionFailed
from lms_domain.payments.ports import Gateways, PaymentGatewayError
from lms_domain.payments.renewals import approve_renewal
from lms_domain.subscriptions.models import QueuedRenewal, QueuedRenewalStatus, Subscription, SubscriptionStatus

log = logging.getLogger("somo.renewals")
MAX_TRIES = 3


async def queue_renewal(
    *,
    session: AsyncSession,
    actor: Actor,
    subscription_id: uuid.UUID,
    phone: str | None,
    period_start: datetime | None,
    clock: Clock,
) -> QueuedRenewal:
    """At the edge: the learner (or staff for them) approves; the prompt comes once synced."""
    subscription = await session.get(Subscription, subscription_id)
    ensure_learners_row(subscription, actor, what="subscription")
    assert subscription is not None
    if subscription.status is SubscriptionStatus.CANCELLED:
        raise PreconditionFailed("the subscription is cancelled", code="subscription_cancelled")
    queued = QueuedRenewal(
        institution_id=subscription.institution_id,
        subscription_id=subscription.id,
        learner_id=subscription.learner_id,
        phone=phone,
        period_start=period_start,
        requested_at=clock.now(),
    )
    session.add(queued)
    await session.flush()
    return queued


async def send_queued_renewals(
    *, sessions: async_sessionmaker[AsyncSession], gateways: Gateways, clock: Clock, batch: int = 100
) -> dict[str, int]:
    """The central job: one prompt per queued approval, its outcome written back."""
    async with sessions() as session:
        ids = list(
            await session.scalars(
                sa.select(QueuedRenewal.id)
                .where(QueuedRenewal.status == QueuedRenewalStatus.QUEUED)
                .order_by(QueuedRenewal.requested_at, QueuedRenewal.id)
                .limit(batch)
            )
        )
    counts = {"prompted": 0, "refused": 0, "failed": 0, "retrying": 0}
    for queued_id in ids:
        counts[await _send_one(sessions, gateways, clock, queued_id)] += 1
    return counts


async def _send_one(
    sessions: async_sessionmaker[AsyncSession], gateways: Gateways, clock: Clock, queued_id: uuid.UUID
) -> str:
    async with sessions() as session, session.begin():
        queued = await session.scalar(
            sa.select(QueuedRenewal)
            .where(QueuedRenewal.id == queued_id, QueuedRenewal.status == QueuedRenewalStatus.QUEUED)
            .with_for_update(skip_locked=True)
        )
        if queued is None:
            return "retrying"  # another run has it, or it is done
        subscription_id, phone, period_start = queued.subscription_id, queued.phone, queued.period_start
        tries = queued.tries + 1
    outcome: str
    status: QueuedRenewalStatus
    attempt_id: uuid.UUID | None = None
    try:
        approval = await approve_renewal(
            sessions=sessions,
            subscription_id=subscription_id,
            period_start=period_start,
            msisdn=phone,
            gateways=gateways,
            clock=clock,
        )
        attempt_id = approval.attempt.id
        status = QueuedRenewalStatus.PROMPTED
        outcome = "prompted" if approval.pushed else "an earlier prompt for this period is open or paid"
    except PaymentGatewayError as exc:
        status = QueuedRenewalStatus.FAILED if tries >= MAX_TRIES else QueuedRenewalStatus.QUEUED
        outcome = f"{exc.code}: {exc.detail}"[:200]
    except DomainError as exc:
        status, outcome = QueuedRenewalStatus.REFUSED, f"{exc.code}: {exc.detail}"[:200]
    async with sessions() as session, session.begin():
        queued = await session.get(QueuedRenewal, queued_id, with_for_update=True)
        assert queued is not None
        queued.status, queued.outcome, queued.tries, queued.attempt_id = status, outcome, tries, attempt_id
    log.info("queued renewal", extra={"queued_renewal": str(queued_id), "status": status.value})
    return "retrying" if status is QueuedRenewalStatus.QUEUED else status.value
