"""What the payment endpoints answer."""

from __future__ import annotations

import uuid

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
