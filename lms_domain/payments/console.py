"""What the admin console reads about money: payments and prompts found by receipt, phone or
provider id, an intent's timeline, the webhook inbox, anomalies, ledger balances, suspense
and refunds. Read-only and tenant-scoped; the writes stay in the flows the REST API calls.

The webhook inbox is written before anything knows whose callback it is, so a row's school
is its ``institution_id`` (set once processing matched it) or, while that is still empty, the
school of the intent its event key names. A row no school can claim (an unknown
CheckoutRequestID, a paybill nobody owns) is shown to platform admins only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from lms_domain.access import Actor, ensure_visible, tenant_filter
from lms_domain.commerce.models import Invoice, Order, OrderStatus, Refund, RefundStatus
from lms_domain.errors import InvalidInput, NotFound
from lms_domain.ledger.accounts import CHART, SPEC_BY_CODE, as_reported
from lms_domain.ledger.models import JournalEntry, LedgerAccount, Posting
from lms_domain.ledger.service import trial_balance
from lms_domain.pagination import CURSOR_PATTERN, keyset_page
from lms_domain.payments import paybill
from lms_domain.payments.models import (
    FailureClass,
    IntentStatus,
    Payment,
    PaymentIntent,
    PaymentStatus,
    Provider,
    WebhookEvent,
    WebhookStatus,
)
from lms_domain.payments.schemas import LedgerAccountBalance, LedgerBalances
from lms_domain.phones import normalize_msisdn
from lms_domain.subscriptions.models import SubscriptionRenewalAttempt
from lms_domain.tenancy.models import Institution, Learner, Phone, User

PAGE_SIZE = 50
EXPORT_LIMIT = 10_000  # a CSV export takes everything that matches, up to this many rows
AWAITING_QUERY_PREFIX = "awaiting STK Query"
ANOMALY_PREFIX = "anomaly:"
Sort = Literal["created", "-created", "amount", "-amount"]


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str = Field(default="", max_length=100)
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN)
    limit: int = Field(default=PAGE_SIZE, ge=1, le=EXPORT_LIMIT)


class PaymentQuery(_Query):
    """Search settled payments: receipt, phone, account number, CheckoutRequestID, Airtel id."""

    provider: Provider | None = None
    status: PaymentStatus | None = None
    sort: Sort = "-created"


class IntentQuery(_Query):
    """Search payment prompts (intents) the same way."""

    provider: Provider | None = None
    status: IntentStatus | None = None
    failure_class: FailureClass | None = None
    sort: Sort = "-created"


class InboxQuery(_Query):
    provider: Provider | None = None
    status: WebhookStatus | None = None
    kind: str = Field(default="", max_length=32)


class RefundQuery(_Query):
    status: RefundStatus | None = None
    sort: Sort = "-created"


# What the pages show ---------------------------------------------------------------------


class PaymentRow(BaseModel):
    id: uuid.UUID
    institution_id: uuid.UUID
    intent_id: uuid.UUID | None
    learner_id: uuid.UUID | None
    learner_name: str | None
    provider: Provider
    provider_receipt: str
    amount_minor: int
    currency: str
    status: PaymentStatus
    msisdn: str | None
    account_reference: str | None
    payer_name: str | None
    paid_at: datetime
    provider_request_id: str | None
    webhook_event_id: uuid.UUID | None


class IntentRow(BaseModel):
    id: uuid.UUID
    institution_id: uuid.UUID
    learner_id: uuid.UUID | None
    learner_name: str | None
    order_id: uuid.UUID | None
    subscription_id: uuid.UUID | None
    provider: Provider
    status: IntentStatus
    amount_minor: int
    currency: str
    msisdn: str
    account_reference: str
    provider_request_id: str | None
    merchant_request_id: str | None
    result_code: str | None
    result_desc: str | None
    failure_class: FailureClass | None
    created_at: datetime
    requested_at: datetime | None
    resolved_at: datetime | None
    receipt: str | None = None


class InboxEventOut(BaseModel):
    id: uuid.UUID
    institution_id: uuid.UUID | None
    provider: Provider
    kind: str
    event_key: str
    status: WebhookStatus
    error: str | None
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    remote_addr: str | None
    body: str
    intent_id: uuid.UUID | None = None


class PostingOut(BaseModel):
    account_code: str
    account_name: str
    amount_minor: int
    currency: str


class JournalEntryOut(BaseModel):
    id: uuid.UUID
    kind: str
    source_type: str
    source_id: uuid.UUID
    description: str
    occurred_at: datetime
    postings: list[PostingOut]


class RefundRow(BaseModel):
    id: uuid.UUID
    institution_id: uuid.UUID
    payment_id: uuid.UUID
    intent_id: uuid.UUID | None
    order_id: uuid.UUID | None
    provider: Provider
    provider_receipt: str
    payment_amount_minor: int
    learner_id: uuid.UUID | None
    learner_name: str | None
    amount_minor: int
    currency: str
    reason: str
    status: RefundStatus
    failure_reason: str | None
    provider_reference: str | None
    requested_by: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime


class RenewalStep(BaseModel):
    id: uuid.UUID
    subscription_id: uuid.UUID
    attempt_no: int
    dunning_step: int | None
    outcome: str
    approved_at: datetime | None


class TimelineStep(BaseModel):
    """One thing that happened to a prompt; ``kind`` says which, the page words it."""

    at: datetime | None
    kind: Literal["created", "requested", "callback", "resolved", "payment", "ledger", "refund", "renewal"]
    ref: str = ""
    status: str = ""
    detail: str = ""


class IntentTimeline(BaseModel):
    intent: IntentRow
    payment: PaymentRow | None
    callbacks: list[InboxEventOut]
    entries: list[JournalEntryOut]
    refunds: list[RefundRow]
    renewals: list[RenewalStep]
    settled_by_query: bool
    steps: list[TimelineStep]


class PaymentDetail(BaseModel):
    """A payment that came without a prompt (paybill, by hand): its callback and its books."""

    payment: PaymentRow
    callback: InboxEventOut | None
    entries: list[JournalEntryOut]
    refunds: list[RefundRow]
    held_minor: int


class Anomalies(BaseModel):
    """What needs a person, newest first in each group."""

    poll_after_s: int
    stuck: list[IntentRow]
    configuration: list[IntentRow]
    contested: list[InboxEventOut]
    failed_events: list[InboxEventOut]
    unclaimed_events: list[InboxEventOut]
    failed_refunds: list[RefundRow]

    @property
    def total(self) -> int:
        return (
            len(self.stuck)
            + len(self.configuration)
            + len(self.contested)
            + len(self.failed_events)
            + len(self.unclaimed_events)
            + len(self.failed_refunds)
        )


class OrderChoice(BaseModel):
    id: uuid.UUID
    invoice_number: str | None
    total_minor: int
    currency: str


class LearnerChoice(BaseModel):
    id: uuid.UUID
    display_name: str
    account_no: str
    phone: str | None
    orders: list[OrderChoice] = Field(default_factory=list)


class SuspenseRow(BaseModel):
    payment: PaymentRow
    held_minor: int
    candidates: list[LearnerChoice]


class InstitutionChoice(BaseModel):
    id: uuid.UUID
    name: str


# Shared helpers ---------------------------------------------------------------------------


def phone_forms(text: str) -> list[str]:
    """The ways a number is stored (``+2547...``, ``2547...``, ``07...``), or [] if ``text``
    is not a phone number at all."""
    digits = text.replace(" ", "").replace("-", "")
    if not digits or not digits.lstrip("+").isdigit() or len(digits.lstrip("+")) < 9:
        return []
    try:
        e164 = normalize_msisdn(digits)
    except InvalidInput:
        return []
    national = e164[4:] if e164.startswith("+254") else e164[1:]
    return [e164, e164[1:], "0" + national]


def learner_condition(text: str) -> sa.ColumnElement[bool]:
    """Learners whose name contains ``text``, whose account number it is, or whose phone it is
    (typed any local way)."""
    text = text.strip()
    conditions: list[sa.ColumnElement[bool]] = [
        sa.func.lower(Learner.display_name).contains(text.lower(), autoescape=True),
        Learner.account_no == text.replace(" ", ""),
    ]
    forms = phone_forms(text)
    if forms:
        conditions.append(Learner.phone_id.in_(sa.select(Phone.id).where(Phone.e164 == forms[0])))
    return sa.or_(*conditions)


def _day_bounds(stmt: Any, column: Any, since: datetime | None, until: datetime | None) -> Any:
    if since is not None:
        stmt = stmt.where(column >= since)
    if until is not None:
        stmt = stmt.where(column < until)
    return stmt


def _sorting(sort: str, created: Any, amount: Any) -> tuple[Any, bool]:
    return (amount if sort.lstrip("-") == "amount" else created), sort.startswith("-")


def _payment_row(payment: Payment, learner_name: str | None, request_id: str | None) -> PaymentRow:
    return PaymentRow(
        id=payment.id,
        institution_id=payment.institution_id,
        intent_id=payment.intent_id,
        learner_id=payment.learner_id,
        learner_name=learner_name,
        provider=payment.provider,
        provider_receipt=payment.provider_receipt,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        status=payment.status,
        msisdn=payment.msisdn,
        account_reference=payment.account_reference,
        payer_name=payment.payer_name,
        paid_at=payment.paid_at,
        provider_request_id=request_id,
        webhook_event_id=payment.webhook_event_id,
    )


def intent_row(intent: PaymentIntent, learner_name: str | None, receipt: str | None) -> IntentRow:
    return IntentRow(
        id=intent.id,
        institution_id=intent.institution_id,
        learner_id=intent.learner_id,
        learner_name=learner_name,
        order_id=intent.order_id,
        subscription_id=intent.subscription_id,
        provider=intent.provider,
        status=intent.status,
        amount_minor=intent.amount_minor,
        currency=intent.currency,
        msisdn=intent.msisdn,
        account_reference=intent.account_reference,
        provider_request_id=intent.provider_request_id,
        merchant_request_id=intent.merchant_request_id,
        result_code=intent.result_code,
        result_desc=intent.result_desc,
        failure_class=intent.failure_class,
        created_at=intent.created_at,
        requested_at=intent.requested_at,
        resolved_at=intent.resolved_at,
        receipt=receipt,
    )


def _event_out(event: WebhookEvent, intent_id: uuid.UUID | None = None) -> InboxEventOut:
    return InboxEventOut(
        id=event.id,
        institution_id=event.institution_id,
        provider=event.provider,
        kind=event.kind,
        event_key=event.event_key,
        status=event.status,
        error=event.error,
        attempts=event.attempts,
        received_at=event.received_at,
        processed_at=event.processed_at,
        remote_addr=event.remote_addr,
        body=event.body,
        intent_id=intent_id,
    )


# Payments and prompts ---------------------------------------------------------------------


async def search_payments(
    *, session: AsyncSession, actor: Actor, query: PaymentQuery
) -> tuple[list[PaymentRow], str | None]:
    """Settled and reversed payments of the actor's school(s) matching the search."""
    actor.require_admin()
    stmt: Any = (
        sa.select(Payment, Learner.display_name, PaymentIntent.provider_request_id)
        .outerjoin(Learner, Learner.id == Payment.learner_id)
        .outerjoin(PaymentIntent, PaymentIntent.id == Payment.intent_id)
    )
    stmt = tenant_filter(stmt, Payment.institution_id, actor)
    text = query.q.strip()
    if text:
        conditions: list[sa.ColumnElement[bool]] = [
            sa.func.upper(Payment.provider_receipt) == text.upper(),
            Payment.account_reference == text,
            PaymentIntent.provider_request_id == text,
            PaymentIntent.merchant_request_id == text,
        ]
        forms = phone_forms(text)
        if forms:
            conditions += [Payment.msisdn.in_(forms), Payment.learner_id.in_(_learners_on(forms[0]))]
        stmt = stmt.where(sa.or_(*conditions))
    if query.provider is not None:
        stmt = stmt.where(Payment.provider == query.provider)
    if query.status is not None:
        stmt = stmt.where(Payment.status == query.status)
    stmt = _day_bounds(stmt, Payment.paid_at, query.since, query.until)
    column, descending = _sorting(query.sort, Payment.paid_at, Payment.amount_minor)
    rows, cursor = await keyset_page(
        session, stmt, Payment, column, descending=descending, cursor=query.cursor, limit=query.limit
    )
    return [_payment_row(payment, name, request_id) for payment, name, request_id in rows], cursor


