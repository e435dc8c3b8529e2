"""Pricing a cart, placing orders with their invoice, and reading invoices and receipts.

The arithmetic is one pure function, ``price_cart``, so the rules that keep every amount
chargeable (whole shillings, VAT derived from the inclusive total, the M-Pesa ceiling)
can be checked exhaustively without a database. Everything around it only looks rows up.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_learners_row, ensure_visible, learner_scope, tenant_filter
from lms_domain.clock import Clock, to_nairobi
from lms_domain.commerce.models import (
    Coupon,
    Invoice,
    InvoiceStatus,
    LineItem,
    Order,
    OrderStatus,
    Price,
    Product,
    Receipt,
)
from lms_domain.commerce.ports import DocumentLine, InvoiceView, ReceiptView
from lms_domain.commerce.schemas import (
    CartLine,
    CartQuote,
    CartRequest,
    InvoiceListQuery,
    InvoiceOut,
    LineItemOut,
    OrderListQuery,
    OrderOut,
)
from lms_domain.courses.schemas import ListQuery
from lms_domain.errors import Conflict, InvalidInput, NotFound, NotImplementedYet, PermissionDenied
from lms_domain.i18n import pick
from lms_domain.ids import new_id
from lms_domain.money import MINOR_PER_MAJOR, MPESA_MAX_KES, Money, round_to_whole_kes, split_vat
from lms_domain.pagination import paginate
from lms_domain.payments.models import Payment
from lms_domain.payments.settlement import fulfil_order
from lms_domain.tenancy.models import Institution, Learner

INVOICE_NUMBER_ATTEMPTS = 10
_KES = MINOR_PER_MAJOR["KES"]


# The pure core ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PricingLine:
    unit_amount_minor: int
    quantity: int
    product_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Discount:
    """A coupon's terms: exactly one of percent_off and amount_off_minor."""

    percent_off: int | None = None
    amount_off_minor: int | None = None
    product_id: uuid.UUID | None = None  # only lines of this product are discounted


@dataclass(frozen=True)
class PricedCart:
    line_totals_minor: tuple[int, ...]
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    vat_minor: int
    net_minor: int
    vat_rate_bp: int
    currency: str


def price_cart(
    lines: Sequence[PricingLine], *, discount: Discount | None, vat_rate_bp: int, currency: str = "KES"
) -> PricedCart:
    """Price KES lines whose amounts include VAT.

    The coupon comes off the subtotal (of its product's lines, if it names one), then the
    total is rounded to whole shillings, and the recorded discount is whatever makes
    ``subtotal - discount == total``: so it is whole shillings too and never exceeds the
    subtotal. A total above what M-Pesa collects in one payment is refused.
    """
    if currency != "KES":
        raise InvalidInput(f"{currency} checkouts are not supported yet", code="unsupported_currency")
    if not lines:
        raise InvalidInput("the cart is empty", code="empty_cart")
    for line in lines:
        if line.quantity < 1:
            raise InvalidInput("quantities start at 1", code="invalid_quantity")
        if line.unit_amount_minor < 0 or line.unit_amount_minor % _KES:
            raise InvalidInput("KES prices are whole shillings", code="fractional_amount")
    totals = tuple(line.unit_amount_minor * line.quantity for line in lines)
    subtotal = sum(totals)
    raw_discount = 0
    if discount is not None:
        if discount.product_id is None:
            eligible = subtotal
        else:
            if not any(line.product_id == discount.product_id for line in lines):
                raise InvalidInput("this coupon is for a product that is not in the cart", code="invalid_coupon")
            eligible = sum(t for t, line in zip(totals, lines, strict=True) if line.product_id == discount.product_id)
        if discount.percent_off is not None:
            raw_discount = eligible * max(0, min(discount.percent_off, 100)) // 100
        elif discount.amount_off_minor is not None:
            raw_discount = min(max(discount.amount_off_minor, 0), eligible)
    total = round_to_whole_kes(subtotal - raw_discount)
    if total > MPESA_MAX_KES * _KES:
        raise InvalidInput(
            f"the total {Money(total)} is above the M-Pesa limit of {Money.kes(MPESA_MAX_KES)}; split the order",
            code="amount_above_mpesa_limit",
            total_minor=total,
            limit_minor=MPESA_MAX_KES * _KES,
        )
    vat = split_vat(Money(total, currency), vat_rate_bp)
    return PricedCart(
        line_totals_minor=totals,
        subtotal_minor=subtotal,
        discount_minor=subtotal - total,
        total_minor=total,
        vat_minor=vat.vat.amount_minor,
        net_minor=vat.net.amount_minor,
        vat_rate_bp=vat_rate_bp,
        currency=currency,
    )


