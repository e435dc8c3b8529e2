"""Products, prices, coupons, checkout, invoices, receipts, refunds and subscriptions."""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from lms_domain.commerce import catalog, checkout, refunds
from lms_domain.commerce.ports import InvoiceRenderer
from lms_domain.commerce.schemas import (
    CartQuote,
    CartRequest,
    CouponCreate,
    CouponListQuery,
    CouponOut,
    CouponPage,
    CouponUpdate,
    InvoiceListQuery,
    InvoiceOut,
    InvoicePage,
    OrderListQuery,
    OrderOut,
    OrderPage,
    PaymentStart,
    PriceCreate,
    PriceListQuery,
    PriceOut,
    PricePage,
    PriceUpdate,
    ProductCreate,
    ProductListQuery,
    ProductOut,
    ProductPage,
    ProductUpdate,
    ReceiptOut,
    ReceiptPage,
    RefundCreate,
    RefundDecision,
    RefundListQuery,
    RefundOut,
    RefundPage,
)
from lms_domain.courses.schemas import ListQuery
from lms_domain.ids import new_id
from lms_domain.payments import flows
from lms_domain.payments.models import Provider
from lms_domain.payments.schemas import PaymentIntentOut
from lms_domain.subscriptions import queries as subscription_queries
from lms_domain.subscriptions.schemas import (
    SubscriptionDetail,
    SubscriptionListQuery,
    SubscriptionOut,
    SubscriptionPage,
)
from lms_domain.tenancy.models import Role
from server.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from server.api.registry import Api, Call
from server.keys import gateways_key, sessionmaker_key
from server.pdf.invoice import FpdfInvoiceRenderer

api = Api("commerce", description="Products, prices, coupons, checkout, invoices, receipts, refunds and subscriptions.")

ADMINS = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN})
PDF_TYPE = "application/pdf"
# Stateless, so one module-level instance serves every request without an app key.
invoice_renderer: InvoiceRenderer = FpdfInvoiceRenderer()


def _pdf(data: bytes, filename: str) -> web.Response:
    return web.Response(
        body=data, content_type=PDF_TYPE, headers={"Content-Disposition": f'inline; filename="{filename}.pdf"'}
    )


# Products and prices ----------------------------------------------------------------------