def _learners_on(e164: str) -> sa.Select[uuid.UUID]:
    return sa.select(Learner.id).join(Phone, Phone.id == Learner.phone_id).where(Phone.e164 == e164)


async def search_intents(
    *, session: AsyncSession, actor: Actor, query: IntentQuery
) -> tuple[list[IntentRow], str | None]:
    """Payment prompts of the actor's school(s) matching the search, with the receipt if paid."""
    actor.require_admin()
    stmt: Any = (
        sa.select(PaymentIntent, Learner.display_name, Payment.provider_receipt)
        .outerjoin(Learner, Learner.id == PaymentIntent.learner_id)
        .outerjoin(Payment, Payment.intent_id == PaymentIntent.id)
    )
    stmt = tenant_filter(stmt, PaymentIntent.institution_id, actor)
    text = query.q.strip()
    if text:
        conditions: list[sa.ColumnElement[bool]] = [
            PaymentIntent.provider_request_id == text,
            PaymentIntent.merchant_request_id == text,
            sa.func.upper(Payment.provider_receipt) == text.upper(),
            PaymentIntent.account_reference == text,
        ]
        forms = phone_forms(text)
        if forms:
            conditions += [PaymentIntent.msisdn.in_(forms), PaymentIntent.learner_id.in_(_learners_on(forms[0]))]
        stmt = stmt.where(sa.or_(*conditions))
    if query.provider is not None:
        stmt = stmt.where(PaymentIntent.provider == query.provider)
    if query.status is not None:
        stmt = stmt.where(PaymentIntent.status == query.status)
    if query.failure_class is not None:
        stmt = stmt.where(PaymentIntent.failure_class == query.failure_class)
    stmt = _day_bounds(stmt, PaymentIntent.created_at, query.since, query.until)
    column, descending = _sorting(query.sort, PaymentIntent.created_at, PaymentIntent.amount_minor)
    rows, cursor = await keyset_page(
        session, stmt, PaymentIntent, column, descending=descending, cursor=query.cursor, limit=query.limit
    )
    return [intent_row(intent, name, receipt) for intent, name, receipt in rows], cursor


