"""Refund requests and the admin decision on them.

A request records who wants how much back; an institution admin approves or rejects it.
Sending the money back (a full M-Pesa Reversal or Airtel refund) is
``lms_domain.payments.reversals``: approved, then processing, then succeeded or failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_visible, tenant_filter
from lms_domain.clock import Clock
from lms_domain.commerce.models import Invoice, Receipt, Refund, RefundStatus
from lms_domain.commerce.schemas import RefundCreate, RefundListQuery
from lms_domain.db import lock
from lms_domain.errors import Conflict, InvalidInput, NotFound
from lms_domain.ids import new_id
from lms_domain.money import Money
from lms_domain.pagination import paginate
from lms_domain.payments.models import Payment, PaymentIntent, PaymentStatus


async def _payment_for(session: AsyncSession, actor: Actor, payment_id: uuid.UUID) -> Payment:
    # Locked: two requests for the same payment must not both fit under what is left.
    payment = await lock(session, Payment, payment_id)
    ensure_visible(payment, actor, what="payment")
    assert payment is not None
    if not actor.is_staff and (payment.learner_id is None or payment.learner_id != actor.own_learner_id()):
        raise NotFound("payment not found")
    return payment


async def _order_of(session: AsyncSession, payment: Payment) -> uuid.UUID | None:
    order_id = await session.scalar(
        sa.select(Invoice.order_id)
        .join(Receipt, Receipt.invoice_id == Invoice.id)
        .where(Receipt.payment_id == payment.id)
    )
    if order_id is None and payment.intent_id is not None:
        order_id = await session.scalar(sa.select(PaymentIntent.order_id).where(PaymentIntent.id == payment.intent_id))
    return order_id


async def request_refund(*, session: AsyncSession, actor: Actor, data: RefundCreate, clock: Clock) -> Refund:
    """The learner who paid, or staff of the institution, ask for up to what is left of
    the payment after every other refund still standing (not rejected, not failed)."""
    payment = await _payment_for(session, actor, data.payment_id)
    if payment.status is not PaymentStatus.SETTLED:
        raise Conflict(f"the payment is {payment.status.value}", code="payment_not_settled")
    claimed = await session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Refund.amount_minor), 0)).where(
            Refund.payment_id == payment.id, Refund.status.not_in([RefundStatus.REJECTED, RefundStatus.FAILED])
        )
    )
    refundable = payment.amount_minor - int(claimed or 0)
    if data.amount_minor > refundable:
        raise InvalidInput(
            f"at most {Money(max(refundable, 0), payment.currency)} of this payment can still be refunded",
            code="refund_exceeds_payment",
            refundable_minor=max(refundable, 0),
        )
    now = clock.now()
    refund = Refund(
        id=new_id(),
        institution_id=payment.institution_id,
        payment_id=payment.id,
        order_id=await _order_of(session, payment),
        currency=payment.currency,
        amount_minor=data.amount_minor,
        reason=data.reason,
        status=RefundStatus.REQUESTED,
        requested_by_id=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(refund)
    await session.flush()
    return refund


async def list_refunds(
    *, session: AsyncSession, actor: Actor, query: RefundListQuery
) -> tuple[Sequence[Refund], str | None]:
    """Learners see refunds of what they paid; staff their institution's."""
    stmt = tenant_filter(sa.select(Refund), Refund.institution_id, actor)
    if not actor.is_staff:
        own_payments = sa.select(Payment.id).where(Payment.learner_id == actor.own_learner_id())
        stmt = stmt.where(Refund.payment_id.in_(own_payments))
    if query.status is not None:
        stmt = stmt.where(Refund.status == query.status)
    return await paginate(session, stmt, Refund.id, cursor=query.cursor, limit=query.limit)


async def get_refund(*, session: AsyncSession, actor: Actor, refund_id: uuid.UUID, for_update: bool = False) -> Refund:
    stmt = sa.select(Refund).where(Refund.id == refund_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    refund = await session.scalar(stmt)
    ensure_visible(refund, actor, what="refund")
    assert refund is not None
    if not actor.is_staff:
        payer = await session.scalar(sa.select(Payment.learner_id).where(Payment.id == refund.payment_id))
        if payer is None or payer != actor.learner_id:
            raise NotFound("refund not found")
    return refund


async def _decide(
    session: AsyncSession, actor: Actor, refund_id: uuid.UUID, clock: Clock, outcome: RefundStatus
) -> Refund:
    refund = await get_refund(session=session, actor=actor, refund_id=refund_id, for_update=True)
    actor.require_admin()
    # An approved refund not yet sent may still be rejected (say, a partial one the provider
    # cannot reverse); once processing, the money is on its way.
    decidable = (RefundStatus.REQUESTED, RefundStatus.APPROVED) if outcome is RefundStatus.REJECTED else ()
    if refund.status is not RefundStatus.REQUESTED and refund.status not in decidable:
        raise Conflict(f"the refund is already {refund.status.value}", code="refund_not_requested")
    now = clock.now()
    refund.status = outcome
    refund.decided_by_id = actor.user_id
    refund.decided_at = now
    refund.updated_at = now
    return refund


async def approve_refund(*, session: AsyncSession, actor: Actor, refund_id: uuid.UUID, clock: Clock) -> Refund:
    """Approve a requested refund. This records the decision only: ``reversals.send_refund``
    sends the money back."""
    refund = await _decide(session, actor, refund_id, clock, RefundStatus.APPROVED)
    await session.flush()
    return refund


async def reject_refund(
    *, session: AsyncSession, actor: Actor, refund_id: uuid.UUID, reason: str | None, clock: Clock
) -> Refund:
    """Reject a requested refund; its amount becomes refundable again."""
    refund = await _decide(session, actor, refund_id, clock, RefundStatus.REJECTED)
    refund.failure_reason = reason or None
    await session.flush()
    return refund