@api.get("/products", summary="List products on sale", query=ProductListQuery, response=ProductPage)
async def list_products(call: Call[Any, ProductListQuery]) -> ProductPage:
    """Your institution's products and the shared catalogue. Admins also see withdrawn ones."""
    async with call.read() as session:
        rows, cursor = await catalog.list_products(session=session, actor=call.actor, query=call.query)
        return ProductPage(items=[ProductOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post("/products", summary="Create a product", body=ProductCreate, response=ProductOut, status=201, auth=ADMINS)
async def create_product(call: Call[ProductCreate, Any]) -> ProductOut:
    """Institution admins sell their institution's courses; platform admins the catalogue."""
    async with call.uow() as session:
        product = await catalog.create_product(session=session, actor=call.actor, data=call.body)
        return ProductOut.model_validate(product)


@api.get("/products/{product_id}", summary="Get a product", response=ProductOut)
async def get_product(call: Call[Any, Any]) -> ProductOut:
    async with call.read() as session:
        product = await catalog.get_product(session=session, actor=call.actor, product_id=call.path_uuid("product_id"))
        return ProductOut.model_validate(product)


@api.patch("/products/{product_id}", summary="Change a product", body=ProductUpdate, response=ProductOut, auth=ADMINS)
async def update_product(call: Call[ProductUpdate, Any]) -> ProductOut:
    async with call.uow() as session:
        product = await catalog.update_product(
            session=session, actor=call.actor, product_id=call.path_uuid("product_id"), data=call.body
        )
        return ProductOut.model_validate(product)


@api.get("/products/{product_id}/prices", summary="List a product's prices", query=PriceListQuery, response=PricePage)
async def list_prices(call: Call[Any, PriceListQuery]) -> PricePage:
    async with call.read() as session:
        rows, cursor = await catalog.list_prices(
            session=session, actor=call.actor, product_id=call.path_uuid("product_id"), query=call.query
        )
        return PricePage(items=[PriceOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post(
    "/products/{product_id}/prices",
    summary="Add a price",
    body=PriceCreate,
    response=PriceOut,
    status=201,
    auth=ADMINS,
)
async def create_price(call: Call[PriceCreate, Any]) -> PriceOut:
    """KES, whole shillings including VAT. Courses are priced one_time, subscriptions
    per month or year."""
    async with call.uow() as session:
        price = await catalog.create_price(
            session=session, actor=call.actor, product_id=call.path_uuid("product_id"), data=call.body
        )
        return PriceOut.model_validate(price)


@api.patch(
    "/prices/{price_id}", summary="Withdraw or restore a price", body=PriceUpdate, response=PriceOut, auth=ADMINS
)
async def update_price(call: Call[PriceUpdate, Any]) -> PriceOut:
    """Only `is_active` changes: orders refer to prices, so a new amount is a new price."""
    async with call.uow() as session:
        price = await catalog.set_price_active(
            session=session, actor=call.actor, price_id=call.path_uuid("price_id"), is_active=call.body.is_active
        )
        return PriceOut.model_validate(price)


# Coupons ----------------------------------------------------------------------------------


@api.get("/coupons", summary="List coupons", query=CouponListQuery, response=CouponPage, auth=ADMINS)
async def list_coupons(call: Call[Any, CouponListQuery]) -> CouponPage:
    async with call.read() as session:
        rows, cursor = await catalog.list_coupons(session=session, actor=call.actor, query=call.query)
        return CouponPage(items=[CouponOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post("/coupons", summary="Create a coupon", body=CouponCreate, response=CouponOut, status=201, auth=ADMINS)
async def create_coupon(call: Call[CouponCreate, Any]) -> CouponOut:
    async with call.uow() as session:
        coupon = await catalog.create_coupon(session=session, actor=call.actor, data=call.body, clock=call.clock)
        return CouponOut.model_validate(coupon)


@api.patch("/coupons/{coupon_id}", summary="Change a coupon", body=CouponUpdate, response=CouponOut, auth=ADMINS)
async def update_coupon(call: Call[CouponUpdate, Any]) -> CouponOut:
    async with call.uow() as session:
        coupon = await catalog.update_coupon(
            session=session, actor=call.actor, coupon_id=call.path_uuid("coupon_id"), data=call.body, clock=call.clock
        )
        return CouponOut.model_validate(coupon)


# Checkout ---------------------------------------------------------------------------------


@api.post("/cart", summary="Price a cart", body=CartRequest, response=CartQuote)
async def quote_cart(call: Call[CartRequest, Any]) -> CartQuote:
    """What an order of these items would cost now, VAT split out. Nothing is stored."""
    async with call.read() as session:
        return await checkout.quote_cart(session=session, actor=call.actor, data=call.body, clock=call.clock)


@api.post("/orders", summary="Place an order", body=CartRequest, response=OrderOut, status=201, idempotent=True)
async def create_order(call: Call[CartRequest, Any]) -> OrderOut:
    """A pending order with its open invoice. Learners order for themselves; staff for a
    learner of their institution (`learner_id`). Send an Idempotency-Key to retry safely."""
    async with call.uow() as session:
        order = await checkout.place_order(session=session, actor=call.actor, data=call.body, clock=call.clock)
        [described] = await checkout.describe_orders(session=session, orders=[order])
        return described


@api.get("/orders", summary="List orders", query=OrderListQuery, response=OrderPage)
async def list_orders(call: Call[Any, OrderListQuery]) -> OrderPage:
    """Learners see their own orders; staff their institution's."""
    async with call.read() as session:
        rows, cursor = await checkout.list_orders(session=session, actor=call.actor, query=call.query)
        return OrderPage(items=await checkout.describe_orders(session=session, orders=rows), next_cursor=cursor)


@api.get("/orders/{order_id}", summary="Get an order", response=OrderOut)
async def get_order(call: Call[Any, Any]) -> OrderOut:
    async with call.read() as session:
        order = await checkout.get_order(session=session, actor=call.actor, order_id=call.path_uuid("order_id"))
        [described] = await checkout.describe_orders(session=session, orders=[order])
        return described


@api.post("/orders/{order_id}/cancel", summary="Cancel a pending order", response=OrderOut)
async def cancel_order(call: Call[Any, Any]) -> OrderOut:
    """Voids the invoice and gives the coupon redemption back."""
    async with call.uow() as session:
        order = await checkout.cancel_order(
            session=session, actor=call.actor, order_id=call.path_uuid("order_id"), clock=call.clock
        )
        [described] = await checkout.describe_orders(session=session, orders=[order])
        return described


@api.post(
    "/orders/{order_id}/payments",
    summary="Pay an order",
    body=PaymentStart,
    response=PaymentIntentOut,
    status=202,
    idempotent=True,
    extra_responses={
        502: "The provider refused the prompt (code `payment_gateway_error` or a more specific one).",
        503: "The provider could not be reached; try again (code `payment_gateway_unavailable`).",
    },
)
async def start_payment(call: Call[PaymentStart, Any]) -> PaymentIntentOut:
    """Prompt `phone` (default: the learner's phone) for the order's total: an M-Pesa STK Push,
    or an Airtel Money collection with `provider: "airtel"`. Answers the payment `pending`; the
    order turns `paid` when the payer confirms on their phone. Send an Idempotency-Key to retry
    without prompting twice."""
    order_id = call.path_uuid("order_id")
    header_key = call.request.headers.get(IDEMPOTENCY_HEADER)
    # Scoped to the caller, hashed to fit the column: the same header from two users never collides.
    intent_key = (
        "http:" + hashlib.sha256(f"{call.actor.user_id}:{order_id}:{header_key}".encode()).hexdigest()
        if header_key
        else f"once:{new_id()}"
    )
    intent = await flows.start_order_payment(
        sessions=call.app[sessionmaker_key],
        actor=call.actor,
        order_id=order_id,
        msisdn=call.body.phone,
        idempotency_key=intent_key,
        provider=Provider.AIRTEL if call.body.provider == "airtel" else Provider.MPESA,
        gateways=call.app[gateways_key],
        clock=call.clock,
    )
    return PaymentIntentOut.of(intent)


# Invoices and receipts --------------------------------------------------------------------


@api.get("/invoices", summary="List invoices", query=InvoiceListQuery, response=InvoicePage)
async def list_invoices(call: Call[Any, InvoiceListQuery]) -> InvoicePage:
    async with call.read() as session:
        rows, cursor = await checkout.list_invoices(session=session, actor=call.actor, query=call.query)
        return InvoicePage(items=[InvoiceOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.get("/invoices/{invoice_id}", summary="Get an invoice", response=InvoiceOut)
async def get_invoice(call: Call[Any, Any]) -> InvoiceOut:
    async with call.read() as session:
        invoice = await checkout.get_invoice(session=session, actor=call.actor, invoice_id=call.path_uuid("invoice_id"))
        return InvoiceOut.model_validate(invoice)


@api.get("/invoices/{invoice_id}/pdf", summary="Download an invoice as PDF", content_type=PDF_TYPE)
async def get_invoice_pdf(call: Call[Any, Any]) -> web.Response:
    """In the learner's language at the time of the order."""
    async with call.read() as session:
        view = await checkout.invoice_view(session=session, actor=call.actor, invoice_id=call.path_uuid("invoice_id"))
    return _pdf(invoice_renderer.render_invoice(view), view.number)


@api.get("/receipts", summary="List receipts", query=ListQuery, response=ReceiptPage)
async def list_receipts(call: Call[Any, ListQuery]) -> ReceiptPage:
    async with call.read() as session:
        rows, cursor = await checkout.list_receipts(session=session, actor=call.actor, query=call.query)
        return ReceiptPage(items=[ReceiptOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.get("/receipts/{receipt_id}", summary="Get a receipt", response=ReceiptOut)
async def get_receipt(call: Call[Any, Any]) -> ReceiptOut:
    async with call.read() as session:
        receipt = await checkout.get_receipt(session=session, actor=call.actor, receipt_id=call.path_uuid("receipt_id"))
        return ReceiptOut.model_validate(receipt)


@api.get("/receipts/{receipt_id}/pdf", summary="Download a receipt as PDF", content_type=PDF_TYPE)
async def get_receipt_pdf(call: Call[Any, Any]) -> web.Response:
    async with call.read() as session:
        view = await checkout.receipt_view(session=session, actor=call.actor, receipt_id=call.path_uuid("receipt_id"))
    return _pdf(invoice_renderer.render_receipt(view), view.number)


# Refunds ----------------------------------------------------------------------------------


@api.post("/refunds", summary="Request a refund", body=RefundCreate, response=RefundOut, status=201, idempotent=True)
async def request_refund(call: Call[RefundCreate, Any]) -> RefundOut:
    """The learner who paid, or staff, ask for money back; an admin then decides."""
    async with call.uow() as session:
        refund = await refunds.request_refund(session=session, actor=call.actor, data=call.body, clock=call.clock)
        return RefundOut.model_validate(refund)


@api.get("/refunds", summary="List refunds", query=RefundListQuery, response=RefundPage)
async def list_refunds(call: Call[Any, RefundListQuery]) -> RefundPage:
    async with call.read() as session:
        rows, cursor = await refunds.list_refunds(session=session, actor=call.actor, query=call.query)
        return RefundPage(items=[RefundOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.get("/refunds/{refund_id}", summary="Get a refund", response=RefundOut)
async def get_refund(call: Call[Any, Any]) -> RefundOut:
    async with call.read() as session:
        refund = await refunds.get_refund(session=session, actor=call.actor, refund_id=call.path_uuid("refund_id"))
        return RefundOut.model_validate(refund)


@api.post("/refunds/{refund_id}/approve", summary="Approve a refund", response=RefundOut, auth=ADMINS)
async def approve_refund(call: Call[Any, Any]) -> RefundOut:
    """Records the decision only; `POST /refunds/{refund_id}/send` then reverses the payment."""
    async with call.uow() as session:
        refund = await refunds.approve_refund(
            session=session, actor=call.actor, refund_id=call.path_uuid("refund_id"), clock=call.clock
        )
        return RefundOut.model_validate(refund)


@api.post(
    "/refunds/{refund_id}/reject", summary="Reject a refund", body=RefundDecision, response=RefundOut, auth=ADMINS
)
async def reject_refund(call: Call[RefundDecision, Any]) -> RefundOut:
    """The amount becomes refundable again; the reason is shown to the learner."""
    async with call.uow() as session:
        refund = await refunds.reject_refund(
            session=session,
            actor=call.actor,
            refund_id=call.path_uuid("refund_id"),
            reason=call.body.reason,
            clock=call.clock,
        )
        return RefundOut.model_validate(refund)


# Subscriptions ----------------------------------------------------------------------------


@api.get("/subscriptions", summary="List subscriptions", query=SubscriptionListQuery, response=SubscriptionPage)
async def list_subscriptions(call: Call[Any, SubscriptionListQuery]) -> SubscriptionPage:
    """Learners see their own; staff their institution's."""
    async with call.read() as session:
        rows, cursor = await subscription_queries.list_subscriptions(
            session=session, actor=call.actor, query=call.query
        )
        return SubscriptionPage(items=[SubscriptionOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.get("/subscriptions/{subscription_id}", summary="Get a subscription", response=SubscriptionDetail)
async def get_subscription(call: Call[Any, Any]) -> SubscriptionDetail:
    """With its items and every renewal attempt, oldest first."""
    async with call.read() as session:
        return await subscription_queries.get_subscription(
            session=session, actor=call.actor, subscription_id=call.path_uuid("subscription_id")
        )
