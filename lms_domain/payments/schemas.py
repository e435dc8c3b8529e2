"""What the payment endpoints answer."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from lms_domain.payments.models import FailureClass, IntentStatus, PaymentIntent


class PaymentIntentOut(BaseModel):
    """A payment in progress: ``pending`` until the payer answers the prompt on their phone."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_id: uuid.UUID | None
    provider: str
    status: IntentStatus
    amount_minor: int
    currency: str
    checkout_request_id: str | None = Field(default=None, description="M-Pesa CheckoutRequestID once accepted")
    failure_class: FailureClass | None = None

    @classmethod
    def of(cls, intent: PaymentIntent) -> PaymentIntentOut:
        return cls(
            id=intent.id,
            order_id=intent.order_id,
            provider=intent.provider.value,
            status=intent.status,
            amount_minor=intent.amount_minor,
            currency=intent.currency,
            checkout_request_id=intent.provider_request_id,
            failure_class=intent.failure_class,
        )


class SuspenseMatch(BaseModel):
    """Attribute a suspense payment to a learner and, optionally, pay one of their orders with it."""

    model_config = ConfigDict(extra="forbid")

    learner_id: uuid.UUID
    order_id: uuid.UUID | None = Field(default=None, description="A pending order of exactly the held amount.")


class SuspenseCandidate(BaseModel):
    learner_id: uuid.UUID
    display_name: str
    account_no: str


class SuspensePaymentOut(BaseModel):
    """A paybill payment the system could not apply, with learners one typo from what was typed."""

    payment_id: uuid.UUID
    provider: str
    provider_receipt: str
    amount_minor: int
    currency: str
    held_minor: int
    account_reference: str | None
    payer_name: str | None
    msisdn: str | None
    learner_id: uuid.UUID | None
    paid_at: datetime
    candidates: list[SuspenseCandidate]


class SuspensePage(BaseModel):
    items: list[SuspensePaymentOut]


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID
    learner_id: uuid.UUID | None
    provider: str
    provider_receipt: str
    amount_minor: int
    currency: str
    status: str
    account_reference: str | None
    paid_at: datetime


class RenewalRequest(BaseModel):
    """Approve renewing a subscription: the payer's phone gets one payment prompt."""

    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, max_length=20, description="Default: the learner's phone.")
    period_start: datetime | None = Field(default=None, description="Default: the next period.")


class RenewalOut(BaseModel):
    attempt_id: uuid.UUID
    attempt_no: int
    period_start: datetime
    outcome: str
    prompted: bool = Field(description="False when an earlier approval's prompt is still open or paid.")
    intent: PaymentIntentOut | None


class LedgerBalanceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_id: uuid.UUID | None = Field(default=None, description="Platform admins name the institution.")
    currency: str = Field(default="KES", pattern=r"^[A-Z]{3}$")
    at: datetime | None = Field(default=None, description="Balances as of this instant (inclusive).")


class LedgerAccountBalance(BaseModel):
    code: str
    name: str
    balance_minor: int = Field(description="Signed, debit-positive: the sum of the account's postings.")
    reported_minor: int = Field(description="As people read it: positive on the account's normal side.")


class LedgerBalances(BaseModel):
    institution_id: uuid.UUID
    currency: str
    accounts: list[LedgerAccountBalance]
    total_minor: int = Field(description="Always 0: every entry balances.")
