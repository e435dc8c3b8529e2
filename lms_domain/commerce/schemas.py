"""Commerce schemas (catalogue, checkout, invoices, receipts, refunds), shared by the REST
API, the edge and the docs.

Amounts are integer minor units. KES amounts must be whole shillings, and nothing may
exceed what M-Pesa can collect in one go, so a price or coupon that could never be paid
is refused at the door rather than at checkout. Free text refuses control characters:
PostgreSQL rejects NUL in text columns, and a line break would corrupt a USSD screen.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from lms_domain.commerce.models import (
    InvoiceStatus,
    OrderStatus,
    PriceInterval,
    ProductKind,
    RefundStatus,
)
from lms_domain.courses.schemas import ListQuery
from lms_domain.i18n import Language
from lms_domain.money import MINOR_PER_MAJOR, MPESA_MAX_KES

# At least one visible character, and no control characters anywhere.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
MAX_AMOUNT_MINOR = MPESA_MAX_KES * MINOR_PER_MAJOR["KES"]
MAX_CART_ITEMS = 20
MAX_QUANTITY = 10


def _whole_shillings(amount_minor: int) -> int:
    if amount_minor % MINOR_PER_MAJOR["KES"]:
        raise ValueError("KES amounts are whole shillings (a multiple of 100 minor units)")
    return amount_minor


def _utc(moment: datetime) -> datetime:
    # Normalise here so an offset at the edge of the calendar (year 1 or 9999) is a 422,
    # not an overflow deep inside the database driver.
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the date is out of range") from None


Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_PRINTABLE)]
Reason = Annotated[str, StringConstraints(max_length=500, pattern=_NO_CONTROL)]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
CouponCode = Annotated[
    str,
    StringConstraints(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9-]+$", to_upper=True),
]
PriceAmount = Annotated[
    int,
    Field(ge=0, le=MAX_AMOUNT_MINOR, description="Minor units (cents); KES prices are whole shillings incl. VAT."),
    AfterValidator(_whole_shillings),
]
PositiveAmount = Annotated[
    int,
    Field(ge=100, le=MAX_AMOUNT_MINOR, description="Minor units (cents); whole shillings."),
    AfterValidator(_whole_shillings),
]
UtcDateTime = Annotated[AwareDatetime, AfterValidator(_utc)]


# Products -------------------------------------------------------------------------------


class ProductListQuery(ListQuery):
    kind: ProductKind | None = None
    is_active: bool | None = Field(default=None, description="Admins only; everyone else sees active products.")


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    kind: ProductKind
    name_en: Text
    name_sw: Text | None = None
    course_id: uuid.UUID | None = Field(default=None, description="Required for kind `course`, refused otherwise.")
    downgrade_to_id: uuid.UUID | None = Field(
        default=None, description="A subscription falls back to this product when dunning ends."
    )
    is_active: bool = True
    institution_id: uuid.UUID | None = Field(
        default=None, description="Platform admins only: the owner, or null for the shared catalogue."
    )


class ProductUpdate(BaseModel):
    """SKU, kind and course are fixed once created: orders and entitlements refer to them."""

    model_config = ConfigDict(extra="forbid")

    name_en: Text | None = None
    name_sw: Text | None = None
    downgrade_to_id: uuid.UUID | None = None
    is_active: bool | None = None


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID | None
    sku: str
    kind: ProductKind
    name_en: str
    name_sw: str | None
    course_id: uuid.UUID | None
    downgrade_to_id: uuid.UUID | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None = None


# Prices ---------------------------------------------------------------------------------


class PriceListQuery(ListQuery):
    is_active: bool | None = Field(default=None, description="Admins only; everyone else sees active prices.")


class PriceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: Literal["KES"] = "KES"
    amount_minor: PriceAmount
    interval: PriceInterval


class PriceUpdate(BaseModel):
    """Only the switch: an ordered price must keep meaning what the order says it meant."""

    model_config = ConfigDict(extra="forbid")

    is_active: bool


class PriceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID | None
    product_id: uuid.UUID
    currency: str
    amount_minor: int
    interval: PriceInterval
    is_active: bool
    created_at: datetime
    updated_at: datetime


class PricePage(BaseModel):
    items: list[PriceOut]
    next_cursor: str | None = None


# Coupons --------------------------------------------------------------------------------


class CouponListQuery(ListQuery):
    is_active: bool | None = None


class CouponCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: CouponCode = Field(description="3-32 letters, digits or dashes; stored upper-case.")
    percent_off: int | None = Field(default=None, ge=1, le=100)
    amount_off_minor: PositiveAmount | None = None
    valid_from: UtcDateTime | None = None
    valid_until: UtcDateTime | None = None
    max_redemptions: int | None = Field(default=None, ge=1, le=1_000_000)
    product_id: uuid.UUID | None = Field(default=None, description="Only carts with this product may use it.")
    is_active: bool = True
    institution_id: uuid.UUID | None = Field(default=None, description="Platform admins only, and then required.")

    @model_validator(mode="after")
    def _one_discount_and_ordered_window(self) -> CouponCreate:
        if (self.percent_off is None) == (self.amount_off_minor is None):
            raise ValueError("give exactly one of percent_off and amount_off_minor")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class CouponUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_active: bool | None = None
    valid_until: UtcDateTime | None = Field(default=None, description="null removes the end date.")
    max_redemptions: int | None = Field(default=None, ge=1, le=1_000_000, description="null removes the cap.")


class CouponOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID
    code: str
    percent_off: int | None
    amount_off_minor: int | None
    currency: str
    valid_from: datetime | None
    valid_until: datetime | None
    max_redemptions: int | None
    times_redeemed: int
    product_id: uuid.UUID | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


class CouponPage(BaseModel):
    items: list[CouponOut]
    next_cursor: str | None = None


# Checkout -------------------------------------------------------------------------------


class CartItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    price_id: uuid.UUID
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)


class CartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CartItem] = Field(min_length=1, max_length=MAX_CART_ITEMS)
    coupon_code: str | None = Field(
        default=None,
        max_length=64,
        pattern=_NO_CONTROL,
        description="Case-insensitive; an unknown code answers `invalid_coupon`.",
    )
    learner_id: uuid.UUID | None = Field(
        default=None, description="Staff: the learner the cart is for. Learners always buy for themselves."
    )


class CartLine(BaseModel):
    price_id: uuid.UUID
    product_id: uuid.UUID
    product_name: str
    interval: PriceInterval
    quantity: int
    unit_amount_minor: int
    total_minor: int


class CartQuote(BaseModel):
    """The price of a cart, as an order would charge it now. VAT is included in the total."""

    lines: list[CartLine]
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    vat_minor: int
    net_minor: int
    vat_rate_bp: int
    currency: str
    coupon_code: str | None


class OrderListQuery(ListQuery):
    status: OrderStatus | None = None
    learner_id: uuid.UUID | None = Field(default=None, description="Staff only.")


class LineItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    product_id: uuid.UUID
    price_id: uuid.UUID
    description: str
    quantity: int
    unit_amount_minor: int
    total_minor: int


class InvoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID
    order_id: uuid.UUID
    number: str
    currency: str
    total_minor: int
    vat_rate_bp: int
    vat_minor: int
    net_minor: int
    status: InvoiceStatus
    language: Language
    issued_at: datetime
    created_at: datetime
    updated_at: datetime


class InvoicePage(BaseModel):
    items: list[InvoiceOut]
    next_cursor: str | None = None


class InvoiceListQuery(ListQuery):
    status: InvoiceStatus | None = None


class OrderOut(BaseModel):
    id: uuid.UUID
    institution_id: uuid.UUID
    learner_id: uuid.UUID
    status: OrderStatus
    currency: str
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    coupon_id: uuid.UUID | None
    placed_by_user_id: uuid.UUID | None
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime
    line_items: list[LineItemOut]
    invoice: InvoiceOut | None


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None = None


class PaymentStart(BaseModel):
    """How the learner means to pay; the payments issue gives these fields their effect."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["mpesa", "airtel"] = "mpesa"
    phone: str | None = Field(default=None, max_length=32, pattern=r"^[0-9+ ()-]+$")


class ReceiptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID
    invoice_id: uuid.UUID
    payment_id: uuid.UUID
    number: str
    currency: str
    amount_minor: int
    issued_at: datetime
    created_at: datetime


class ReceiptPage(BaseModel):
    items: list[ReceiptOut]
    next_cursor: str | None = None


# Refunds --------------------------------------------------------------------------------


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: uuid.UUID
    amount_minor: PositiveAmount
    reason: Reason = ""


class RefundDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None


class RefundListQuery(ListQuery):
    status: RefundStatus | None = None


class RefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID
    payment_id: uuid.UUID
    order_id: uuid.UUID | None
    currency: str
    amount_minor: int
    reason: str
    status: RefundStatus
    requested_by_id: uuid.UUID | None
    decided_by_id: uuid.UUID | None
    decided_at: datetime | None
    failure_reason: str | None = Field(description="Why it was rejected, or why the reversal failed.")
    created_at: datetime
    updated_at: datetime


class RefundPage(BaseModel):
    items: list[RefundOut]
    next_cursor: str | None = None
