"""Payments beyond checkout: suspense matching, sending refunds, approving renewals and
recording renewals paid by hand."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lms_domain.commerce.schemas import MAX_AMOUNT_MINOR, RefundOut, UtcDateTime
from lms_domain.errors import InvalidInput, NotFound
from lms_domain.ledger.accounts import CHART, as_reported
from lms_domain.ledger.service import trial_balance
from lms_domain.payments import paybill, renewals, reversals
from lms_domain.payments.schemas import (
    LedgerAccountBalance,
    LedgerBalanceQuery,
    LedgerBalances,
    PaymentIntentOut,
    PaymentOut,
    RenewalOut,
    RenewalRequest,
    SuspenseCandidate,
    SuspenseMatch,
    SuspensePage,
    SuspensePaymentOut,
)
from lms_domain.subscriptions.models import Subscription
from lms_domain.subscriptions.schemas import SubscriptionOut
from lms_domain.tenancy.models import Role
from server.api.registry import Api, Call
from server.keys import gateways_key, sessionmaker_key

api = Api(
    "payments", description="Suspense matching for unmatched paybill payments, refunds sent back, renewals, ledger."
)

ADMINS = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN})

# The slip number as the bursar wrote it: kept as the payment's reference (64 characters at
# most) and unique per school.
ManualReference = Annotated[
    str, StringConstraints(min_length=1, max_length=55, pattern=r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$")
]


class ManualPaymentIn(BaseModel):
    """Money paid by hand (cash at the bursar's, a bank deposit) for one renewal."""

    model_config = ConfigDict(extra="forbid")

    amount_minor: int = Field(gt=0, le=MAX_AMOUNT_MINOR, description="Exactly the renewal's price, minor units.")
    reference: ManualReference = Field(description="The receipt book or bank slip number; unique per school.")
    paid_at: UtcDateTime | None = Field(default=None, description="When the money was paid; default now.")


class ManualPaymentOut(BaseModel):
    """The recorded payment and the subscription it renewed."""

    payment: PaymentOut
    subscription: SubscriptionOut


@api.get("/payments/suspense", summary="List unmatched paybill payments", response=SuspensePage, auth=ADMINS)
async def list_suspense(call: Call[Any, Any]) -> SuspensePage:
    """Newest first, each with the learners whose account number is one typo away."""
    async with call.read() as session:
        items = await paybill.list_suspense(session, call.actor)
    return SuspensePage(
        items=[
            SuspensePaymentOut(
                payment_id=item.payment.id,
                provider=item.payment.provider.value,
                provider_receipt=item.payment.provider_receipt,
                amount_minor=item.payment.amount_minor,
                currency=item.payment.currency,
                held_minor=item.held_minor,
                account_reference=item.payment.account_reference,
                payer_name=item.payment.payer_name,
                msisdn=item.payment.msisdn,
                learner_id=item.payment.learner_id,
                paid_at=item.payment.paid_at,
                candidates=[
                    SuspenseCandidate(learner_id=c.id, display_name=c.display_name, account_no=c.account_no)
                    for c in item.candidates
                ],
            )
            for item in items
        ]
    )


@api.post(
    "/payments/{payment_id}/match",
    summary="Match a suspense payment to a learner",
    body=SuspenseMatch,
    response=PaymentOut,
    auth=ADMINS,
)
async def match_suspense(call: Call[SuspenseMatch, Any]) -> PaymentOut:
    """With `order_id`, the held money pays that order (exact amount only) and leaves suspense."""
    async with call.uow() as session:
        payment = await paybill.match_suspense(
            session=session,
            actor=call.actor,
            payment_id=call.path_uuid("payment_id"),
            learner_id=call.body.learner_id,
            order_id=call.body.order_id,
            clock=call.clock,
        )
        return PaymentOut.model_validate(payment)


@api.post(
    "/refunds/{refund_id}/send",
    summary="Send an approved refund",
    response=RefundOut,
    status=202,
    auth=ADMINS,
    extra_responses={
        409: "Not approved, partial (providers reverse whole payments only) or already sent.",
        502: "The provider refused the reversal.",
        503: "The provider could not be reached; try again.",
    },
)
async def send_refund(call: Call[Any, Any]) -> RefundOut:
    """A full M-Pesa Reversal (answered later, `processing` until then) or an Airtel refund."""
    refund = await reversals.send_refund(
        sessions=call.app[sessionmaker_key],
        actor=call.actor,
        refund_id=call.path_uuid("refund_id"),
        gateways=call.app[gateways_key],
        clock=call.clock,
    )
    return RefundOut.model_validate(refund)


@api.post(
    "/subscriptions/{subscription_id}/renew",
    summary="Approve a renewal",
    body=RenewalRequest,
    response=RenewalOut,
    status=202,
    idempotent=True,
    extra_responses={409: "Cancelled, already paid, or prompted under two minutes ago (`retry_after_s`)."},
)
async def approve_renewal(call: Call[RenewalRequest, Any]) -> RenewalOut:
    """The learner (or staff on their behalf) approves: one M-Pesa or Airtel prompt per period."""
    approval = await renewals.approve_renewal(
        sessions=call.app[sessionmaker_key],
        actor=call.actor,
        subscription_id=call.path_uuid("subscription_id"),
        period_start=call.body.period_start,
        msisdn=call.body.phone,
        gateways=call.app[gateways_key],
        clock=call.clock,
    )
    attempt = approval.attempt
    return RenewalOut(
        attempt_id=attempt.id,
        attempt_no=attempt.attempt_no,
        period_start=attempt.period_start,
        outcome=attempt.outcome.value,
        prompted=approval.pushed,
        intent=PaymentIntentOut.of(approval.intent) if approval.intent is not None else None,
    )


@api.post(
    "/subscriptions/{subscription_id}/manual-payments",
    summary="Record a renewal paid by hand",
    body=ManualPaymentIn,
    response=ManualPaymentOut,
    status=201,
    auth=ADMINS,
    idempotent=True,
    extra_responses={409: "The subscription is cancelled, or the reference was used for another payment."},
)
async def record_manual_payment(call: Call[ManualPaymentIn, Any]) -> ManualPaymentOut:
    """Booked to the cash account; the subscription renews for one period, which ends its
    dunning. The same reference again answers the first payment and renews nothing."""
    subscription_id = call.path_uuid("subscription_id")
    async with call.uow() as session:
        payment = await renewals.record_manual_renewal(
            session=session,
            actor=call.actor,
            subscription_id=subscription_id,
            amount_minor=call.body.amount_minor,
            reference=call.body.reference,
            paid_at=call.body.paid_at,
            clock=call.clock,
        )
        subscription = await session.get(Subscription, subscription_id)
        return ManualPaymentOut(
            payment=PaymentOut.model_validate(payment), subscription=SubscriptionOut.model_validate(subscription)
        )


@api.get("/ledger/balances", summary="Ledger balances", query=LedgerBalanceQuery, response=LedgerBalances, auth=ADMINS)
async def ledger_balances(call: Call[Any, LedgerBalanceQuery]) -> LedgerBalances:
    """Every account of the institution's chart, optionally as of `at`; they sum to zero."""
    institution_id = call.query.institution_id or call.actor.institution_id
    if institution_id is None:
        raise InvalidInput("name the institution: institution_id", code="institution_required")
    if call.actor.institution_id is not None and institution_id != call.actor.institution_id:
        raise NotFound("institution not found")
    async with call.read() as session:
        sums = await trial_balance(session, institution_id, call.query.currency, call.query.at)
    return LedgerBalances(
        institution_id=institution_id,
        currency=call.query.currency,
        accounts=[
            LedgerAccountBalance(
                code=spec.code,
                name=spec.name,
                balance_minor=sums[spec.code],
                reported_minor=as_reported(spec.code, sums[spec.code]),
            )
            for spec in CHART
        ],
        total_minor=sum(sums.values()),
    )
