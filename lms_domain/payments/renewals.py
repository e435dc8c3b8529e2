"""Subscription renewal by approval: the learner approves on their own phone, and only then is
a payment prompt fired. ``approve_renewal`` is the single entry point the USSD, SMS, REST and
dunning code call; ``settle_renewal`` is what any payment for the renewal ends in.

Idempotent per (subscription, period): a second approval while the first prompt is still open,
or after it was paid, returns the same attempt and fires nothing. A new prompt after a failed
one respects Daraja's spacing (rule 17: not the same amount to the same phone within two
minutes), so a learner tapping "renew" twice never gets two prompts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.access import Actor, ensure_learners_row
from lms_domain.clock import Clock, to_nairobi
from lms_domain.commerce.models import Price
from lms_domain.db import lock
from lms_domain.entitlements.service import grant_subscription, subscription_entitlement
from lms_domain.errors import Conflict, InvalidInput, NotFound
from lms_domain.ids import natural_id, new_id
from lms_domain.money import DEFAULT_VAT_RATE_BP, Money
from lms_domain.notifications.service import alert_admins, notify_learner
from lms_domain.payments.intents import new_intent, payer_msisdn
from lms_domain.payments.models import FailureClass, IntentStatus, Payment, PaymentIntent, Provider
from lms_domain.payments.ports import Gateways, PaymentGatewayError
from lms_domain.payments.settlement import add_interval, clearing_account, sale_postings
from lms_domain.phones import Network, network_of
from lms_domain.subscriptions.models import (
    RenewalOutcome,
    Subscription,
    SubscriptionRenewalAttempt,
    SubscriptionStatus,
)
from lms_domain.tenancy.models import Learner

RENEWAL_DESCRIPTION = "Somo renewal"  # TransactionDesc: at most 13 characters
REPUSH_SPACING = timedelta(minutes=2)
# A paybill payment of the renewal amount counts as the renewal this long before it is due.
EARLY_PAYMENT_WINDOW = timedelta(days=7)
OPEN_INTENT = (IntentStatus.CREATED, IntentStatus.PENDING, IntentStatus.UNKNOWN)
RENEWABLE = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PAST_DUE,
    SubscriptionStatus.GRACE,
    SubscriptionStatus.UNPAID,
)


@dataclass(frozen=True, slots=True)
class RenewalApproval:
    """The attempt an approval belongs to, its payment intent, and whether it fired a prompt."""

    attempt: SubscriptionRenewalAttempt
    intent: PaymentIntent | None
    pushed: bool


def provider_for(msisdn: str, network: Network | None = None) -> Provider:
    """Airtel numbers (by the gateway's network code, else by prefix) pay with Airtel Money."""
    return Provider.AIRTEL if (network or network_of(msisdn)) is Network.AIRTEL else Provider.MPESA


async def _latest_attempt(
    session: AsyncSession, subscription_id: uuid.UUID, period_start: datetime
) -> SubscriptionRenewalAttempt | None:
    return await session.scalar(
        sa.select(SubscriptionRenewalAttempt)
        .where(
            SubscriptionRenewalAttempt.subscription_id == subscription_id,
            SubscriptionRenewalAttempt.period_start == period_start,
        )
        .order_by(SubscriptionRenewalAttempt.attempt_no.desc())
        .limit(1)
    )


async def open_prompt(session: AsyncSession, attempt: SubscriptionRenewalAttempt | None) -> bool:
    """Whether ``attempt`` fired a payment prompt that is still open (the learner may yet pay)."""
    if attempt is None or attempt.payment_intent_id is None:
        return False
    status = await session.scalar(sa.select(PaymentIntent.status).where(PaymentIntent.id == attempt.payment_intent_id))
    return status in OPEN_INTENT


async def _prepare(
    session: AsyncSession,
    *,
    actor: Actor | None,
    subscription_id: uuid.UUID,
    period_start: datetime | None,
    msisdn: str | None,
    network: Network | None,
    clock: Clock,
) -> RenewalApproval:
    subscription = await lock(session, Subscription, subscription_id)
    if actor is not None:
        ensure_learners_row(subscription, actor, what="subscription")
    if subscription is None:
        raise NotFound("subscription not found")
    if subscription.status not in RENEWABLE:
        raise Conflict(f"the subscription is {subscription.status.value}", code="subscription_not_renewable")
    period = period_start or subscription.current_period_end
    latest = await _latest_attempt(session, subscription.id, period)
    if period < subscription.current_period_end:
        if latest is not None and latest.outcome is RenewalOutcome.SUCCEEDED:
            return RenewalApproval(attempt=latest, intent=None, pushed=False)
        raise Conflict("that period is already paid", code="renewal_already_paid")
    if period > subscription.current_period_end:
        raise InvalidInput("that period is not due yet", code="renewal_not_due")
    now = clock.now()
    if latest is not None and latest.payment_intent_id is not None:
        intent = await session.get(PaymentIntent, latest.payment_intent_id)
        assert intent is not None
        if intent.status in OPEN_INTENT or intent.status is IntentStatus.SUCCEEDED:
            return RenewalApproval(attempt=latest, intent=intent, pushed=False)
        wait = intent.created_at + REPUSH_SPACING - now
        if wait > timedelta(0):
            raise Conflict(
                "the last prompt was under two minutes ago; try again shortly",
                code="renewal_push_too_soon",
                retry_after_s=int(wait.total_seconds()) + 1,
            )
    if latest is not None and latest.outcome in (RenewalOutcome.SCHEDULED, RenewalOutcome.INVITED):
        attempt = latest  # the dunning job's invitation is what the learner is approving
    else:
        attempt = SubscriptionRenewalAttempt(
            id=new_id(),
            institution_id=subscription.institution_id,
            subscription_id=subscription.id,
            period_start=period,
            attempt_no=0 if latest is None else latest.attempt_no + 1,
            scheduled_for=now,
            created_at=now,
            updated_at=now,
        )
        session.add(attempt)
    learner = await session.get(Learner, subscription.learner_id)
    price = await session.get(Price, subscription.price_id)
    assert learner is not None and price is not None  # foreign keys
    if price.amount_minor <= 0:
        raise Conflict("the plan is free: nothing to collect", code="renewal_is_free")
    payer = await payer_msisdn(session, learner, msisdn)
    intent = await new_intent(
        session,
        learner=learner,
        amount=Money(price.amount_minor, price.currency),
        provider=provider_for(payer, network),
        msisdn=payer,
        description=RENEWAL_DESCRIPTION,
        idempotency_key=f"renewal:{attempt.id}",
        now=now,
        subscription_id=subscription.id,
    )
    attempt.outcome, attempt.approved_at, attempt.payment_intent_id = RenewalOutcome.APPROVED, now, intent.id
    attempt.updated_at = now
    return RenewalApproval(attempt=attempt, intent=intent, pushed=True)


async def prepare_renewal(
    *,
    sessions: async_sessionmaker[AsyncSession],
    subscription_id: uuid.UUID,
    actor: Actor | None = None,
    period_start: datetime | None = None,
    msisdn: str | None = None,
    network: Network | None = None,
    clock: Clock,
) -> RenewalApproval:
    """Record the approval and its payment intent, without calling the provider yet: a channel
    that must answer before the prompt (USSD) learns here whether one will fire, or why not
    (the 2-minute rule, a prompt still open, nothing to collect), then calls ``fire_renewal``."""
    async with sessions() as session, session.begin():
        return await _prepare(
            session,
            actor=actor,
            subscription_id=subscription_id,
            period_start=period_start,
            msisdn=msisdn,
            network=network,
            clock=clock,
        )


async def fire_renewal(
    *, sessions: async_sessionmaker[AsyncSession], approval: RenewalApproval, gateways: Gateways, clock: Clock
) -> RenewalApproval:
    """Send the prompt a prepared approval needs (none if it found one open or paid). A provider
    error marks the attempt failed and propagates (with its failure class)."""
    # Imported here: flows settles renewals (it imports this module), and this starts pushes.
    from lms_domain.payments.flows import push_intent

    if not approval.pushed or approval.intent is None:
        return approval
    try:
        intent = await push_intent(sessions=sessions, intent=approval.intent, gateways=gateways, clock=clock)
    except (PaymentGatewayError, InvalidInput):
        # ``push_intent`` recorded the failure on the intent, with its class; the attempt follows
        # it as after any failed prompt. A push whose outcome is unknown may still ring the
        # phone: its attempt stays approved until reconciliation says.
        async with sessions() as session, session.begin():
            failed = await session.get(PaymentIntent, approval.intent.id)
            if failed is not None and failed.status is IntentStatus.FAILED:
                await record_renewal_failure(session, failed, clock)
        raise
    return RenewalApproval(attempt=approval.attempt, intent=intent, pushed=True)


async def approve_renewal(
    *,
    sessions: async_sessionmaker[AsyncSession],
    subscription_id: uuid.UUID,
    actor: Actor | None = None,
    period_start: datetime | None = None,
    msisdn: str | None = None,
    network: Network | None = None,
    gateways: Gateways,
    clock: Clock,
) -> RenewalApproval:
    """The learner approved renewing ``subscription_id`` for the period starting ``period_start``
    (default: the next one). With ``actor`` (a REST caller), the subscription must be theirs to
    see: their own, or their school's for staff; system callers (USSD by phone, dunning) pass
    none. Fires exactly one STK Push or Airtel collection per approval.

    ``pushed`` is False when an earlier approval of the same period is still open or paid.
    A provider error marks the attempt failed and propagates (with its failure class).
    """
    approval = await prepare_renewal(
        sessions=sessions,
        subscription_id=subscription_id,
        actor=actor,
        period_start=period_start,
        msisdn=msisdn,
        network=network,
        clock=clock,
    )
    return await fire_renewal(sessions=sessions, approval=approval, gateways=gateways, clock=clock)


async def record_renewal_failure(session: AsyncSession, intent: PaymentIntent, clock: Clock) -> None:
    """A renewal prompt failed: its attempt is failed, with the class dunning decides on."""
    attempt = await session.scalar(
        sa.select(SubscriptionRenewalAttempt).where(SubscriptionRenewalAttempt.payment_intent_id == intent.id)
    )
    if attempt is not None and attempt.outcome is RenewalOutcome.APPROVED:
        now = clock.now()
        attempt.outcome, attempt.resolved_at, attempt.updated_at = RenewalOutcome.FAILED, now, now
        attempt.failure_class = intent.failure_class.value if intent.failure_class else None
        attempt.detail = (intent.result_desc or "")[:255]
        await _tell_of_failure(session, intent, now)


async def page_configuration_error(
    session: AsyncSession, institution_id: uuid.UUID, detail: str, now: datetime
) -> None:
    """Email the school's admins (once a day): prompts fail on our credentials or shortcode,
    which no learner can fix, so dunning holds their attempts until someone does."""
    await alert_admins(
        session=session,
        institution_id=institution_id,
        title="payment prompts fail on our configuration",
        detail=f"{detail}. Renewal reminders are paused for the learners affected until it is fixed.",
        dedupe_key=f"config-alert:{institution_id}:{to_nairobi(now).date().isoformat()}",
        now=now,
    )


async def _tell_of_failure(session: AsyncSession, intent: PaymentIntent, now: datetime) -> None:
    """Our own configuration pages the admins; anything else tells the learner to try again."""
    if intent.failure_class is FailureClass.CONFIGURATION:
        detail = f"{intent.provider.value}: {intent.result_code or ''} {intent.result_desc or ''}".strip()
        await page_configuration_error(session, intent.institution_id, detail, now)
    elif intent.learner_id is not None:
        await notify_learner(
            session=session,
            learner_id=intent.learner_id,
            event="payment_failed",
            values={"amount": Money(intent.amount_minor, intent.currency).figure},
            dedupe_key=f"payment_failed:{intent.id}",
            now=now,
        )


async def renewal_for_intent(session: AsyncSession, intent: PaymentIntent) -> Subscription | None:
    """The subscription a renewal intent pays, locked."""
    if intent.subscription_id is None:
        return None
    return await lock(session, Subscription, intent.subscription_id)


async def renewal_awaiting_payment(
    session: AsyncSession, learner_id: uuid.UUID, amount_minor: int, at: datetime
) -> Subscription | None:
    """The learner's subscription that a payment of exactly ``amount_minor`` renews: one that is
    past due, in grace or unpaid, or active and due within a week."""
    subscription_id = await session.scalar(
        sa.select(Subscription.id)
        .join(Price, Price.id == Subscription.price_id)
        .where(
            Subscription.learner_id == learner_id,
            Subscription.status.in_(RENEWABLE),
            Price.amount_minor == amount_minor,
            sa.or_(
                Subscription.status != SubscriptionStatus.ACTIVE,
                Subscription.current_period_end <= at + EARLY_PAYMENT_WINDOW,
            ),
        )
        .order_by(Subscription.current_period_end, Subscription.id)
        .limit(1)
    )
    return await lock(session, Subscription, subscription_id) if subscription_id is not None else None


def renewal_postings(payment: Payment) -> list[tuple[str, int]]:
    """The sale postings of a renewal payment (VAT at the standard rate)."""
    return sale_postings(payment.amount_minor, DEFAULT_VAT_RATE_BP, clearing_account(payment.provider))


async def settle_renewal(session: AsyncSession, subscription: Subscription, *, payment: Payment, clock: Clock) -> None:
    """Extend ``subscription`` by one period and its entitlement with it (the caller books the money).

    A lapsed (unpaid) subscription restarts from the payment; any other continues from its
    period end, so paying early never loses days.
    """
    price = await session.get(Price, subscription.price_id)
    assert price is not None  # foreign key
    paid_for = subscription.current_period_end
    start = payment.paid_at if subscription.status is SubscriptionStatus.UNPAID else paid_for
    end = add_interval(start, price.interval)
    if end is None:
        raise Conflict("a one-time price does not renew", code="renewal_not_recurring")
    now = clock.now()
    subscription.current_period_start, subscription.current_period_end = start, end
    subscription.status, subscription.grace_until = SubscriptionStatus.ACTIVE, None
    entitlement = await subscription_entitlement(session, subscription.id)
    if entitlement is not None:
        entitlement.valid_until, entitlement.revoked_at = end, None
    else:
        grant_subscription(
            session,
            institution_id=subscription.institution_id,
            learner_id=subscription.learner_id,
            product_id=subscription.product_id,
            subscription_id=subscription.id,
            valid_from=start,
            valid_until=end,
        )
    attempts = await session.scalars(
        sa.select(SubscriptionRenewalAttempt).where(
            SubscriptionRenewalAttempt.subscription_id == subscription.id,
            SubscriptionRenewalAttempt.period_start == paid_for,
            SubscriptionRenewalAttempt.outcome.in_(
                [RenewalOutcome.SCHEDULED, RenewalOutcome.INVITED, RenewalOutcome.APPROVED, RenewalOutcome.FAILED]
            ),
        )
    )
    for attempt in attempts:
        paid_by_it = payment.intent_id is not None and attempt.payment_intent_id == payment.intent_id
        if paid_by_it or attempt.outcome is not RenewalOutcome.FAILED:
            attempt.outcome = RenewalOutcome.SUCCEEDED if paid_by_it else RenewalOutcome.SKIPPED
            attempt.resolved_at, attempt.updated_at = now, now


async def record_manual_renewal(
    *,
    session: AsyncSession,
    actor: Actor,
    subscription_id: uuid.UUID,
    amount_minor: int,
    reference: str,
    paid_at: datetime | None,
    clock: Clock,
) -> Payment:
    """An admin records money paid by hand (cash at the bursar's, a bank deposit) for a
    subscription: booked to the cash account and settled like any renewal, which stops the
    dunning. ``reference`` (the receipt book or bank slip number) is unique per school, so
    recording the same slip twice returns the first payment instead of renewing twice."""
    from lms_domain.payments.booking import book_payment

    actor.require_admin()
    subscription = await lock(session, Subscription, subscription_id)
    ensure_learners_row(subscription, actor, what="subscription")
    assert subscription is not None
    reference = reference.strip()
    if not reference:
        raise InvalidInput("a manual payment needs its receipt or slip number", code="manual_reference_missing")
    # Unique per school and slip (a deterministic id: the column is unique per provider), while
    # the slip number itself is kept as the payment's reference for people to search.
    receipt = natural_id("manual_receipt", subscription.institution_id, reference).hex
    earlier = await session.scalar(
        sa.select(Payment).where(Payment.provider == Provider.MANUAL, Payment.provider_receipt == receipt)
    )
    if earlier is not None:
        if earlier.learner_id != subscription.learner_id or earlier.amount_minor != amount_minor:
            raise Conflict(f"receipt {reference} is already recorded for another payment", code="manual_reference_used")
        return earlier
    if subscription.status not in RENEWABLE:
        raise Conflict(f"the subscription is {subscription.status.value}", code="subscription_not_renewable")
    if await open_prompt(session, await _latest_attempt(session, subscription.id, subscription.current_period_end)):
        # Recording cash now, then the learner entering their PIN, would renew two periods.
        raise Conflict(
            "the learner has a payment prompt open for this renewal; wait for it to finish",
            code="renewal_prompt_open",
        )
    price = await session.get(Price, subscription.price_id)
    assert price is not None  # foreign key
    if amount_minor != price.amount_minor:
        raise InvalidInput(
            f"the renewal costs {Money(price.amount_minor, price.currency)}; record exactly that",
            code="manual_amount_mismatch",
        )
    now = clock.now()
    if paid_at is not None and paid_at.tzinfo is None:
        raise InvalidInput("paid_at needs a time zone", code="manual_paid_at_naive")
    if paid_at is not None and paid_at > now:
        raise InvalidInput("a payment cannot be in the future", code="manual_paid_in_future")
    payment = Payment(
        id=new_id(),
        institution_id=subscription.institution_id,
        learner_id=subscription.learner_id,
        provider=Provider.MANUAL,
        provider_receipt=receipt,
        account_reference=reference[:64],
        currency=price.currency,
        amount_minor=amount_minor,
        paid_at=paid_at or now,
        recorded_by_id=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(payment)
    await session.flush()
    await book_payment(
        session,
        payment,
        order=None,
        subscription=subscription,
        kind="manual_settlement",
        source_type="payment",
        source_id=payment.id,
        description=f"manual payment {reference[:40]} for subscription {subscription.id}",
        clock=clock,
    )
    return payment
