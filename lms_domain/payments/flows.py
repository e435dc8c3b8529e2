"""M-Pesa STK checkout: start a push for an order, then settle it exactly once.

Settlement is reached three ways (a callback from the inbox, an STK Query from the poller,
and later reconciliation) and all of them end in ``settle_intent``, whose one transaction
writes the Payment, the Receipt, the ledger entry, the paid order and invoice, and the
entitlements. Exactly-once rests on the database, not on timing:

* the intent row is locked (``FOR UPDATE``; SQLite serialises writers anyway) and its status
  only moves forward: ``created -> pending -> succeeded | failed``, plus ``failed -> succeeded``
  when, and only when, an STK Query confirms the payment;
* ``payments`` is unique on the intent and on (provider, receipt); the ledger entry is keyed on
  the intent, so a replay returns what was posted.

A failure reported after a success is kept as an anomaly on its inbox row, never applied.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.access import Actor
from lms_domain.clock import Clock
from lms_domain.commerce.checkout import get_order
from lms_domain.commerce.models import Order, OrderStatus
from lms_domain.db import lock
from lms_domain.errors import Conflict, InvalidInput, NotFound
from lms_domain.ids import new_id
from lms_domain.money import Money
from lms_domain.payments import inbox
from lms_domain.payments.airtel import AirtelCollectionRequest, AirtelEnquiryResult
from lms_domain.payments.booking import PaidFor, book_payment
from lms_domain.payments.intents import locked_intent, new_intent, payer_msisdn
from lms_domain.payments.models import (
    FailureClass,
    IntentStatus,
    Payment,
    PaymentIntent,
    Provider,
    WebhookEvent,
    WebhookStatus,
)
from lms_domain.payments.mpesa import StkCallback, parse_stk_callback
from lms_domain.payments.ports import (
    FixedGateways,
    Gateways,
    MpesaGateway,
    PaymentGatewayError,
    StkPushRequest,
    StkQueryResult,
    StkStatus,
)
from lms_domain.payments.renewals import record_renewal_failure, renewal_for_intent
from lms_domain.tenancy.models import Learner

log = logging.getLogger("somo.payments.flows")

STK_DESCRIPTION = "Somo payment"  # TransactionDesc: at most 13 characters
# A second push for the same order within this window is refused: the customer may still be
# answering the first prompt, and Daraja would answer "unable to lock subscriber" anyway.
PUSH_IN_FLIGHT_WINDOW = timedelta(minutes=2)
STK_CALLBACK_KIND = "stk_callback"
LEDGER_SOURCE = "payment_intent"
LEDGER_KIND = "stk_settlement"
AWAITING_QUERY = "awaiting STK Query: success reported after the intent failed"
# The settlement refusals that are verdicts on the callback, kept as anomalies; any other
# conflict is transient and leaves the inbox row to be retried.
SETTLEMENT_REFUSALS = frozenset({"settlement_needs_query", "settlement_amount_mismatch"})


class SettlementSource(StrEnum):
    CALLBACK = "callback"
    QUERY = "query"  # STK Query, Transaction Status: the provider's own confirmation


@dataclass(frozen=True, slots=True)
class Settlement:
    """What ``settle_intent`` did: ``created`` is False when the intent was already settled."""

    payment: Payment
    created: bool


# Starting a push ---------------------------------------------------------------------------


async def _create_intent(
    session: AsyncSession,
    *,
    actor: Actor,
    order_id: uuid.UUID,
    msisdn: str | None,
    idempotency_key: str,
    clock: Clock,
    provider: Provider = Provider.MPESA,
) -> PaymentIntent:
    existing = await session.scalar(sa.select(PaymentIntent).where(PaymentIntent.idempotency_key == idempotency_key))
    if existing is not None:
        if existing.order_id != order_id:
            raise Conflict("this idempotency key was used for another order", code="idempotency_key_reused")
        return existing
    order = await get_order(session=session, actor=actor, order_id=order_id, for_update=True)
    if order.status is not OrderStatus.PENDING:
        raise Conflict(f"the order is {order.status.value}; only pending orders are paid", code="order_not_pending")
    if order.total_minor <= 0:
        raise InvalidInput("the order is free: nothing to collect", code="order_is_free")
    now = clock.now()
    in_flight = await session.scalar(
        sa.select(PaymentIntent.id).where(
            PaymentIntent.order_id == order.id,
            PaymentIntent.status.in_([IntentStatus.CREATED, IntentStatus.PENDING]),
            PaymentIntent.created_at > now - PUSH_IN_FLIGHT_WINDOW,
        )
    )
    if in_flight is not None:
        raise Conflict(
            "a payment prompt for this order is still open; answer it or wait two minutes",
            code="payment_in_progress",
            intent_id=str(in_flight),
        )
    learner = await session.get(Learner, order.learner_id)
    assert learner is not None  # foreign key
    return await new_intent(
        session,
        learner=learner,
        amount=Money(order.total_minor, order.currency),
        provider=provider,
        msisdn=await payer_msisdn(session, learner, msisdn),
        description=STK_DESCRIPTION,
        idempotency_key=idempotency_key,
        now=now,
        order_id=order.id,
    )


async def start_order_payment(
    *,
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    order_id: uuid.UUID,
    msisdn: str | None,
    idempotency_key: str,
    provider: Provider,
    gateways: Gateways,
    clock: Clock,
) -> PaymentIntent:
    """Prompt the payer's phone for an order's total; the answer is the intent, ``pending``.

    Replaying an ``idempotency_key`` returns its intent without pushing again.
    """
    async with sessions() as session, session.begin():
        intent = await _create_intent(
            session,
            actor=actor,
            order_id=order_id,
            msisdn=msisdn,
            idempotency_key=idempotency_key,
            clock=clock,
            provider=provider,
        )
    return await push_intent(sessions=sessions, intent=intent, gateways=gateways, clock=clock)


async def start_stk_payment(
    *,
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    order_id: uuid.UUID,
    msisdn: str | None,
    idempotency_key: str,
    gateway: MpesaGateway,
    clock: Clock,
    callback_url: str,
) -> PaymentIntent:
    """``start_order_payment`` with M-Pesa and one given gateway."""
    return await start_order_payment(
        sessions=sessions,
        actor=actor,
        order_id=order_id,
        msisdn=msisdn,
        idempotency_key=idempotency_key,
        provider=Provider.MPESA,
        gateways=FixedGateways(mpesa=gateway, stk_callback_url=callback_url),
        clock=clock,
    )


async def _send(
    intent: PaymentIntent, sessions: async_sessionmaker[AsyncSession], gateways: Gateways
) -> tuple[str, str | None]:
    """Send the provider request for ``intent``; (provider request id, merchant request id).

    The gateway is looked up in a session closed before the call: no transaction (and on
    SQLite no write lock) is held while the provider answers.
    """
    amount = Money(intent.amount_minor, intent.currency)
    if intent.provider is Provider.AIRTEL:
        async with sessions() as session, session.begin():
            airtel = await gateways.airtel_for(session, intent.institution_id)
        assert intent.provider_request_id is not None  # set at creation
        accepted_airtel = await airtel.collect(
            AirtelCollectionRequest(
                amount=amount,
                msisdn=intent.msisdn,
                reference=intent.account_reference,
                transaction_id=intent.provider_request_id,
                callback_url=gateways.airtel_callback_url,
            )
        )
        return accepted_airtel.transaction_id, None
    async with sessions() as session, session.begin():
        mpesa = await gateways.mpesa_for(session, intent.institution_id)
    accepted = await mpesa.stk_push(
        StkPushRequest(
            amount=amount,
            msisdn=intent.msisdn,
            account_reference=intent.account_reference,
            description=intent.description,
            callback_url=gateways.stk_callback_url,
        )
    )
    return accepted.checkout_request_id, accepted.merchant_request_id


async def push_intent(
    *, sessions: async_sessionmaker[AsyncSession], intent: PaymentIntent, gateways: Gateways, clock: Clock
) -> PaymentIntent:
    """Send a ``created`` intent to its provider and record the answer; any other intent is
    returned as it is.

    Three units of work, so no database transaction is held open across the provider call and
    a crash mid-way leaves a ``created`` intent behind rather than an untracked prompt: the
    intent is committed (by the caller), the push is sent, then the provider's id is recorded.
    """
    if intent.status is not IntentStatus.CREATED or (
        intent.provider is Provider.MPESA and intent.provider_request_id is not None
    ):
        return intent
    try:
        request_id, merchant_id = await _send(intent, sessions, gateways)
    except (PaymentGatewayError, InvalidInput) as exc:
        failure = exc.failure_class if isinstance(exc, PaymentGatewayError) else FailureClass.CONFIGURATION
        unknown = bool(exc.extra.get("outcome_unknown"))
        async with sessions() as session, session.begin():
            failed = await locked_intent(session, intent.id)
            if failed.status is IntentStatus.CREATED:
                # A push that timed out after sending may still prompt the phone: reconciliation
                # decides, so it is "unknown", never "failed".
                failed.status = IntentStatus.UNKNOWN if unknown else IntentStatus.FAILED
                failed.failure_class = failure
                failed.result_code = getattr(exc, "provider_code", None) or exc.code
                failed.result_desc = exc.detail[:255]
                failed.resolved_at = None if unknown else clock.now()
                failed.updated_at = clock.now()
        raise
    async with sessions() as session, session.begin():
        intent = await locked_intent(session, intent.id)
        if intent.status is IntentStatus.CREATED:
            intent.status = IntentStatus.PENDING
            intent.provider_request_id = request_id
            intent.merchant_request_id = merchant_id
            intent.requested_at = clock.now()
            intent.updated_at = clock.now()
    if intent.provider is not Provider.MPESA:
        return intent
    # The callback may have overtaken the commit above and waited in the inbox for the
    # CheckoutRequestID: settle it now rather than at the next poll.
    async with sessions() as session, session.begin():
        await process_waiting_events(session, request_id, clock)
        return await locked_intent(session, intent.id)


# Settling ----------------------------------------------------------------------------------


async def settle_intent(
    session: AsyncSession,
    intent: PaymentIntent,
    receipt: str,
    amount: int,
    paid_at: datetime,
    source: SettlementSource,
    *,
    clock: Clock,
    webhook_event_id: uuid.UUID | None = None,
) -> Settlement:
    """Settle ``intent`` once, in the caller's transaction; a replay returns the payment made.

    Refuses (``Conflict``) to settle a failed intent on a callback's word (only a Query may
    revive it) and an amount other than the one requested (flagged for review, never credited).
    """
    intent = await locked_intent(session, intent.id)
    if intent.status is IntentStatus.SUCCEEDED:
        payment = await session.scalar(sa.select(Payment).where(Payment.intent_id == intent.id))
        assert payment is not None  # written in the same transaction as the status
        return Settlement(payment=payment, created=False)
    if intent.status is IntentStatus.FAILED and source is not SettlementSource.QUERY:
        raise Conflict(AWAITING_QUERY, code="settlement_needs_query")
    if amount != intent.amount_minor:
        raise Conflict(
            f"paid {amount} but {intent.amount_minor} was requested; flagged for review",
            code="settlement_amount_mismatch",
        )
    now = clock.now()
    payment = Payment(
        id=new_id(),
        institution_id=intent.institution_id,
        intent_id=intent.id,
        learner_id=intent.learner_id,
        provider=intent.provider,
        provider_receipt=receipt,
        currency=intent.currency,
        amount_minor=amount,
        msisdn=intent.msisdn,
        account_reference=intent.account_reference,
        paid_at=paid_at,
        webhook_event_id=webhook_event_id,
        created_at=now,
        updated_at=now,
    )
    session.add(payment)
    await session.flush()  # (provider, receipt) and intent_id are unique: a double settle stops here

    # The ledger is posted before anything synced (entitlements, subscriptions) is written: a
    # synced row takes the institution's change-sequence counter until commit, so writing them
    # last keeps that per-school lock for the final flush only, not the whole settlement.
    order = await lock(session, Order, intent.order_id) if intent.order_id is not None else None
    paid_for = await book_payment(
        session,
        payment,
        order=order,
        subscription=await renewal_for_intent(session, intent),
        kind=LEDGER_KIND,
        source_type=LEDGER_SOURCE,
        source_id=intent.id,
        description=f"{intent.provider.value} {receipt} for intent {intent.id}",
        clock=clock,
    )
    if paid_for is PaidFor.SUSPENSE:
        # Another prompt paid the order first, or it was cancelled: kept for a refund or a match.
        log.warning("intent %s settled with nothing left to pay for; held in suspense", intent.id)
    intent.status = IntentStatus.SUCCEEDED
    intent.result_code, intent.failure_class = "0", None
    intent.resolved_at = intent.updated_at = now
    return Settlement(payment=payment, created=True)


async def _fail_intent(
    session: AsyncSession, intent: PaymentIntent, code: str, desc: str, failure: FailureClass, clock: Clock
) -> bool:
    """Mark a not-yet-final intent failed (and its renewal attempt); False when already final."""
    if intent.status not in (IntentStatus.CREATED, IntentStatus.PENDING, IntentStatus.UNKNOWN):
        return False
    intent.status = IntentStatus.FAILED
    intent.result_code, intent.result_desc, intent.failure_class = code, desc[:255], failure
    intent.resolved_at = intent.updated_at = clock.now()
    if intent.subscription_id is not None:
        await record_renewal_failure(session, intent, clock)
    return True


async def _apply_callback(session: AsyncSession, event: WebhookEvent, callback: StkCallback, clock: Clock) -> None:
    intent = await session.scalar(
        sa.select(PaymentIntent)
        .where(
            PaymentIntent.provider == Provider.MPESA, PaymentIntent.provider_request_id == callback.checkout_request_id
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if intent is None:
        # The push's answer may not be recorded yet; start_stk_payment and the poller retry it.
        event.error = f"no payment intent with CheckoutRequestID {callback.checkout_request_id} yet"
        return
    event.institution_id = intent.institution_id
    if callback.succeeded:
        assert callback.receipt is not None and callback.amount_minor is not None
        try:
            async with session.begin_nested():
                settlement = await settle_intent(
                    session,
                    intent,
                    callback.receipt,
                    callback.amount_minor,
                    callback.paid_at or clock.now(),
                    SettlementSource.CALLBACK,
                    clock=clock,
                    webhook_event_id=event.id,
                )
        except Conflict as exc:
            if exc.code not in SETTLEMENT_REFUSALS:
                raise  # transient (a busy lock, say): the row stays received and is retried
            inbox.finish(
                event,
                WebhookStatus.IGNORED,
                clock,
                exc.detail if exc.detail == AWAITING_QUERY else f"anomaly: {exc.detail}",
            )
            return
        except IntegrityError:
            # The receipt already settled another intent: never credit it twice.
            inbox.finish(event, WebhookStatus.IGNORED, clock, f"anomaly: receipt {callback.receipt} already recorded")
            return
        if not settlement.created:
            payment = settlement.payment
            if payment.provider_receipt == intent.provider_request_id:
                # Settled by a Query, which carries no receipt: the callback brings the real one.
                payment.provider_receipt, payment.webhook_event_id = callback.receipt, event.id
            inbox.finish(event, WebhookStatus.IGNORED, clock, "duplicate: the intent is already settled")
            return
        inbox.finish(event, WebhookStatus.PROCESSED, clock)
        return
    failure = callback.failure_class or FailureClass.TRANSIENT
    if intent.status is IntentStatus.SUCCEEDED:
        inbox.finish(
            event,
            WebhookStatus.IGNORED,
            clock,
            f"anomaly: ResultCode {callback.result_code} ({callback.result_desc}) after the intent settled",
        )
    elif await _fail_intent(session, intent, callback.result_code, callback.result_desc, failure, clock):
        inbox.finish(event, WebhookStatus.PROCESSED, clock)
    else:
        inbox.finish(event, WebhookStatus.IGNORED, clock, "duplicate: the intent had already failed")


async def settle_from_callback(session: AsyncSession, event_id: uuid.UUID, clock: Clock) -> None:
    """Apply one stored STK callback to its intent; processing a row twice changes nothing."""
    event = await inbox.claim(session, event_id)
    if event is None:
        return
    try:
        callback = parse_stk_callback(event.body.encode())
    except InvalidInput as exc:
        inbox.finish(event, WebhookStatus.FAILED, clock, exc.detail)
        return
    await _apply_callback(session, event, callback, clock)


async def process_waiting_events(session: AsyncSession, checkout_request_id: str, clock: Clock) -> int:
    """Settle inbox rows for one CheckoutRequestID still ``received``, oldest first."""
    ids = await session.scalars(
        sa.select(WebhookEvent.id)
        .where(
            WebhookEvent.provider == Provider.MPESA,
            WebhookEvent.kind == STK_CALLBACK_KIND,
            WebhookEvent.event_key == checkout_request_id,
            WebhookEvent.status == WebhookStatus.RECEIVED,
        )
        .order_by(WebhookEvent.received_at, WebhookEvent.id)
    )
    waiting = list(ids)
    for event_id in waiting:
        await settle_from_callback(session, event_id, clock)
    return len(waiting)


# Polling -----------------------------------------------------------------------------------


async def apply_stk_answer(
    session: AsyncSession, intent_id: uuid.UUID, answer: StkQueryResult, clock: Clock
) -> IntentStatus:
    """Apply what STK Query said about one intent; the intent's status afterwards."""
    intent = await locked_intent(session, intent_id)
    if answer.status is StkStatus.SUCCEEDED:
        # Query carries no receipt number: the CheckoutRequestID stands in until a callback
        # or the statement brings the real one.
        await settle_intent(
            session,
            intent,
            intent.provider_request_id or "",
            intent.amount_minor,
            clock.now(),
            SettlementSource.QUERY,
            clock=clock,
        )
    elif answer.status is StkStatus.FAILED:
        await _fail_intent(
            session,
            intent,
            answer.result_code or "",
            answer.result_desc,
            answer.failure_class or FailureClass.TRANSIENT,
            clock,
        )
    if answer.status is not StkStatus.PENDING:
        # A contested success has its answer now: stop asking about it.
        await session.execute(
            sa.update(WebhookEvent)
            .where(WebhookEvent.event_key == intent.provider_request_id, WebhookEvent.error == AWAITING_QUERY)
            .values(error=f"{AWAITING_QUERY}; STK Query answered {answer.status.value}")
        )
    return intent.status