async def _entries(
    session: AsyncSession, institution_id: uuid.UUID, *keys: tuple[str, uuid.UUID]
) -> list[JournalEntryOut]:
    """The journal entries posted for these ``(source_type, source_id)`` keys, with postings."""
    if not keys:
        return []
    entries = list(
        await session.scalars(
            sa.select(JournalEntry)
            .where(
                JournalEntry.institution_id == institution_id,
                sa.or_(*(sa.and_(JournalEntry.source_type == t, JournalEntry.source_id == i) for t, i in keys)),
            )
            .order_by(JournalEntry.occurred_at, JournalEntry.id)
        )
    )
    postings: dict[uuid.UUID, list[PostingOut]] = {entry.id: [] for entry in entries}
    if entries:
        rows = await session.execute(
            sa.select(Posting.entry_id, LedgerAccount.code, Posting.currency, Posting.amount_minor)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(Posting.entry_id.in_(list(postings)))
            .order_by(Posting.entry_id, Posting.amount_minor.desc(), LedgerAccount.code)
        )
        for entry_id, code, currency, amount in rows:
            spec = SPEC_BY_CODE.get(code)
            postings[entry_id].append(
                PostingOut(
                    account_code=code,
                    account_name=spec.name if spec else code,
                    amount_minor=int(amount),
                    currency=currency,
                )
            )
    return [
        JournalEntryOut(
            id=entry.id,
            kind=entry.kind,
            source_type=entry.source_type,
            source_id=entry.source_id,
            description=entry.description,
            occurred_at=entry.occurred_at,
            postings=postings[entry.id],
        )
        for entry in entries
    ]


