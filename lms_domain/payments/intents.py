"""Making and locking ``PaymentIntent`` rows: one factory for every flow that asks a phone for
money (an order's checkout, a subscription renewal), so the payer's number, our Airtel
transaction id and the account reference are chosen the same way everywhere."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.db import lock
from lms_domain.errors import InvalidInput, NotFound
from lms_domain.ids import new_id
from lms_domain.money import Money
from lms_domain.payments.models import IntentStatus, PaymentIntent, Provider
from lms_domain.phones import normalize_msisdn
from lms_domain.tenancy.models import Learner, Phone


def airtel_transaction_id(intent_id: uuid.UUID) -> str:
    """Our Airtel ``transaction.id`` for an intent: unique, and never reused for a retry."""
    return intent_id.hex.upper()


async def payer_msisdn(session: AsyncSession, learner: Learner, msisdn: str | None) -> str:
    """The number to prompt: the one given, else the learner's own phone."""
    if msisdn:
        return normalize_msisdn(msisdn)
    phone = await session.get(Phone, learner.phone_id) if learner.phone_id is not None else None
    if phone is None:
        raise InvalidInput("give the phone number to prompt: phone", code="phone_required")
    return phone.e164


async def new_intent(
    session: AsyncSession,
    *,
    learner: Learner,
    amount: Money,
    provider: Provider,
    msisdn: str,
    description: str,
    idempotency_key: str,
    now: datetime,
    order_id: uuid.UUID | None = None,
    subscription_id: uuid.UUID | None = None,
) -> PaymentIntent:
    """A ``created`` intent to collect ``amount`` from ``msisdn`` (already normalised), flushed."""
    intent_id = new_id()
    intent = PaymentIntent(
        id=intent_id,
        institution_id=learner.institution_id,
        learner_id=learner.id,
        order_id=order_id,
        subscription_id=subscription_id,
        provider=provider,
        # Airtel's transaction id is ours, so it is known (and matchable) before the push.
        provider_request_id=airtel_transaction_id(intent_id) if provider is Provider.AIRTEL else None,
        currency=amount.currency,
        amount_minor=amount.amount_minor,
        msisdn=msisdn,
        account_reference=learner.account_no,
        description=description,
        idempotency_key=idempotency_key,
        status=IntentStatus.CREATED,
        created_at=now,
        updated_at=now,
    )
    session.add(intent)
    await session.flush()
    return intent


async def locked_intent(session: AsyncSession, intent_id: uuid.UUID) -> PaymentIntent:
    """The intent, locked for the rest of the transaction; ``NotFound`` if there is none."""
    intent = await lock(session, PaymentIntent, intent_id)
    if intent is None:
        raise NotFound("payment intent not found")
    return intent