async def apply_query_result(
    session: AsyncSession, intent_id: uuid.UUID, gateway: MpesaGateway, clock: Clock
) -> IntentStatus:
    """Ask STK Query about one intent and apply the answer, in the caller's transaction."""
    intent = await session.get(PaymentIntent, intent_id)
    if intent is None or intent.provider_request_id is None:
        raise NotFound("payment intent with a CheckoutRequestID not found")
    return await apply_stk_answer(session, intent_id, await gateway.stk_query(intent.provider_request_id), clock)


async def query_intent(
    *, sessions: async_sessionmaker[AsyncSession], intent_id: uuid.UUID, gateways: Gateways, clock: Clock
) -> IntentStatus:
    """Ask the intent's provider about it (STK Query, or an Airtel enquiry) through its school's
    gateway, and apply the answer; no transaction is held while the provider answers."""
    async with sessions() as session:
        intent = await session.get(PaymentIntent, intent_id)
        if intent is None or intent.provider_request_id is None:
            raise NotFound("payment intent with a provider request id not found")
        provider, request_id = intent.provider, intent.provider_request_id
        if provider is Provider.AIRTEL:
            airtel = await gateways.airtel_for(session, intent.institution_id)
        else:
            mpesa = await gateways.mpesa_for(session, intent.institution_id)
    if provider is Provider.AIRTEL:
        enquiry = await airtel.enquire(request_id)
        async with sessions() as session, session.begin():
            return await apply_airtel_enquiry(session, intent_id, enquiry, clock)
    answer = await mpesa.stk_query(request_id)
    async with sessions() as session, session.begin():
        return await apply_stk_answer(session, intent_id, answer, clock)