# Looking the cart up ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Buyer:
    institution: Institution
    learner: Learner | None


@dataclass(frozen=True)
class _Quote:
    buyer: _Buyer
    lines: tuple[tuple[Price, Product, str, int], ...]  # price, product, description, quantity
    priced: PricedCart
    coupon: Coupon | None


async def _buyer(session: AsyncSession, actor: Actor, learner_id: uuid.UUID | None, *, need_learner: bool) -> _Buyer:
    """Whose cart: a learner's own; staff name a learner of their institution."""
    learner: Learner | None = None
    if not actor.is_staff:
        own = actor.own_learner_id()
        if learner_id not in (None, own):
            raise PermissionDenied("learners order for themselves")
        learner = await session.get(Learner, own)
        if learner is None or learner.deleted_at is not None:
            raise NotFound("learner not found")
    elif learner_id is not None:
        learner = await session.get(Learner, learner_id)
        ensure_visible(learner, actor, what="learner")
    elif need_learner or actor.institution_id is None:
        raise InvalidInput("name the learner this is for: learner_id", code="learner_required")
    institution_id = learner.institution_id if learner is not None else actor.institution_id
    institution = await session.get(Institution, institution_id)
    if institution is None:
        raise NotFound("institution not found")
    return _Buyer(institution=institution, learner=learner)


async def _find_coupon(session: AsyncSession, institution_id: uuid.UUID, code: str, clock: Clock) -> Coupon:
    normalised = code.strip().upper()
    coupon = await session.scalar(
        sa.select(Coupon).where(Coupon.institution_id == institution_id, Coupon.code == normalised)
    )
    now = clock.now()
    refusal = None
    if coupon is None or not coupon.is_active:
        refusal = "this coupon code is not valid"
    elif coupon.valid_from is not None and now < coupon.valid_from:
        refusal = "this coupon is not valid yet"
    elif coupon.valid_until is not None and now >= coupon.valid_until:
        refusal = "this coupon has expired"
    elif coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        refusal = "this coupon has been used up"
    elif coupon.currency != "KES":
        refusal = "this coupon is for another currency"
    if refusal is not None:
        raise InvalidInput(refusal, code="invalid_coupon")
    assert coupon is not None
    return coupon


