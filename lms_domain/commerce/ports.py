"""What the commerce domain needs from the outside world, as small interfaces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from lms_domain.i18n import Language


@dataclass(frozen=True)
class DocumentLine:
    description: str
    quantity: int
    unit_amount_minor: int
    total_minor: int


@dataclass(frozen=True)
class InvoiceView:
    """Everything printed on an invoice; times already in Africa/Nairobi."""

    number: str
    institution_name: str
    learner_name: str
    account_no: str
    lines: tuple[DocumentLine, ...]
    currency: str
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    vat_minor: int
    net_minor: int
    vat_rate_bp: int
    status: str  # open, paid or void: void ones are stamped so they are never paid twice
    issued_at_local: datetime
    language: Language


@dataclass(frozen=True)
class ReceiptView:
    """Everything printed on a receipt; times already in Africa/Nairobi."""

    number: str
    invoice_number: str
    institution_name: str
    learner_name: str
    account_no: str
    currency: str
    amount_minor: int
    vat_minor: int
    net_minor: int
    vat_rate_bp: int
    provider: str
    provider_receipt: str
    paid_at_local: datetime
    issued_at_local: datetime
    language: Language


class InvoiceRenderer(Protocol):
    def render_invoice(self, view: InvoiceView) -> bytes:
        """Return the invoice as a PDF document."""
        ...

    def render_receipt(self, view: ReceiptView) -> bytes:
        """Return the receipt as a PDF document."""
        ...
