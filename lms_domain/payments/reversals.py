"""Sending an approved refund back: a full Daraja Reversal or an Airtel refund, then one
balancing ledger entry. Both providers reverse whole transactions only, so a partial refund
is refused here (it needs B2C, which a paybill app cannot hold beside C2B).

Exactly once: the refund moves ``approved -> processing -> succeeded | failed`` under a row
lock, the provider's conversation id is recorded before the result can arrive, and the ledger
entry is keyed on the refund. ``R000001`` (already reversed) is success when it is ours.
"""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.access import Actor
from lms_domain.clock import Clock
from lms_domain.commerce.models import Invoice, LineItem, Order, OrderStatus, Receipt, Refund, RefundStatus
from lms_domain.commerce.refunds import get_refund
from lms_domain.db import lock
from lms_domain.entitlements.models import Entitlement, EntitlementSource
from lms_domain.errors import Conflict, InvalidInput, NotFound
from lms_domain.ledger.accounts import REFUNDS, SUSPENSE, VAT_PAYABLE
from lms_domain.ledger.service import post_entry
from lms_domain.money import DEFAULT_VAT_RATE_BP, Money, split_vat
from lms_domain.payments import inbox
from lms_domain.payments.models import Payment, PaymentStatus, Provider, WebhookStatus
from lms_domain.payments.mpesa import REVERSAL_ALREADY_REVERSED, parse_async_result
from lms_domain.payments.paybill import suspense_balance
from lms_domain.payments.ports import Gateways, PaymentGatewayError
from lms_domain.payments.settlement import clearing_account
from lms_domain.subscriptions.models import Subscription, SubscriptionStatus

log = logging.getLogger("somo.payments.reversals")

RESULT_KIND = "mpesa_result"
LEDGER_SOURCE = "refund"
LEDGER_KIND = "refund"
REVERSAL_REMARKS = "Somo refund"


async def _locked_refund(session: AsyncSession, refund_id: uuid.UUID) -> Refund:
    refund = await lock(session, Refund, refund_id)
    if refund is None:
        raise NotFound("refund not found")
    return refund


async def _claim(session: AsyncSession, actor: Actor, refund_id: uuid.UUID, clock: Clock) -> tuple[Refund, Payment]:
    refund = await get_refund(session=session, actor=actor, refund_id=refund_id, for_update=True)
    actor.require_admin()
    if refund.status is not RefundStatus.APPROVED:
        raise Conflict(
            f"the refund is {refund.status.value}; only approved refunds are sent", code="refund_not_approved"
        )
    payment = await session.get(Payment, refund.payment_id)
    assert payment is not None  # foreign key
    if payment.status is not PaymentStatus.SETTLED:
        raise Conflict(f"the payment is {payment.status.value}", code="payment_not_settled")
    if refund.amount_minor != payment.amount_minor:
        raise Conflict(
            "M-Pesa and Airtel reverse whole payments only; refund the full amount or pay back by hand",
            code="partial_refund_unsupported",
        )
    if payment.provider is Provider.MANUAL:
        raise Conflict("a manual payment is refunded by hand", code="manual_refund")
    refund.status, refund.updated_at = RefundStatus.PROCESSING, clock.now()
    return refund, payment


async def send_refund(
    *,
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    refund_id: uuid.UUID,
    gateways: Gateways,
    clock: Clock,
) -> Refund:
    """Send an approved refund to the provider; the refund is ``processing`` until the result.

    An Airtel refund answers at once; a Daraja Reversal answers on the result URL later.
    """
    async with sessions() as session, session.begin():
        refund, payment = await _claim(session, actor, refund_id, clock)
        receipt, provider, institution_id = payment.provider_receipt, payment.provider, payment.institution_id
        if provider is Provider.AIRTEL:
            airtel = await gateways.airtel_for(session, institution_id)
        else:
            org = await gateways.mpesa_org_for(session, institution_id)
    try:
        if provider is Provider.AIRTEL:
            answer = await airtel.refund(receipt)
            reference, done = answer.airtel_money_id or receipt, True
        else:
            accepted = await org.reverse(
                receipt,
                Money(refund.amount_minor, refund.currency),
                result_url=gateways.org_result_url,
                timeout_url=gateways.org_timeout_url,
                remarks=REVERSAL_REMARKS,
            )
            reference, done = accepted.conversation_id, False
    except (PaymentGatewayError, InvalidInput) as exc:
        async with sessions() as session, session.begin():
            failed = await _locked_refund(session, refund_id)
            if failed.status is RefundStatus.PROCESSING and not exc.extra.get("outcome_unknown"):
                failed.status, failed.failure_reason = RefundStatus.APPROVED, exc.detail[:500]
                failed.updated_at = clock.now()
        raise
    async with sessions() as session, session.begin():
        refund = await _locked_refund(session, refund_id)
        refund.provider_reference, refund.updated_at = reference[:64], clock.now()
        if done:
            await complete_refund(session, refund, clock)
        return refund