async def _quote(session: AsyncSession, actor: Actor, data: CartRequest, clock: Clock, *, need_learner: bool) -> _Quote:
    buyer = await _buyer(session, actor, data.learner_id, need_learner=need_learner)
    language = buyer.learner.language if buyer.learner is not None else buyer.institution.default_language
    ids = {item.price_id for item in data.items}
    rows = (
        await session.execute(
            sa.select(Price, Product).join(Product, Product.id == Price.product_id).where(Price.id.in_(ids))
        )
    ).all()
    found = {price.id: (price, product) for price, product in rows}
    lines: list[tuple[Price, Product, str, int]] = []
    for item in data.items:
        price, product = found.get(item.price_id, (None, None))
        # Visible to the buyer's school, not the caller's: a platform admin ordering for a
        # learner must not sell them another school's course.
        if (
            price is None
            or product is None
            or price.deleted_at is not None
            or product.deleted_at is not None
            or price.institution_id not in (buyer.institution.id, None)
            or product.institution_id not in (buyer.institution.id, None)
        ):
            raise NotFound(f"price {item.price_id} not found")
        if not (price.is_active and product.is_active):
            raise InvalidInput(f"price {item.price_id} is no longer on sale", code="price_inactive")
        if price.currency != "KES":
            raise InvalidInput(f"{price.currency} checkouts are not supported yet", code="unsupported_currency")
        lines.append((price, product, pick(language, product.name_en, product.name_sw), item.quantity))
    coupon = None
    discount = None
    if data.coupon_code is not None and data.coupon_code.strip():
        coupon = await _find_coupon(session, buyer.institution.id, data.coupon_code, clock)
        discount = Discount(
            percent_off=coupon.percent_off, amount_off_minor=coupon.amount_off_minor, product_id=coupon.product_id
        )
    priced = price_cart(
        [PricingLine(price.amount_minor, quantity, product.id) for price, product, _, quantity in lines],
        discount=discount,
        vat_rate_bp=buyer.institution.vat_rate_bp,
    )
    return _Quote(buyer=buyer, lines=tuple(lines), priced=priced, coupon=coupon)


async def quote_cart(*, session: AsyncSession, actor: Actor, data: CartRequest, clock: Clock) -> CartQuote:
    """What the cart would cost if ordered now; nothing is stored or reserved."""
    quote = await _quote(session, actor, data, clock, need_learner=False)
    return CartQuote(
        lines=[
            CartLine(
                price_id=price.id,
                product_id=product.id,
                product_name=description,
                interval=price.interval,
                quantity=quantity,
                unit_amount_minor=price.amount_minor,
                total_minor=line_total,
            )
            for (price, product, description, quantity), line_total in zip(
                quote.lines, quote.priced.line_totals_minor, strict=True
            )
        ],
        subtotal_minor=quote.priced.subtotal_minor,
        discount_minor=quote.priced.discount_minor,
        total_minor=quote.priced.total_minor,
        vat_minor=quote.priced.vat_minor,
        net_minor=quote.priced.net_minor,
        vat_rate_bp=quote.priced.vat_rate_bp,
        currency=quote.priced.currency,
        coupon_code=quote.coupon.code if quote.coupon is not None else None,
    )


# Orders ---------------------------------------------------------------------------------