def _refund_stmt() -> Any:
    requester = aliased(User)
    decider = aliased(User)
    return (
        sa.select(Refund, Payment, Learner.display_name, requester.username, decider.username)
        .join(Payment, Payment.id == Refund.payment_id)
        .outerjoin(Learner, Learner.id == Payment.learner_id)
        .outerjoin(requester, requester.id == Refund.requested_by_id)
        .outerjoin(decider, decider.id == Refund.decided_by_id)
    )


def _refund_row(
    refund: Refund, payment: Payment, name: str | None, requester: str | None, decider: str | None
) -> RefundRow:
    return RefundRow(
        id=refund.id,
        institution_id=refund.institution_id,
        payment_id=payment.id,
        intent_id=payment.intent_id,
        order_id=refund.order_id,
        provider=payment.provider,
        provider_receipt=payment.provider_receipt,
        payment_amount_minor=payment.amount_minor,
        learner_id=payment.learner_id,
        learner_name=name,
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        reason=refund.reason,
        status=refund.status,
        failure_reason=refund.failure_reason,
        provider_reference=refund.provider_reference,
        requested_by=requester,
        decided_by=decider,
        decided_at=refund.decided_at,
        created_at=refund.created_at,
    )


async def _refunds_of(session: AsyncSession, payment_id: uuid.UUID) -> list[RefundRow]:
    rows = await session.execute(_refund_stmt().where(Refund.payment_id == payment_id).order_by(Refund.id))
    return [_refund_row(*row) for row in rows]


