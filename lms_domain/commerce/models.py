"""Products, prices and coupons; orders, line items, invoices, receipts and refunds.

All amounts are integer minor units with a currency. KES prices are whole shillings
that include VAT (enforced by a check constraint), so every amount due is chargeable
through M-Pesa without rounding at payment time.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, CatalogMixin, IdMixin, SyncMixin, TenantMixin, TimestampMixin
from lms_domain.i18n import Language
from lms_domain.types import enum_column

WHOLE_KES = "(currency <> 'KES' OR {col} % 100 = 0)"


class ProductKind(StrEnum):
    COURSE = "course"  # one course, bought once
    SUBSCRIPTION = "subscription"  # all paid courses of the institution and the catalogue


class Product(Base, IdMixin, SyncMixin, CatalogMixin):
    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[ProductKind] = mapped_column(enum_column(ProductKind, "kind"))
    name_en: Mapped[str] = mapped_column(sa.String(200))
    name_sw: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    course_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("courses.id", ondelete="RESTRICT"), default=None, index=True
    )
    # Where dunning ends, a subscription may fall back to this free product instead of
    # losing access altogether.
    downgrade_to_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("products.id", ondelete="SET NULL"), default=None
    )
    is_active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        sa.CheckConstraint("kind <> 'course' OR course_id IS NOT NULL", name="course_product_has_course"),
        sa.Index("ix_products_institution_sku", "institution_id", "sku"),
    )


class PriceInterval(StrEnum):
    ONE_TIME = "one_time"
    MONTH = "month"
    YEAR = "year"


class Price(Base, IdMixin, SyncMixin, CatalogMixin):
    __tablename__ = "prices"

    product_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("products.id", ondelete="RESTRICT"), index=True)
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    interval: Mapped[PriceInterval] = mapped_column(enum_column(PriceInterval, "interval"))
    is_active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        sa.CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        sa.CheckConstraint(WHOLE_KES.format(col="amount_minor"), name="whole_kes"),
    )


class Coupon(Base, IdMixin, TimestampMixin, TenantMixin):
    """Exactly one of ``percent_off`` or ``amount_off_minor``. Central-only."""

    __tablename__ = "coupons"

    code: Mapped[str] = mapped_column(sa.String(32))
    percent_off: Mapped[int | None] = mapped_column(default=None)
    amount_off_minor: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    valid_from: Mapped[datetime | None] = mapped_column(default=None)
    valid_until: Mapped[datetime | None] = mapped_column(default=None)
    max_redemptions: Mapped[int | None] = mapped_column(default=None)
    times_redeemed: Mapped[int] = mapped_column(default=0)
    product_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("products.id", ondelete="RESTRICT"), default=None
    )
    is_active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        sa.UniqueConstraint("institution_id", "code"),
        sa.CheckConstraint("(percent_off IS NULL) <> (amount_off_minor IS NULL)", name="one_discount_kind"),
        sa.CheckConstraint("percent_off IS NULL OR (percent_off > 0 AND percent_off <= 100)", name="percent_in_range"),
        sa.CheckConstraint("amount_off_minor IS NULL OR amount_off_minor > 0", name="amount_off_positive"),
        sa.CheckConstraint("times_redeemed >= 0", name="times_redeemed_non_negative"),
        sa.CheckConstraint(
            "max_redemptions IS NULL OR times_redeemed <= max_redemptions", name="redemptions_within_max"
        ),
    )


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class Order(Base, IdMixin, TimestampMixin, TenantMixin):
    __tablename__ = "orders"

    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"), index=True)
    status: Mapped[OrderStatus] = mapped_column(enum_column(OrderStatus, "status"), default=OrderStatus.PENDING)
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    subtotal_minor: Mapped[int] = mapped_column(sa.BigInteger)
    discount_minor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(sa.BigInteger)
    coupon_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("coupons.id", ondelete="RESTRICT"), default=None)
    placed_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    paid_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        sa.CheckConstraint("subtotal_minor >= 0", name="subtotal_non_negative"),
        sa.CheckConstraint("discount_minor >= 0 AND discount_minor <= subtotal_minor", name="discount_in_range"),
        sa.CheckConstraint("total_minor >= 0", name="total_non_negative"),
        sa.CheckConstraint(WHOLE_KES.format(col="total_minor"), name="whole_kes"),
    )


class LineItem(Base, IdMixin, TimestampMixin, TenantMixin):
    __tablename__ = "line_items"

    order_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("products.id", ondelete="RESTRICT"))
    price_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("prices.id", ondelete="RESTRICT"))
    description: Mapped[str] = mapped_column(sa.String(200))
    quantity: Mapped[int] = mapped_column(default=1)
    unit_amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    total_minor: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.CheckConstraint("unit_amount_minor >= 0", name="unit_amount_non_negative"),
        sa.CheckConstraint("total_minor >= 0", name="total_non_negative"),
    )


class InvoiceStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


class Invoice(Base, IdMixin, TimestampMixin, TenantMixin):
    """VAT is derived from the VAT-inclusive total: vat = total x rate / (100 + rate)."""

    __tablename__ = "invoices"

    order_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("orders.id", ondelete="RESTRICT"), unique=True)
    number: Mapped[str] = mapped_column(sa.String(32))
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    total_minor: Mapped[int] = mapped_column(sa.BigInteger)
    vat_rate_bp: Mapped[int] = mapped_column(default=1600)
    vat_minor: Mapped[int] = mapped_column(sa.BigInteger)
    net_minor: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[InvoiceStatus] = mapped_column(enum_column(InvoiceStatus, "status"), default=InvoiceStatus.OPEN)
    language: Mapped[Language] = mapped_column(enum_column(Language, "language"), default=Language.EN)
    issued_at: Mapped[datetime]

    __table_args__ = (
        sa.UniqueConstraint("institution_id", "number"),
        sa.CheckConstraint("vat_rate_bp >= 0 AND vat_rate_bp <= 10000", name="vat_rate_in_range"),
        sa.CheckConstraint("total_minor >= 0 AND vat_minor >= 0 AND net_minor >= 0", name="amounts_non_negative"),
        sa.CheckConstraint("vat_minor + net_minor = total_minor", name="vat_plus_net_is_total"),
    )


class Receipt(Base, IdMixin, TimestampMixin, TenantMixin):
    __tablename__ = "receipts"

    invoice_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("invoices.id", ondelete="RESTRICT"), index=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("payments.id", ondelete="RESTRICT"), unique=True)
    number: Mapped[str] = mapped_column(sa.String(32))
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    issued_at: Mapped[datetime]

    __table_args__ = (
        sa.UniqueConstraint("institution_id", "number"),
        sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
    )


class RefundStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Refund(Base, IdMixin, TimestampMixin, TenantMixin):
    __tablename__ = "refunds"

    payment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("payments.id", ondelete="RESTRICT"), index=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("orders.id", ondelete="RESTRICT"), default=None)
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.String(500), default="")
    status: Mapped[RefundStatus] = mapped_column(enum_column(RefundStatus, "status"), default=RefundStatus.REQUESTED)
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    provider_reference: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    failure_reason: Mapped[str | None] = mapped_column(sa.String(500), default=None)

    __table_args__ = (
        sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
        sa.CheckConstraint(WHOLE_KES.format(col="amount_minor"), name="whole_kes"),
    )