async def _redeem(session: AsyncSession, coupon: Coupon, clock: Clock) -> None:
    # One conditional UPDATE: two checkouts racing for a coupon's last redemption cannot
    # both get it, whatever each read a moment earlier.
    result = await session.execute(
        sa.update(Coupon)
        .where(
            Coupon.id == coupon.id,
            Coupon.is_active.is_(True),
            sa.or_(Coupon.max_redemptions.is_(None), Coupon.times_redeemed < Coupon.max_redemptions),
        )
        .values(times_redeemed=Coupon.times_redeemed + 1, updated_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise InvalidInput("this coupon has been used up", code="invalid_coupon")


async def _issue_invoice(session: AsyncSession, order: Order, priced: PricedCart, buyer: _Buyer, clock: Clock) -> None:
    """Number invoices INV-000001, INV-000002... per institution, without gaps at rest.

    The number is the count plus one, taken inside the transaction; the unique constraint
    on (institution, number) settles two checkouts that counted at the same moment: the
    loser retries in a savepoint and counts again, now seeing the winner's invoice.
    """
    assert buyer.learner is not None
    now = clock.now()
    for _ in range(INVOICE_NUMBER_ATTEMPTS):
        issued = await session.scalar(
            sa.select(sa.func.count()).select_from(Invoice).where(Invoice.institution_id == order.institution_id)
        )
        invoice = Invoice(
            id=new_id(),
            institution_id=order.institution_id,
            order_id=order.id,
            number=f"INV-{(issued or 0) + 1:06d}",
            currency=priced.currency,
            total_minor=priced.total_minor,
            vat_rate_bp=priced.vat_rate_bp,
            vat_minor=priced.vat_minor,
            net_minor=priced.net_minor,
            status=InvoiceStatus.OPEN,
            language=buyer.learner.language,
            issued_at=now,
            created_at=now,
            updated_at=now,
        )
        try:
            async with session.begin_nested():
                session.add(invoice)
        except IntegrityError:
            continue
        return
    raise Conflict("invoice numbering is busy; try again", code="invoice_number_busy", retry_after_s=1)


async def place_order(*, session: AsyncSession, actor: Actor, data: CartRequest, clock: Clock) -> Order:
    """A pending order, its line items and its open invoice; the coupon is redeemed now,
    so a capped code cannot be promised to more carts than it has redemptions. A free order
    is paid at once."""
    quote = await _quote(session, actor, data, clock, need_learner=True)
    learner = quote.buyer.learner
    assert learner is not None
    if quote.coupon is not None:
        await _redeem(session, quote.coupon, clock)
    now = clock.now()
    order = Order(
        id=new_id(),
        institution_id=quote.buyer.institution.id,
        learner_id=learner.id,
        status=OrderStatus.PENDING,
        currency=quote.priced.currency,
        subtotal_minor=quote.priced.subtotal_minor,
        discount_minor=quote.priced.discount_minor,
        total_minor=quote.priced.total_minor,
        coupon_id=quote.coupon.id if quote.coupon is not None else None,
        placed_by_user_id=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    await session.flush()
    session.add_all(
        LineItem(
            id=new_id(),
            institution_id=order.institution_id,
            order_id=order.id,
            product_id=product.id,
            price_id=price.id,
            description=description[:200],
            quantity=quantity,
            unit_amount_minor=price.amount_minor,
            total_minor=line_total,
            created_at=now,
            updated_at=now,
        )
        for (price, product, description, quantity), line_total in zip(
            quote.lines, quote.priced.line_totals_minor, strict=True
        )
    )
    await session.flush()
    await _issue_invoice(session, order, quote.priced, quote.buyer, clock)
    if order.total_minor == 0:
        # Nothing to collect (a free course, a 100% coupon): fulfilled at once, with no payment,
        # receipt or ledger entry, since no money moved.
        await fulfil_order(session, order, payment=None, paid_at=now, clock=clock)
    return order


def _own_orders(actor: Actor) -> sa.Select[Any]:
    return sa.select(Order.id).where(Order.learner_id == actor.own_learner_id())


async def list_orders(
    *, session: AsyncSession, actor: Actor, query: OrderListQuery
) -> tuple[Sequence[Order], str | None]:
    """Learners see their own orders; staff their institution's."""
    stmt = learner_scope(
        sa.select(Order), learner_column=Order.learner_id, institution_column=Order.institution_id, actor=actor
    )
    if query.learner_id is not None:
        stmt = stmt.where(Order.learner_id == query.learner_id)
    if query.status is not None:
        stmt = stmt.where(Order.status == query.status)
    return await paginate(session, stmt, Order.id, cursor=query.cursor, limit=query.limit)


async def get_order(*, session: AsyncSession, actor: Actor, order_id: uuid.UUID, for_update: bool = False) -> Order:
    stmt = sa.select(Order).where(Order.id == order_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    order = await session.scalar(stmt)
    ensure_learners_row(order, actor, what="order")
    assert order is not None
    return order


async def describe_orders(*, session: AsyncSession, orders: Sequence[Order]) -> list[OrderOut]:
    """Orders with their line items and invoice, in two queries whatever the page size."""
    ids = [order.id for order in orders]
    items: dict[uuid.UUID, list[LineItem]] = defaultdict(list)
    invoices: dict[uuid.UUID, Invoice] = {}
    if ids:
        for item in await session.scalars(sa.select(LineItem).where(LineItem.order_id.in_(ids)).order_by(LineItem.id)):
            items[item.order_id].append(item)
        for invoice in await session.scalars(sa.select(Invoice).where(Invoice.order_id.in_(ids))):
            invoices[invoice.order_id] = invoice
    return [
        OrderOut(
            id=order.id,
            institution_id=order.institution_id,
            learner_id=order.learner_id,
            status=order.status,
            currency=order.currency,
            subtotal_minor=order.subtotal_minor,
            discount_minor=order.discount_minor,
            total_minor=order.total_minor,
            coupon_id=order.coupon_id,
            placed_by_user_id=order.placed_by_user_id,
            paid_at=order.paid_at,
            created_at=order.created_at,
            updated_at=order.updated_at,
            line_items=[LineItemOut.model_validate(item) for item in items[order.id]],
            invoice=InvoiceOut.model_validate(invoices[order.id]) if order.id in invoices else None,
        )
        for order in orders
    ]


async def cancel_order(*, session: AsyncSession, actor: Actor, order_id: uuid.UUID, clock: Clock) -> Order:
    """Only an unpaid order is cancelled; its invoice is voided and the coupon redemption
    given back, so a capped code is not used up by carts that never paid."""
    order = await get_order(session=session, actor=actor, order_id=order_id, for_update=True)
    if order.status is not OrderStatus.PENDING:
        raise Conflict(
            f"the order is {order.status.value}; only pending orders are cancelled", code="order_not_pending"
        )
    now = clock.now()
    order.status = OrderStatus.CANCELLED
    order.updated_at = now
    await session.execute(
        sa.update(Invoice)
        .where(Invoice.order_id == order.id, Invoice.status == InvoiceStatus.OPEN)
        .values(status=InvoiceStatus.VOID, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if order.coupon_id is not None:
        await session.execute(
            sa.update(Coupon)
            .where(Coupon.id == order.coupon_id, Coupon.times_redeemed > 0)
            .values(times_redeemed=Coupon.times_redeemed - 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    await session.flush()
    return order


async def start_payment(*, session: AsyncSession, actor: Actor, order_id: uuid.UUID) -> NoReturn:
    """Checks the order can be paid, then says Airtel collection has not landed (M-Pesa is
    ``lms_domain.payments.flows.start_stk_payment``)."""
    order = await get_order(session=session, actor=actor, order_id=order_id)
    if order.status is not OrderStatus.PENDING:
        raise Conflict(f"the order is {order.status.value}; only pending orders are paid", code="order_not_pending")
    raise NotImplementedYet(
        "Airtel Money is not available yet: the Airtel collection adapter is missing (payments issue #4); "
        "pay with M-Pesa",
        code="payments_not_available",
    )


# Invoices and receipts -------------------------------------------------------------------


async def list_invoices(
    *, session: AsyncSession, actor: Actor, query: InvoiceListQuery
) -> tuple[Sequence[Invoice], str | None]:
    stmt = tenant_filter(sa.select(Invoice), Invoice.institution_id, actor)
    if not actor.is_staff:
        stmt = stmt.where(Invoice.order_id.in_(_own_orders(actor)))
    if query.status is not None:
        stmt = stmt.where(Invoice.status == query.status)
    return await paginate(session, stmt, Invoice.id, cursor=query.cursor, limit=query.limit)


async def get_invoice(*, session: AsyncSession, actor: Actor, invoice_id: uuid.UUID) -> Invoice:
    invoice = await session.get(Invoice, invoice_id)
    ensure_visible(invoice, actor, what="invoice")
    assert invoice is not None
    if not actor.is_staff:
        await get_order(session=session, actor=actor, order_id=invoice.order_id)
    return invoice


async def _parties(session: AsyncSession, order: Order) -> tuple[Institution, Learner]:
    institution = await session.get(Institution, order.institution_id)
    learner = await session.get(Learner, order.learner_id)
    assert institution is not None and learner is not None  # foreign keys
    return institution, learner


async def invoice_view(*, session: AsyncSession, actor: Actor, invoice_id: uuid.UUID) -> InvoiceView:
    """What the invoice PDF prints, in the language the invoice was issued in."""
    invoice = await get_invoice(session=session, actor=actor, invoice_id=invoice_id)
    order = await session.get(Order, invoice.order_id)
    assert order is not None
    institution, learner = await _parties(session, order)
    items = await session.scalars(sa.select(LineItem).where(LineItem.order_id == order.id).order_by(LineItem.id))
    return InvoiceView(
        number=invoice.number,
        institution_name=institution.name,
        learner_name=learner.display_name,
        account_no=learner.account_no,
        lines=tuple(
            DocumentLine(
                description=item.description,
                quantity=item.quantity,
                unit_amount_minor=item.unit_amount_minor,
                total_minor=item.total_minor,
            )
            for item in items
        ),
        currency=invoice.currency,
        subtotal_minor=order.subtotal_minor,
        discount_minor=order.discount_minor,
        total_minor=invoice.total_minor,
        vat_minor=invoice.vat_minor,
        net_minor=invoice.net_minor,
        vat_rate_bp=invoice.vat_rate_bp,
        status=invoice.status.value,
        issued_at_local=to_nairobi(invoice.issued_at),
        language=invoice.language,
    )


async def list_receipts(
    *, session: AsyncSession, actor: Actor, query: ListQuery
) -> tuple[Sequence[Receipt], str | None]:
    stmt = tenant_filter(sa.select(Receipt), Receipt.institution_id, actor)
    if not actor.is_staff:
        own_invoices = sa.select(Invoice.id).where(Invoice.order_id.in_(_own_orders(actor)))
        stmt = stmt.where(Receipt.invoice_id.in_(own_invoices))
    return await paginate(session, stmt, Receipt.id, cursor=query.cursor, limit=query.limit)


async def get_receipt(*, session: AsyncSession, actor: Actor, receipt_id: uuid.UUID) -> Receipt:
    receipt = await session.get(Receipt, receipt_id)
    ensure_visible(receipt, actor, what="receipt")
    assert receipt is not None
    if not actor.is_staff:
        try:
            await get_invoice(session=session, actor=actor, invoice_id=receipt.invoice_id)
        except NotFound:
            raise NotFound("receipt not found") from None
    return receipt


async def receipt_view(*, session: AsyncSession, actor: Actor, receipt_id: uuid.UUID) -> ReceiptView:
    """What the receipt PDF prints; VAT is split from the amount actually received."""
    receipt = await get_receipt(session=session, actor=actor, receipt_id=receipt_id)
    invoice = await session.get(Invoice, receipt.invoice_id)
    payment = await session.get(Payment, receipt.payment_id)
    assert invoice is not None and payment is not None  # foreign keys
    order = await session.get(Order, invoice.order_id)
    assert order is not None
    institution, learner = await _parties(session, order)
    vat = split_vat(Money(receipt.amount_minor, receipt.currency), invoice.vat_rate_bp)
    return ReceiptView(
        number=receipt.number,
        invoice_number=invoice.number,
        institution_name=institution.name,
        learner_name=learner.display_name,
        account_no=learner.account_no,
        currency=receipt.currency,
        amount_minor=receipt.amount_minor,
        vat_minor=vat.vat.amount_minor,
        net_minor=vat.net.amount_minor,
        vat_rate_bp=invoice.vat_rate_bp,
        provider=payment.provider.value,
        provider_receipt=payment.provider_receipt,
        paid_at_local=to_nairobi(payment.paid_at),
        issued_at_local=to_nairobi(receipt.issued_at),
        language=invoice.language,
    )