async def intent_timeline(*, session: AsyncSession, actor: Actor, intent_id: uuid.UUID) -> IntentTimeline:
    """Everything that happened to one prompt, in order: the request, each callback as it was
    received (raw), how it was resolved, the payment, its ledger entries, refunds and renewals."""
    actor.require_admin()
    intent = await session.get(PaymentIntent, intent_id)
    ensure_visible(intent, actor, what="payment intent")
    assert intent is not None
    learner_name = (
        await session.scalar(sa.select(Learner.display_name).where(Learner.id == intent.learner_id))
        if intent.learner_id
        else None
    )
    payment = await session.scalar(sa.select(Payment).where(Payment.intent_id == intent.id))
    callbacks: list[WebhookEvent] = []
    if intent.provider_request_id is not None:
        callbacks = list(
            await session.scalars(
                sa.select(WebhookEvent)
                .where(WebhookEvent.provider == intent.provider, WebhookEvent.event_key == intent.provider_request_id)
                .order_by(WebhookEvent.received_at, WebhookEvent.id)
            )
        )
    refunds = await _refunds_of(session, payment.id) if payment is not None else []
    keys: list[tuple[str, uuid.UUID]] = [("payment_intent", intent.id)]
    if payment is not None:
        keys.append(("payment", payment.id))
    keys += [("refund", refund.id) for refund in refunds]
    entries = await _entries(session, intent.institution_id, *keys)
    renewals = [
        RenewalStep(
            id=attempt.id,
            subscription_id=attempt.subscription_id,
            attempt_no=attempt.attempt_no,
            dunning_step=attempt.dunning_step,
            outcome=attempt.outcome.value,
            approved_at=attempt.approved_at,
        )
        for attempt in await session.scalars(
            sa.select(SubscriptionRenewalAttempt).where(SubscriptionRenewalAttempt.payment_intent_id == intent.id)
        )
    ]
    payment_row = _payment_row(payment, learner_name, intent.provider_request_id) if payment is not None else None
    # STK Query and Airtel enquiry answers are not stored; a settlement with no callback behind
    # it (the receipt standing in as the request id, or no inbox row) is what a query left.
    settled_by_query = payment is not None and payment.webhook_event_id is None
    steps = [TimelineStep(at=intent.created_at, kind="created", ref=str(intent.id), status=IntentStatus.CREATED.value)]
    if intent.requested_at is not None:
        steps.append(TimelineStep(at=intent.requested_at, kind="requested", ref=intent.provider_request_id or ""))
    steps += [
        TimelineStep(at=e.received_at, kind="callback", ref=str(e.id), status=e.status.value, detail=e.error or "")
        for e in callbacks
    ]
    if intent.resolved_at is not None:
        steps.append(
            TimelineStep(
                at=intent.resolved_at,
                kind="resolved",
                status=intent.status.value,
                detail=" ".join(p for p in (intent.result_code or "", intent.result_desc or "") if p),
            )
        )
    if payment is not None:
        steps.append(
            TimelineStep(
                at=payment.created_at,
                kind="payment",
                ref=payment.provider_receipt,
                status=payment.status.value,
                detail="query" if settled_by_query else "callback",
            )
        )
    steps += [TimelineStep(at=e.occurred_at, kind="ledger", ref=str(e.id), status=e.kind) for e in entries]
    steps += [TimelineStep(at=r.created_at, kind="refund", ref=str(r.id), status=r.status.value) for r in refunds]
    steps += [
        TimelineStep(at=r.approved_at, kind="renewal", ref=str(r.subscription_id), status=r.outcome) for r in renewals
    ]
    order = {"created": 0, "requested": 1, "callback": 2, "resolved": 3, "payment": 4, "ledger": 5, "refund": 6}
    steps.sort(key=lambda s: (s.at or intent.created_at, order.get(s.kind, 7)))
    return IntentTimeline(
        intent=intent_row(intent, learner_name, payment.provider_receipt if payment else None),
        payment=payment_row,
        callbacks=[_event_out(e, intent.id) for e in callbacks],
        entries=entries,
        refunds=refunds,
        renewals=renewals,
        settled_by_query=settled_by_query,
        steps=steps,
    )