async def _reversal_postings(session: AsyncSession, payment: Payment) -> list[tuple[str, int]]:
    clearing = clearing_account(payment.provider)
    if await suspense_balance(session, payment) >= payment.amount_minor:
        return [(SUSPENSE, payment.amount_minor), (clearing, -payment.amount_minor)]
    rate = await session.scalar(
        sa.select(Invoice.vat_rate_bp)
        .join(Receipt, Receipt.invoice_id == Invoice.id)
        .where(Receipt.payment_id == payment.id)
    )
    vat = split_vat(Money(payment.amount_minor, payment.currency), DEFAULT_VAT_RATE_BP if rate is None else rate)
    postings = [(REFUNDS, vat.net.amount_minor), (clearing, -payment.amount_minor)]
    if vat.vat.amount_minor:
        postings.append((VAT_PAYABLE, vat.vat.amount_minor))
    return postings


async def complete_refund(session: AsyncSession, refund: Refund, clock: Clock) -> None:
    """The provider returned the money: book it once, and take back what it bought."""
    if refund.status is RefundStatus.SUCCEEDED:
        return
    payment = await lock(session, Payment, refund.payment_id)
    assert payment is not None
    now = clock.now()
    await post_entry(
        session,
        institution_id=refund.institution_id,
        kind=LEDGER_KIND,
        source_type=LEDGER_SOURCE,
        source_id=refund.id,
        occurred_at=now,
        description=f"refund of {payment.provider_receipt} ({refund.provider_reference or 'no reference'})",
        postings=await _reversal_postings(session, payment),
        currency=payment.currency,
    )
    refund.status, refund.updated_at, refund.failure_reason = RefundStatus.SUCCEEDED, now, None
    payment.status, payment.updated_at = PaymentStatus.REVERSED, now
    if refund.order_id is not None:
        order = await session.get(Order, refund.order_id)
        if order is not None and order.status is OrderStatus.PAID:
            order.status, order.updated_at = OrderStatus.REFUNDED, now
        await revoke_order_access(session, refund.order_id, clock)


async def revoke_order_access(session: AsyncSession, order_id: uuid.UUID, clock: Clock) -> None:
    """Access a refunded order bought ends now; a subscription it started is cancelled."""
    now = clock.now()
    order = await session.get(Order, order_id)
    if order is None or order.paid_at is None:
        return
    products = sa.select(LineItem.product_id).where(LineItem.order_id == order_id)
    started = list(
        await session.scalars(
            sa.select(Subscription.id)
            .join(
                Entitlement,
                sa.and_(Entitlement.source == EntitlementSource.SUBSCRIPTION, Entitlement.source_id == Subscription.id),
            )
            .where(
                Subscription.learner_id == order.learner_id,
                Subscription.product_id.in_(products),
                Entitlement.valid_from == order.paid_at,
                Subscription.status != SubscriptionStatus.CANCELLED,
            )
        )
    )
    if started:
        await session.execute(
            sa.update(Subscription)
            .where(Subscription.id.in_(started))
            .values(status=SubscriptionStatus.CANCELLED, cancelled_at=now)
            .execution_options(synchronize_session=False)
        )
    await session.execute(
        sa.update(Entitlement)
        .where(Entitlement.source_id.in_([order_id, *started]), Entitlement.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


async def apply_reversal_result(session: AsyncSession, event_id: uuid.UUID, clock: Clock) -> None:
    """Apply one stored Reversal result to its refund; processing a row twice changes nothing."""
    event = await inbox.claim(session, event_id)
    if event is None:
        return
    try:
        result = parse_async_result(event.body.encode())
    except InvalidInput as exc:
        inbox.finish(event, WebhookStatus.FAILED, clock, exc.detail)
        return
    refund = await session.scalar(
        sa.select(Refund)
        .where(Refund.provider_reference == result.conversation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if refund is None:
        # Not a reversal of ours (a Transaction Status result): reconciliation reads it.
        inbox.finish(event, WebhookStatus.PROCESSED, clock)
        return
    event.institution_id = refund.institution_id
    if refund.status is RefundStatus.SUCCEEDED:
        inbox.finish(event, WebhookStatus.IGNORED, clock, "duplicate: refund already done")
        return
    if result.succeeded or result.result_code == REVERSAL_ALREADY_REVERSED:
        await complete_refund(session, refund, clock)
    else:
        refund.status, refund.failure_reason = RefundStatus.FAILED, f"{result.result_code}: {result.result_desc}"[:500]
        refund.updated_at = clock.now()
    inbox.finish(event, WebhookStatus.PROCESSED, clock)
