"""What money that arrived buys: the paid order and invoice, the receipt, the entitlements and
subscriptions, and the ledger postings. Every channel ends here (STK, Airtel, paybill, a
suspense match, a free order), so an order is fulfilled the same way whoever paid for it.

Callers own the transaction and have already made the ``Payment`` row (unique per provider
receipt), which is what makes a second fulfilment impossible; these helpers only flush.
"""

from __future__ import annotations

import calendar
import logging
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.clock import Clock
from lms_domain.commerce.models import (
    Invoice,
    InvoiceStatus,
    LineItem,
    Order,
    OrderStatus,
    Price,
    PriceInterval,
    Product,
    ProductKind,
    Receipt,
)
from lms_domain.entitlements.models import Entitlement, EntitlementSource
from lms_domain.errors import Conflict
from lms_domain.ids import crockford_code, new_id
from lms_domain.ledger.accounts import AIRTEL_CLEARING, CASH, MPESA_CLEARING, REVENUE, SUSPENSE, VAT_PAYABLE
from lms_domain.money import Money, split_vat
from lms_domain.payments.models import Payment, Provider
from lms_domain.subscriptions.models import Subscription, SubscriptionItem, SubscriptionStatus

log = logging.getLogger("somo.payments.settlement")

# Where money lands first, by who carried it.
_CLEARING: dict[Provider, str] = {
    Provider.MPESA: MPESA_CLEARING,
    Provider.AIRTEL: AIRTEL_CLEARING,
    Provider.MANUAL: CASH,
}


def clearing_account(provider: Provider) -> str:
    """The ledger account a provider's money arrives in."""
    return _CLEARING[provider]


def add_interval(at: datetime, interval: PriceInterval) -> datetime | None:
    """``at`` plus one billing interval; ``None`` for one-time prices."""
    if interval is PriceInterval.ONE_TIME:
        return None
    months = 1 if interval is PriceInterval.MONTH else 12
    month0 = at.month - 1 + months
    year, month = at.year + month0 // 12, month0 % 12 + 1
    # 31 January plus a month is the last day of February, not 3 March.
    return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))


def sale_postings(amount_minor: int, vat_rate_bp: int, debit_account: str) -> list[tuple[str, int]]:
    """Money in ``debit_account`` recognised as a sale: net revenue plus VAT payable."""
    vat = split_vat(Money(amount_minor), vat_rate_bp)
    postings = [(debit_account, amount_minor), (REVENUE, -vat.net.amount_minor)]
    if vat.vat.amount_minor:
        postings.append((VAT_PAYABLE, -vat.vat.amount_minor))
    return postings


def receipt_number(payment_id: uuid.UUID) -> str:
    """``RCT-`` and 12 Crockford characters derived from the payment: unique without a counter.

    A per-school running number made every settlement of a school queue on one counter (or
    retry on its unique index) for the whole transaction; 60 bits from the payment's id need
    no coordination, and are still short enough to read out over the phone.
    """
    return "RCT-" + crockford_code(payment_id.bytes, 12)


async def issue_receipt(session: AsyncSession, *, invoice: Invoice, payment: Payment, clock: Clock) -> Receipt:
    """The receipt of ``payment`` against ``invoice`` (one per payment: the number is derived from it)."""
    now = clock.now()
    receipt = Receipt(
        id=new_id(),
        institution_id=invoice.institution_id,
        invoice_id=invoice.id,
        payment_id=payment.id,
        number=receipt_number(payment.id),
        currency=payment.currency,
        amount_minor=payment.amount_minor,
        issued_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(receipt)
    return receipt


async def _start_subscription(
    session: AsyncSession, order: Order, product: Product, price: Price, paid_at: datetime, period_end: datetime
) -> Subscription:
    subscription = Subscription(
        id=new_id(),
        institution_id=order.institution_id,
        learner_id=order.learner_id,
        product_id=product.id,
        price_id=price.id,
        status=SubscriptionStatus.ACTIVE,
        current_period_start=paid_at,
        current_period_end=period_end,
    )
    session.add(subscription)
    session.add(
        SubscriptionItem(
            id=new_id(), institution_id=order.institution_id, subscription_id=subscription.id, price_id=price.id
        )
    )
    return subscription


async def grant_order_entitlements(session: AsyncSession, order: Order, paid_at: datetime) -> None:
    """One entitlement per line; a recurring price also starts a ``Subscription`` whose
    renewals (``renewals.approve_renewal``) extend that entitlement."""
    rows = await session.execute(
        sa.select(Product, Price)
        .join(LineItem, LineItem.product_id == Product.id)
        .join(Price, Price.id == LineItem.price_id)
        .where(LineItem.order_id == order.id)
        .order_by(LineItem.id)
    )
    for product, price in rows:
        is_course = product.kind is ProductKind.COURSE
        valid_until = None if is_course else add_interval(paid_at, price.interval)
        source, source_id = EntitlementSource.PURCHASE, order.id
        if valid_until is not None:
            subscription = await _start_subscription(session, order, product, price, paid_at, valid_until)
            source, source_id = EntitlementSource.SUBSCRIPTION, subscription.id
        session.add(
            Entitlement(
                id=new_id(),
                institution_id=order.institution_id,
                learner_id=order.learner_id,
                product_id=product.id,
                course_id=product.course_id if is_course else None,
                source=source,
                source_id=source_id,
                valid_from=paid_at,
                valid_until=valid_until,
            )
        )


async def fulfil_order(
    session: AsyncSession, order: Order, *, payment: Payment | None, paid_at: datetime, clock: Clock
) -> None:
    """Mark a pending order and its invoice paid, issue the receipt (when money was paid) and
    the entitlements; the caller books the money (``booking.book_payment``). ``Conflict`` if the
    order is no longer pending."""
    if order.status is not OrderStatus.PENDING:
        raise Conflict(f"the order is {order.status.value}", code="order_not_pending")
    invoice = await session.scalar(sa.select(Invoice).where(Invoice.order_id == order.id))
    now = clock.now()
    order.status, order.paid_at, order.updated_at = OrderStatus.PAID, paid_at, now
    if invoice is not None:
        invoice.status, invoice.updated_at = InvoiceStatus.PAID, now
    if payment is not None and invoice is not None:
        await issue_receipt(session, invoice=invoice, payment=payment, clock=clock)
    # Synced rows last: see ``booking``.
    await grant_order_entitlements(session, order, paid_at)


async def order_sale_postings(session: AsyncSession, order: Order, payment: Payment) -> list[tuple[str, int]]:
    """The sale postings of paying ``order`` with ``payment`` (none if it has no invoice), at the
    invoice's VAT rate; reading only, so the ledger can be posted before the order is fulfilled."""
    vat_rate = await session.scalar(sa.select(Invoice.vat_rate_bp).where(Invoice.order_id == order.id))
    if vat_rate is None:
        return []
    return sale_postings(payment.amount_minor, vat_rate, clearing_account(payment.provider))


def suspense_postings(payment: Payment) -> list[tuple[str, int]]:
    """Money held for a learner or a refund, recognised as nothing yet."""
    debit = clearing_account(payment.provider)
    return [(debit, payment.amount_minor), (SUSPENSE, -payment.amount_minor)]
