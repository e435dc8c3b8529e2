"""Paybill (M-Pesa C2B) payments: validate the account number, record the confirmation,
apply it to what the learner owes, and park what cannot be matched in suspense.

A learner pays to the school's paybill with their account number (``Learner.account_no``, ten
digits with a Luhn check digit) typed on a keypad, so typos are expected: a number that fails
the check or names nobody is rejected at validation when Safaricom has enabled it, and lands in
the suspense account otherwise, where an admin matches it later (``match_suspense``). Candidate
learners (one digit off, or two neighbours swapped) are offered to the admin, never applied
automatically.

A confirmation is applied, in this order, to: the learner's oldest pending order of exactly
that amount; a subscription renewal waiting for exactly that amount; otherwise suspense,
attributed to the learner. Each confirmation is a ``Payment`` unique on its TransID, so a
re-delivered confirmation cannot pay twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_visible, tenant_filter
from lms_domain.clock import Clock
from lms_domain.commerce.models import Order, OrderStatus
from lms_domain.db import lock
from lms_domain.errors import Conflict, InvalidInput, NotFound
from lms_domain.ids import luhn_valid, new_id
from lms_domain.ledger.accounts import SUSPENSE
from lms_domain.ledger.models import JournalEntry, LedgerAccount, Posting
from lms_domain.ledger.service import post_entry
from lms_domain.payments import inbox
from lms_domain.payments.booking import PaidFor, book_payment
from lms_domain.payments.models import (
    Payment,
    PaymentStatus,
    Provider,
    ProviderAccount,
    ProviderAccountKind,
    WebhookStatus,
)
from lms_domain.payments.mpesa import (
    C2B_INVALID_ACCOUNT,
    C2B_INVALID_AMOUNT,
    C2BPayment,
    parse_c2b_payload,
)
from lms_domain.payments.renewals import renewal_awaiting_payment
from lms_domain.payments.settlement import clearing_account, fulfil_order, order_sale_postings
from lms_domain.subscriptions.models import Subscription
from lms_domain.tenancy.models import Learner

log = logging.getLogger("somo.payments.paybill")

VALIDATION_KIND = "c2b_validation"
CONFIRMATION_KIND = "c2b_confirmation"
LEDGER_SOURCE = "payment"
LEDGER_KIND = "c2b_settlement"
MATCH_KIND = "suspense_match"


def account_digits(bill_ref: str) -> str:
    """What the customer meant to type: the digits of ``BillRefNumber`` (spaces and dashes go)."""
    return "".join(ch for ch in bill_ref if ch.isdigit())


def near_misses(account_no: str) -> list[str]:
    """Luhn-valid numbers one typo away: a digit changed, or two neighbours swapped."""
    found: set[str] = set()
    for i, ch in enumerate(account_no):
        for digit in "0123456789":
            if digit != ch:
                found.add(account_no[:i] + digit + account_no[i + 1 :])
        if i + 1 < len(account_no) and account_no[i] != account_no[i + 1]:
            found.add(account_no[:i] + account_no[i + 1] + account_no[i] + account_no[i + 2 :])
    return sorted(number for number in found if luhn_valid(number))


async def learner_for_account(session: AsyncSession, bill_ref: str) -> Learner | None:
    """The learner whose account number the customer typed, or ``None``."""
    digits = account_digits(bill_ref)
    if not luhn_valid(digits):
        return None
    return await session.scalar(sa.select(Learner).where(Learner.account_no == digits))


async def paybill_owner(session: AsyncSession, shortcode: str) -> uuid.UUID | None:
    """The institution whose active paybill account is ``shortcode``."""
    return await session.scalar(
        sa.select(ProviderAccount.institution_id)
        .where(
            ProviderAccount.provider == Provider.MPESA,
            ProviderAccount.kind == ProviderAccountKind.PAYBILL,
            ProviderAccount.shortcode == shortcode,
            ProviderAccount.is_active.is_(True),
        )
        .order_by(ProviderAccount.created_at)
        .limit(1)
    )


@dataclass(frozen=True, slots=True)
class ValidationDecision:
    """The reply to a C2B validation request (§7.4): ``ResultCode`` "0" accepts."""

    result_code: str
    result_desc: str

    @property
    def accepted(self) -> bool:
        return self.result_code == "0"


async def validate_paybill(session: AsyncSession, payment: C2BPayment) -> ValidationDecision:
    """Accept a payment only to a learner's account number, so a typo never leaves the phone."""
    if payment.amount_minor <= 0:
        return ValidationDecision(C2B_INVALID_AMOUNT, "Rejected")
    if await learner_for_account(session, payment.bill_ref) is None:
        return ValidationDecision(C2B_INVALID_ACCOUNT, "Rejected")
    return ValidationDecision("0", "Accepted")


