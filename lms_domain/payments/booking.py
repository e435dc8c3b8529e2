"""Booking money that arrived: one journal entry, then what it buys.

Every channel that receives money for a learner (an STK or Airtel intent, a paybill payment)
ends here, so "what does this payment pay for, and what if nothing" is decided once. The ledger
is posted before anything synced (entitlements, subscriptions) is written: a synced row takes
the school's change-sequence counter until commit, so writing those last holds that per-school
lock for the final flush only, not the whole settlement.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.clock import Clock
from lms_domain.commerce.models import Order, OrderStatus
from lms_domain.ledger.service import post_entry
from lms_domain.money import Money
from lms_domain.notifications.service import notify_learner
from lms_domain.payments.models import Payment, Provider
from lms_domain.payments.renewals import renewal_postings, settle_renewal
from lms_domain.payments.settlement import fulfil_order, order_sale_postings, suspense_postings
from lms_domain.subscriptions.models import Subscription


class PaidFor(StrEnum):
    ORDER = "order"
    SUBSCRIPTION = "subscription"
    SUSPENSE = "suspense"  # nothing payable: held for a refund or an admin's match


async def book_payment(
    session: AsyncSession,
    payment: Payment,
    *,
    order: Order | None,
    subscription: Subscription | None,
    kind: str,
    source_type: str,
    source_id: uuid.UUID,
    description: str,
    clock: Clock,
) -> PaidFor:
    """Post ``payment`` to the ledger under (``source_type``, ``source_id``, ``kind``) and pay
    ``order`` (if still pending) or renew ``subscription``; with neither, hold it in suspense."""
    postings: list[tuple[str, int]] = []
    if order is not None and order.status is OrderStatus.PENDING:
        postings = await order_sale_postings(session, order, payment)
    elif subscription is not None:
        postings = renewal_postings(payment)
    if not postings:
        order = subscription = None
        postings = suspense_postings(payment)
    await post_entry(
        session,
        institution_id=payment.institution_id,
        kind=kind,
        source_type=source_type,
        source_id=source_id,
        occurred_at=payment.paid_at,
        description=description,
        postings=postings,
        currency=payment.currency,
    )
    if order is None and subscription is None:
        return PaidFor.SUSPENSE
    # Queued before the synced writes below, like the ledger: its reads then never run while
    # this transaction holds the school's change-sequence counter.
    await _thank(session, payment, clock)
    if order is not None:
        await fulfil_order(session, order, payment=payment, paid_at=payment.paid_at, clock=clock)
        return PaidFor.ORDER
    assert subscription is not None
    await settle_renewal(session, subscription, payment=payment, clock=clock)
    return PaidFor.SUBSCRIPTION


def _receipt_of(payment: Payment) -> str:
    """What the learner knows the payment by: the provider's receipt, or the slip an admin entered."""
    if payment.provider is Provider.MANUAL:
        return payment.account_reference or payment.provider_receipt
    return payment.provider_receipt


async def _thank(session: AsyncSession, payment: Payment, clock: Clock) -> None:
    """The learner's "payment received" message, queued with the settlement it confirms."""
    if payment.learner_id is None:
        return
    await notify_learner(
        session=session,
        learner_id=payment.learner_id,
        event="payment_received",
        values={"amount": Money(payment.amount_minor, payment.currency).figure, "receipt": _receipt_of(payment)},
        dedupe_key=f"payment_received:{payment.id}",
        now=clock.now(),
    )