async def payment_detail(*, session: AsyncSession, actor: Actor, payment_id: uuid.UUID) -> PaymentDetail:
    """A payment with the callback that brought it, its ledger entries and refunds."""
    actor.require_admin()
    payment = await session.get(Payment, payment_id)
    ensure_visible(payment, actor, what="payment")
    assert payment is not None
    learner_name = (
        await session.scalar(sa.select(Learner.display_name).where(Learner.id == payment.learner_id))
        if payment.learner_id
        else None
    )
    request_id = (
        await session.scalar(sa.select(PaymentIntent.provider_request_id).where(PaymentIntent.id == payment.intent_id))
        if payment.intent_id
        else None
    )
    event = await session.get(WebhookEvent, payment.webhook_event_id) if payment.webhook_event_id else None
    refunds = await _refunds_of(session, payment.id)
    keys: list[tuple[str, uuid.UUID]] = [("payment", payment.id), *(("refund", r.id) for r in refunds)]
    if payment.intent_id is not None:
        keys.append(("payment_intent", payment.intent_id))
    return PaymentDetail(
        payment=_payment_row(payment, learner_name, request_id),
        callback=_event_out(event) if event is not None else None,
        entries=await _entries(session, payment.institution_id, *keys),
        refunds=refunds,
        held_minor=await paybill.suspense_balance(session, payment),
    )


# The webhook inbox ------------------------------------------------------------------------


def _inbox_scope(stmt: sa.Select[Any], actor: Actor) -> sa.Select[Any]:
    """Rows the actor may read: their school's, or not yet claimed but naming their intent."""
    if actor.is_platform_admin:
        return stmt
    own = aliased(PaymentIntent)
    own_keys = sa.select(own.provider_request_id).where(
        own.institution_id == actor.institution_id, own.provider_request_id.is_not(None)
    )
    return stmt.where(
        sa.or_(
            WebhookEvent.institution_id == actor.institution_id,
            sa.and_(WebhookEvent.institution_id.is_(None), WebhookEvent.event_key.in_(own_keys)),
        )
    )


def _with_intent(stmt: sa.Select[Any]) -> sa.Select[Any]:
    return stmt.add_columns(PaymentIntent.id).outerjoin(
        PaymentIntent,
        sa.and_(
            PaymentIntent.provider_request_id == WebhookEvent.event_key,
            PaymentIntent.provider == WebhookEvent.provider,
        ),
    )


async def list_inbox(
    *, session: AsyncSession, actor: Actor, query: InboxQuery
) -> tuple[list[InboxEventOut], str | None]:
    """Webhook inbox rows, newest first, with their raw bodies."""
    actor.require_admin()
    stmt = _inbox_scope(_with_intent(sa.select(WebhookEvent)), actor)
    if query.provider is not None:
        stmt = stmt.where(WebhookEvent.provider == query.provider)
    if query.status is not None:
        stmt = stmt.where(WebhookEvent.status == query.status)
    if query.kind:
        stmt = stmt.where(WebhookEvent.kind == query.kind)
    if query.q.strip():
        stmt = stmt.where(WebhookEvent.event_key == query.q.strip())
    stmt = _day_bounds(stmt, WebhookEvent.received_at, query.since, query.until)
    rows, cursor = await keyset_page(
        session, stmt, WebhookEvent, WebhookEvent.received_at, descending=True, cursor=query.cursor, limit=query.limit
    )
    return [_event_out(event, intent_id) for event, intent_id in rows], cursor


async def get_inbox_event(*, session: AsyncSession, actor: Actor, event_id: uuid.UUID) -> InboxEventOut:
    actor.require_admin()
    row = (
        await session.execute(
            _inbox_scope(_with_intent(sa.select(WebhookEvent)), actor).where(WebhookEvent.id == event_id)
        )
    ).first()
    if row is None:
        raise NotFound("webhook event not found")
    return _event_out(row[0], row[1])


async def inbox_kinds(*, session: AsyncSession, actor: Actor) -> list[str]:
    """The kinds of callback the actor's inbox holds (for the filter)."""
    actor.require_admin()
    stmt = _inbox_scope(sa.select(WebhookEvent.kind).distinct(), actor)
    return sorted(await session.scalars(stmt))


# Anomalies --------------------------------------------------------------------------------