async def _pending_order(session: AsyncSession, learner: Learner, amount_minor: int) -> Order | None:
    order_id = await session.scalar(
        sa.select(Order.id)
        .where(
            Order.learner_id == learner.id,
            Order.status == OrderStatus.PENDING,
            Order.total_minor == amount_minor,
        )
        .order_by(Order.created_at, Order.id)
        .limit(1)
    )
    return await lock(session, Order, order_id) if order_id is not None else None


async def _payable(
    session: AsyncSession, payment: Payment, learner: Learner | None
) -> tuple[Order | None, Subscription | None]:
    """What a learner's paybill payment pays: their oldest pending order of exactly that amount,
    else a renewal waiting for exactly that amount, else nothing (suspense)."""
    if learner is None:
        return None, None
    order = await _pending_order(session, learner, payment.amount_minor)
    if order is not None:
        return order, None
    return None, await renewal_awaiting_payment(session, learner.id, payment.amount_minor, payment.paid_at)


async def record_confirmation(session: AsyncSession, event_id: uuid.UUID, clock: Clock) -> None:
    """Turn one stored C2B confirmation into a Payment, applied or in suspense; idempotent."""
    event = await inbox.claim(session, event_id)
    if event is None:
        return
    try:
        c2b = parse_c2b_payload(event.body.encode())
    except InvalidInput as exc:
        inbox.finish(event, WebhookStatus.FAILED, clock, exc.detail)
        return
    learner = await learner_for_account(session, c2b.bill_ref)
    owner = await paybill_owner(session, c2b.shortcode)
    if learner is not None and owner is not None and owner != learner.institution_id:
        # Paid into one school's paybill with another school's account number: the money is
        # the paybill owner's to hold, flagged for review, never credited across schools.
        log.warning("paybill %s payment %s names a learner of another school", c2b.shortcode, c2b.trans_id)
        learner = None
    institution_id = learner.institution_id if learner is not None else owner
    if institution_id is None:
        # No school to book it to: reconciliation reports it as missing in the ledger.
        inbox.finish(event, WebhookStatus.FAILED, clock, f"no institution owns paybill {c2b.shortcode}")
        return
    event.institution_id = institution_id
    now = clock.now()
    payment = Payment(
        id=new_id(),
        institution_id=institution_id,
        learner_id=learner.id if learner is not None else None,
        provider=Provider.MPESA,
        provider_receipt=c2b.trans_id,
        amount_minor=c2b.amount_minor,
        msisdn=c2b.msisdn[:16] or None,
        account_reference=c2b.bill_ref[:64],
        payer_name=c2b.payer_name or None,
        paid_at=c2b.trans_time or now,
        webhook_event_id=event.id,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(payment)
    except IntegrityError:
        inbox.finish(event, WebhookStatus.IGNORED, clock, f"duplicate: receipt {c2b.trans_id} already recorded")
        return
    order, subscription = await _payable(session, payment, learner)
    paid_for = await book_payment(
        session,
        payment,
        order=order,
        subscription=subscription,
        kind=LEDGER_KIND,
        source_type=LEDGER_SOURCE,
        source_id=payment.id,
        description=f"M-Pesa paybill {c2b.trans_id} account {c2b.bill_ref[:20]}",
        clock=clock,
    )
    held = paid_for is PaidFor.SUSPENSE
    inbox.finish(event, WebhookStatus.PROCESSED, clock, "held in suspense" if held else None)


# Suspense ------------------------------------------------------------------------------------


_Select = TypeVar("_Select", bound="sa.Select[Any]")


def _suspense_postings_of(payment_id: Any, intent_id: Any) -> sa.ColumnElement[bool]:
    """Postings to suspense made for a payment: by a paybill entry (keyed on the payment) or by
    the settlement of the intent it came from."""
    return sa.and_(
        LedgerAccount.code == SUSPENSE,
        sa.or_(
            sa.and_(JournalEntry.source_type == LEDGER_SOURCE, JournalEntry.source_id == payment_id),
            sa.and_(JournalEntry.source_type == "payment_intent", JournalEntry.source_id == intent_id),
        ),
    )


def _suspense_joins(stmt: _Select) -> _Select:
    return stmt.join(JournalEntry, JournalEntry.id == Posting.entry_id).join(
        LedgerAccount, LedgerAccount.id == Posting.account_id
    )


async def suspense_balance(session: AsyncSession, payment: Payment) -> int:
    """What of ``payment`` still sits in suspense (a positive number of minor units)."""
    total = await session.scalar(
        _suspense_joins(sa.select(sa.func.coalesce(sa.func.sum(Posting.amount_minor), 0)).select_from(Posting)).where(
            _suspense_postings_of(payment.id, payment.intent_id)
        )
    )
    return -int(total or 0)


@dataclass(frozen=True, slots=True)
class SuspenseItem:
    payment: Payment
    held_minor: int
    candidates: Sequence[Learner]


async def list_suspense(session: AsyncSession, actor: Actor, *, limit: int = 100) -> list[SuspenseItem]:
    """Payments of the actor's institution still (partly) in suspense, newest first, each with
    the learners whose account number is one typo from what the payer typed."""
    actor.require_admin()
    held: Any = -sa.func.sum(Posting.amount_minor)
    stmt = (
        _suspense_joins(sa.select(Payment, held).select_from(Posting))
        .join(Payment, _suspense_postings_of(Payment.id, Payment.intent_id))
        .group_by(Payment.id)
        .having(held > 0)
        .order_by(Payment.paid_at.desc(), Payment.id.desc())
        .limit(limit)
    )
    rows = (await session.execute(tenant_filter(stmt, Payment.institution_id, actor))).all()
    # One lookup for every payment's candidates: the numbers one typo from what was typed.
    wanted = {
        payment.id: near_misses(account_digits(payment.account_reference))
        for payment, _ in rows
        if payment.learner_id is None and payment.account_reference
    }
    numbers = {number for near in wanted.values() for number in near}
    by_number: dict[tuple[uuid.UUID, str], Learner] = {}
    if numbers:
        found = await session.scalars(sa.select(Learner).where(Learner.account_no.in_(numbers)))
        by_number = {(learner.institution_id, learner.account_no): learner for learner in found}
    return [
        SuspenseItem(
            payment=payment,
            held_minor=int(held_minor),
            candidates=[
                by_number[(payment.institution_id, number)]
                for number in wanted.get(payment.id, [])
                if (payment.institution_id, number) in by_number
            ],
        )
        for payment, held_minor in rows
    ]


async def match_suspense(
    *,
    session: AsyncSession,
    actor: Actor,
    payment_id: uuid.UUID,
    learner_id: uuid.UUID,
    order_id: uuid.UUID | None,
    clock: Clock,
) -> Payment:
    """An admin attributes a suspense payment to a learner and, with ``order_id``, pays that
    order from it. Matching twice is refused; the ledger moves the money out of suspense once."""
    actor.require_admin()
    payment = await lock(session, Payment, payment_id)
    ensure_visible(payment, actor, what="payment")
    assert payment is not None
    if payment.status is not PaymentStatus.SETTLED:
        raise Conflict(f"the payment is {payment.status.value}", code="payment_not_settled")
    held = await suspense_balance(session, payment)
    if held <= 0:
        raise Conflict("the payment is not in suspense", code="payment_not_in_suspense")
    learner = await session.get(Learner, learner_id)
    if learner is None or learner.institution_id != payment.institution_id:
        raise NotFound("learner not found")
    if payment.learner_id is not None and payment.learner_id != learner.id:
        raise Conflict("the payment is already attributed to another learner", code="payment_attributed")
    payment.learner_id, payment.updated_at = learner.id, clock.now()
    if order_id is None:
        await session.flush()
        return payment
    order = await lock(session, Order, order_id)
    if order is None or order.institution_id != payment.institution_id or order.learner_id != learner.id:
        raise NotFound("order not found")
    if order.total_minor != held:
        raise InvalidInput(
            f"the order totals {order.total_minor} but {held} is held; only exact matches are applied",
            code="suspense_amount_mismatch",
        )
    # The sale postings debit the clearing account; this money is in suspense already.
    clearing = clearing_account(payment.provider)
    postings = await order_sale_postings(session, order, payment)
    moved = [(SUSPENSE if code == clearing else code, amount) for code, amount in postings]
    await post_entry(
        session,
        institution_id=payment.institution_id,
        kind=MATCH_KIND,
        source_type=LEDGER_SOURCE,
        source_id=payment.id,
        occurred_at=clock.now(),
        description=f"suspense {payment.provider_receipt} matched to order {order.id}",
        postings=moved,
        currency=payment.currency,
    )
    await fulfil_order(session, order, payment=payment, paid_at=payment.paid_at, clock=clock)
    return payment