async def poll_silent_intents(
    *, sessions: async_sessionmaker[AsyncSession], gateways: Gateways, clock: Clock, older_than: timedelta
) -> dict[uuid.UUID, IntentStatus]:
    """Ask about every intent the provider has not answered for ``older_than`` (pending or
    unknown), and every failed M-Pesa one whose inbox holds a later success; settle or fail them.

    Inbox rows still waiting for their intent are retried first. Returns each asked intent's
    status afterwards; one the provider still calls pending stays pending.
    """
    cutoff = clock.now() - older_than
    async with sessions() as session, session.begin():
        waiting = await session.scalars(
            sa.select(WebhookEvent.event_key).where(
                WebhookEvent.provider == Provider.MPESA,
                WebhookEvent.kind == STK_CALLBACK_KIND,
                WebhookEvent.status == WebhookStatus.RECEIVED,
            )
        )
        for key in sorted(set(waiting)):
            await process_waiting_events(session, key, clock)
    contested = sa.select(WebhookEvent.event_key).where(
        WebhookEvent.provider == Provider.MPESA, WebhookEvent.error == AWAITING_QUERY
    )
    async with sessions() as session:
        candidates: Sequence[uuid.UUID] = list(
            await session.scalars(
                sa.select(PaymentIntent.id)
                .where(
                    PaymentIntent.provider_request_id.is_not(None),
                    sa.or_(
                        sa.and_(
                            PaymentIntent.status.in_([IntentStatus.PENDING, IntentStatus.UNKNOWN]),
                            sa.func.coalesce(PaymentIntent.requested_at, PaymentIntent.created_at) <= cutoff,
                        ),
                        sa.and_(
                            PaymentIntent.provider == Provider.MPESA,
                            PaymentIntent.status == IntentStatus.FAILED,
                            PaymentIntent.provider_request_id.in_(contested),
                        ),
                    ),
                )
                .order_by(PaymentIntent.created_at, PaymentIntent.id)
            )
        )
    results: dict[uuid.UUID, IntentStatus] = {}
    for intent_id in candidates:
        try:
            results[intent_id] = await query_intent(
                sessions=sessions, intent_id=intent_id, gateways=gateways, clock=clock
            )
        except PaymentGatewayError as exc:
            log.warning("asking the provider about intent %s failed: %s", intent_id, exc.detail)
    return results