async def anomalies(
    *, session: AsyncSession, actor: Actor, now: datetime, poll_after: timedelta, limit: int = 100
) -> Anomalies:
    """Prompts the provider never answered (past the poll window), prompts failing on our own
    configuration, callbacks that contradict what was settled or await a query, callbacks whose
    processing failed or that nothing claimed, and refunds the provider refused."""
    actor.require_admin()
    cutoff = now - poll_after
    intents: Any = sa.select(PaymentIntent, Learner.display_name, sa.null()).outerjoin(
        Learner, Learner.id == PaymentIntent.learner_id
    )
    intents = tenant_filter(intents, PaymentIntent.institution_id, actor)
    newest = (PaymentIntent.created_at.desc(), PaymentIntent.id.desc())
    stuck = await session.execute(
        intents.where(
            PaymentIntent.status.in_([IntentStatus.CREATED, IntentStatus.PENDING, IntentStatus.UNKNOWN]),
            sa.func.coalesce(PaymentIntent.requested_at, PaymentIntent.created_at) <= cutoff,
        )
        .order_by(*newest)
        .limit(limit)
    )
    configuration = await session.execute(
        intents.where(
            PaymentIntent.status.in_([IntentStatus.FAILED, IntentStatus.UNKNOWN]),
            PaymentIntent.failure_class == FailureClass.CONFIGURATION,
        )
        .order_by(*newest)
        .limit(limit)
    )
    events = _inbox_scope(_with_intent(sa.select(WebhookEvent)), actor)
    latest = (WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
    contested = await session.execute(
        events.where(
            sa.or_(
                WebhookEvent.error.startswith(ANOMALY_PREFIX, autoescape=True),
                WebhookEvent.error.startswith(AWAITING_QUERY_PREFIX, autoescape=True),
            )
        )
        .order_by(*latest)
        .limit(limit)
    )
    failed = await session.execute(
        events.where(WebhookEvent.status == WebhookStatus.FAILED).order_by(*latest).limit(limit)
    )
    unclaimed = await session.execute(
        events.where(WebhookEvent.status == WebhookStatus.RECEIVED, WebhookEvent.received_at <= cutoff)
        .order_by(*latest)
        .limit(limit)
    )
    refunds = await session.execute(
        tenant_filter(_refund_stmt(), Refund.institution_id, actor)
        .where(Refund.status == RefundStatus.FAILED)
        .order_by(Refund.updated_at.desc(), Refund.id.desc())
        .limit(limit)
    )
    return Anomalies(
        poll_after_s=int(poll_after.total_seconds()),
        stuck=[intent_row(i, n, r) for i, n, r in stuck],
        configuration=[intent_row(i, n, r) for i, n, r in configuration],
        contested=[_event_out(e, i) for e, i in contested],
        failed_events=[_event_out(e, i) for e, i in failed],
        unclaimed_events=[_event_out(e, i) for e, i in unclaimed],
        failed_refunds=[_refund_row(*row) for row in refunds],
    )


# Ledger -----------------------------------------------------------------------------------


async def institution_choices(*, session: AsyncSession, actor: Actor) -> list[InstitutionChoice]:
    """The schools the actor may look at: every one for platform admins, else their own."""
    stmt = sa.select(Institution.id, Institution.name).where(Institution.deleted_at.is_(None))
    if not actor.is_platform_admin:
        stmt = stmt.where(Institution.id == actor.institution_id)
    return [InstitutionChoice(id=i, name=n) for i, n in await session.execute(stmt.order_by(Institution.name))]


async def ledger_balances(
    *,
    session: AsyncSession,
    actor: Actor,
    institution_id: uuid.UUID | None,
    currency: str = "KES",
    at: datetime | None = None,
) -> LedgerBalances:
    """Every chart account's balance for one school, as ``GET /ledger/balances`` answers it."""
    actor.require_admin()
    institution_id = institution_id or actor.institution_id
    if institution_id is None:
        raise InvalidInput("name the institution: institution_id", code="institution_required")
    if actor.institution_id is not None and institution_id != actor.institution_id:
        raise NotFound("institution not found")
    sums = await trial_balance(session, institution_id, currency, at)
    return LedgerBalances(
        institution_id=institution_id,
        currency=currency,
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


# Suspense ---------------------------------------------------------------------------------


async def _choices(session: AsyncSession, learners: Sequence[Learner], held_minor: int) -> list[LearnerChoice]:
    if not learners:
        return []
    ids = [learner.id for learner in learners]
    phone_rows = await session.execute(
        sa.select(Learner.id, Phone.e164).join(Phone, Phone.id == Learner.phone_id).where(Learner.id.in_(ids))
    )
    phones: dict[uuid.UUID, str] = {row.id: row.e164 for row in phone_rows}
    orders: dict[uuid.UUID, list[OrderChoice]] = {i: [] for i in ids}
    rows = await session.execute(
        sa.select(Order, Invoice.number)
        .outerjoin(Invoice, Invoice.order_id == Order.id)
        .where(Order.learner_id.in_(ids), Order.status == OrderStatus.PENDING, Order.total_minor == held_minor)
        .order_by(Order.created_at, Order.id)
    )
    for order, number in rows:
        orders[order.learner_id].append(
            OrderChoice(id=order.id, invoice_number=number, total_minor=order.total_minor, currency=order.currency)
        )
    return [
        LearnerChoice(
            id=learner.id,
            display_name=learner.display_name,
            account_no=learner.account_no,
            phone=phones.get(learner.id),
            orders=orders[learner.id],
        )
        for learner in learners
    ]


async def suspense(
    *, session: AsyncSession, actor: Actor, q: str = "", since: datetime | None = None, until: datetime | None = None
) -> list[SuspenseRow]:
    """``paybill.list_suspense`` (what ``GET /payments/suspense`` lists), narrowed by a search
    on receipt, phone, typed account number or payer name, and by the day paid."""
    items = await paybill.list_suspense(session, actor, limit=500)
    text = q.strip().lower()
    forms = set(phone_forms(q))
    rows: list[SuspenseRow] = []
    for item in items:
        payment = item.payment
        if since is not None and payment.paid_at < since:
            continue
        if until is not None and payment.paid_at >= until:
            continue
        haystack = [payment.provider_receipt, payment.account_reference or "", payment.payer_name or ""]
        if text and not (
            any(text in value.lower() for value in haystack) or (payment.msisdn is not None and payment.msisdn in forms)
        ):
            continue
        rows.append(
            SuspenseRow(
                payment=_payment_row(payment, None, None),
                held_minor=item.held_minor,
                candidates=await _choices(session, item.candidates, item.held_minor),
            )
        )
    return rows


async def suspense_item(
    *, session: AsyncSession, actor: Actor, payment_id: uuid.UUID, q: str = ""
) -> tuple[SuspenseRow, list[LearnerChoice]]:
    """One suspense payment, its one-typo candidates, and the school's learners matching ``q``
    (phone, name or account number), each with their pending orders of exactly the held amount."""
    actor.require_admin()
    payment = await session.get(Payment, payment_id)
    ensure_visible(payment, actor, what="payment")
    assert payment is not None
    held = await paybill.suspense_balance(session, payment)
    if held <= 0:
        raise NotFound("the payment is not in suspense")
    candidates: list[Learner] = []
    if payment.learner_id is not None:
        attributed = await session.get(Learner, payment.learner_id)
        candidates = [attributed] if attributed is not None else []
    elif payment.account_reference:
        near = paybill.near_misses(paybill.account_digits(payment.account_reference))
        if near:
            candidates = list(
                await session.scalars(
                    sa.select(Learner).where(
                        Learner.institution_id == payment.institution_id, Learner.account_no.in_(near)
                    )
                )
            )
    found: list[Learner] = []
    if q.strip():
        found = list(
            await session.scalars(
                sa.select(Learner)
                .where(
                    Learner.institution_id == payment.institution_id,
                    Learner.deleted_at.is_(None),
                    learner_condition(q),
                )
                .order_by(Learner.display_name, Learner.id)
                .limit(25)
            )
        )
    row = SuspenseRow(
        payment=_payment_row(payment, None, None),
        held_minor=held,
        candidates=await _choices(session, candidates, held),
    )
    return row, await _choices(session, found, held)


# Refunds ----------------------------------------------------------------------------------


async def list_refunds(
    *, session: AsyncSession, actor: Actor, query: RefundQuery
) -> tuple[list[RefundRow], str | None]:
    """Refunds of the actor's school(s) with the payment and learner behind each; search by
    receipt, learner name or phone."""
    actor.require_admin()
    stmt = tenant_filter(_refund_stmt(), Refund.institution_id, actor)
    if query.status is not None:
        stmt = stmt.where(Refund.status == query.status)
    text = query.q.strip()
    if text:
        conditions: list[sa.ColumnElement[bool]] = [
            sa.func.upper(Payment.provider_receipt) == text.upper(),
            Payment.learner_id.in_(sa.select(Learner.id).where(learner_condition(text))),
        ]
        forms = phone_forms(text)
        if forms:
            conditions.append(Payment.msisdn.in_(forms))
        stmt = stmt.where(sa.or_(*conditions))
    stmt = _day_bounds(stmt, Refund.created_at, query.since, query.until)
    column, descending = _sorting(query.sort, Refund.created_at, Refund.amount_minor)
    rows, cursor = await keyset_page(
        session, stmt, Refund, column, descending=descending, cursor=query.cursor, limit=query.limit
    )
    return [_refund_row(*row) for row in rows], cursor


async def refund_row(*, session: AsyncSession, actor: Actor, refund_id: uuid.UUID) -> RefundRow:
    actor.require_admin()
    row = (
        await session.execute(tenant_filter(_refund_stmt(), Refund.institution_id, actor).where(Refund.id == refund_id))
    ).first()
    if row is None:
        raise NotFound("refund not found")
    return _refund_row(*row)