# Airtel Money --------------------------------------------------------------------------------

AIRTEL_CALLBACK_KIND = "airtel_callback"


async def apply_airtel_enquiry(
    session: AsyncSession, intent_id: uuid.UUID, result: AirtelEnquiryResult, clock: Clock
) -> IntentStatus:
    """Apply an enquiry answer: only ``TS`` settles, ``TF``/``TE`` fail, ``TA``/``TIP`` wait."""
    intent = await locked_intent(session, intent_id)
    if result.succeeded:
        await settle_intent(
            session,
            intent,
            result.airtel_money_id or intent.provider_request_id or "",
            intent.amount_minor if result.amount_minor is None else result.amount_minor,
            clock.now(),
            SettlementSource.QUERY,
            clock=clock,
        )
    elif result.status.is_final:
        if intent.status is IntentStatus.SUCCEEDED:
            log.warning("Airtel enquiry answered %s for settled intent %s: anomaly", result.status, intent.id)
        await _fail_intent(
            session,
            intent,
            result.response_code or result.status.value,
            result.message,
            result.failure_class or FailureClass.TRANSIENT,
            clock,
        )
    return intent.status


async def process_airtel_callback(
    *, sessions: async_sessionmaker[AsyncSession], event_id: uuid.UUID, gateways: Gateways, clock: Clock
) -> WebhookEvent:
    """A stored Airtel callback only triggers an enquiry: the callback never moves money."""
    async with sessions() as session:
        event = await session.get(WebhookEvent, event_id)
        if event is None:
            raise NotFound("webhook event not found")
        if event.status is not WebhookStatus.RECEIVED:
            return event
        intent_id = await session.scalar(
            sa.select(PaymentIntent.id).where(
                PaymentIntent.provider == Provider.AIRTEL, PaymentIntent.provider_request_id == event.event_key
            )
        )
    outcome, note = WebhookStatus.IGNORED, "not one of our transactions"
    if intent_id is not None:
        try:
            status = await query_intent(sessions=sessions, intent_id=intent_id, gateways=gateways, clock=clock)
            outcome, note = WebhookStatus.PROCESSED, f"enquiry: intent {status.value}"
        except Conflict as exc:
            outcome, note = WebhookStatus.IGNORED, f"anomaly: {exc.detail}"
    async with sessions() as session, session.begin():
        claimed = await inbox.claim(session, event_id)
        if claimed is not None:
            if intent_id is not None:
                claimed.institution_id = await session.scalar(
                    sa.select(PaymentIntent.institution_id).where(PaymentIntent.id == intent_id)
                )
            inbox.finish(claimed, outcome, clock, note)
        return claimed or event
