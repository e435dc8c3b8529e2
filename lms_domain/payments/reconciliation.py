"""Reconciliation: what the provider says happened on one Nairobi day against our ledger.

Provider truth is the callback inbox (successful STK callbacks, C2B confirmations, Transaction
Status results) plus whatever records the caller passes in (the org-portal statement, later Pull
API or Airtel rows), deduplicated by (provider, receipt). The ledger side is the day's
``Payment`` rows with the clearing-account amount their journal entry booked.

Four classes of discrepancy come out (``DiscrepancyClass``). Only one is ever healed: a receipt
the provider confirms for an STK push we still hold as pending, unknown or failed, and for
which no payment exists. It is settled through ``flows.settle_intent(..., QUERY)``, the same
exactly-once path the STK Query poller uses, so healing twice is harmless. Everything else is
money a person must look at (a refund, a manual match, a provider dispute) and is only reported.

Receipts need care: a payment confirmed only by STK Query carries its CheckoutRequestID as its
``provider_receipt`` until the real receipt arrives (``flows.apply_query_result``). Such a
payment is matched through the CheckoutRequestID, and healing back-fills the real receipt.

It has to be fast (100,000 records in well under 30 s), so the day's payments are read in one
query into dicts, compared in memory, and only the records left unmatched are looked up again
in chunked ``IN`` queries; healing runs in batches, one transaction per batch.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import NAIROBI, Clock
from lms_domain.db import READ_ONLY_OPTION
from lms_domain.errors import DomainError, InvalidInput
from lms_domain.ledger.accounts import AIRTEL_CLEARING, MPESA_CLEARING
from lms_domain.ledger.models import JournalEntry, LedgerAccount, Posting
from lms_domain.money import Money
from lms_domain.payments import flows, paybill, reversals
from lms_domain.payments.models import (
    IntentStatus,
    Payment,
    PaymentIntent,
    PaymentStatus,
    Provider,
    WebhookEvent,
    WebhookStatus,
)
from lms_domain.payments.mpesa import parse_async_result, parse_c2b_payload, parse_stk_callback

# Inbox kinds read as provider truth: STK callbacks, paybill confirmations, and the org-API
# results (Transaction Status and Reversal share one result URL, hence one kind).
INBOX_KINDS = (flows.STK_CALLBACK_KIND, paybill.CONFIRMATION_KIND, reversals.RESULT_KIND)
# Callbacks arrive after the payment, sometimes hours late (daraja.md §4.5); a little before the
# day absorbs clock skew between Safaricom and us.
INBOX_BEFORE = timedelta(hours=1)
INBOX_AFTER = timedelta(days=1)
LOOKUP_CHUNK = 500  # bound parameters per IN (...) query; well under SQLite's and asyncpg's limits
HEAL_BATCH_SIZE = 200
PROGRESS_STEP = 2_000
CLEARING_CODES = (MPESA_CLEARING, AIRTEL_CLEARING)
# Intents a provider-confirmed receipt may settle. A failed one only on the word of the
# statement or Transaction Status: a callback alone never revives a failed intent (flows.py).
HEALABLE_STATUSES = frozenset({IntentStatus.PENDING, IntentStatus.UNKNOWN, IntentStatus.FAILED})


class RecordSource(StrEnum):
    INBOX = "inbox"
    STATEMENT = "statement"
    TRANSACTION_STATUS = "transaction_status"


# Which source wins when two describe the same receipt differently: the statement is the
# provider's books, a Transaction Status answer is the provider asked directly, a callback is
# an unsigned message (daraja.md §11).
_PRECEDENCE: dict[str, int] = {RecordSource.STATEMENT: 0, RecordSource.TRANSACTION_STATUS: 1, RecordSource.INBOX: 2}
_CONFIRMING: frozenset[str] = frozenset({RecordSource.STATEMENT, RecordSource.TRANSACTION_STATUS})


class RecordKind(StrEnum):
    STK = "stk"  # Lipa na M-Pesa Online (or another provider's push collection)
    C2B = "c2b"  # paybill/till payment the customer started
    REVERSAL = "reversal"  # money going back out for an earlier receipt
    OTHER = "other"  # charges, payouts: not compared


COLLECTION_KINDS = frozenset({RecordKind.STK, RecordKind.C2B})


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """One money movement as the provider reports it; ``provider`` is a ``Provider`` value."""

    provider: str
    receipt: str
    amount_minor: int
    currency: str
    occurred_at: datetime
    msisdn: str | None = None
    account_reference: str | None = None
    checkout_request_id: str | None = None
    kind: str = RecordKind.STK
    source: str = RecordSource.STATEMENT
    original_receipt: str | None = None  # for a reversal: the receipt it reverses

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("ProviderRecord.occurred_at must be timezone-aware")


class DiscrepancyClass(StrEnum):
    MISSING_IN_LEDGER = "missing_in_ledger"
    MISSING_AT_PROVIDER = "missing_at_provider"
    AMOUNT_MISMATCH = "amount_mismatch"
    DUPLICATE = "duplicate"


@dataclass(slots=True)
class Discrepancy:
    """One thing that does not add up. ``healable`` ones are settled when healing is on."""

    category: DiscrepancyClass
    reason: str
    provider: str
    receipt: str | None = None
    checkout_request_id: str | None = None
    provider_amount_minor: int | None = None
    ledger_amount_minor: int | None = None
    currency: str = "KES"
    occurred_at: datetime | None = None
    record_kind: str | None = None
    sources: tuple[str, ...] = ()
    payment_id: uuid.UUID | None = None
    intent_id: uuid.UUID | None = None
    related_payment_ids: tuple[uuid.UUID, ...] = ()
    healable: bool = False
    healed: bool = False
    heal_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.category.value,
            "reason": self.reason,
            "provider": str(self.provider),
            "receipt": self.receipt,
            "checkout_request_id": self.checkout_request_id,
            "provider_amount_minor": self.provider_amount_minor,
            "ledger_amount_minor": self.ledger_amount_minor,
            "currency": self.currency,
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "record_kind": self.record_kind,
            "sources": list(self.sources),
            "payment_id": str(self.payment_id) if self.payment_id else None,
            "intent_id": str(self.intent_id) if self.intent_id else None,
            "related_payment_ids": [str(p) for p in self.related_payment_ids],
            "healable": self.healable,
            "healed": self.healed,
            "heal_error": self.heal_error,
        }


@dataclass(slots=True)
class ReceiptBackfill:
    """A payment settled by STK Query whose real receipt the provider has now told us."""

    provider: str
    payment_id: uuid.UUID
    placeholder: str
    receipt: str
    applied: bool = False


@dataclass(slots=True)
class ReconciliationReport:
    """The outcome of ``reconcile_day``; ``open`` discrepancies are what a person must handle."""

    day: date
    window_start: datetime
    window_end: datetime
    providers: tuple[str, ...]
    heal: bool
    checked_missing_at_provider: bool
    provider_records: int = 0  # distinct receipts of the day
    records_received: int = 0  # every record looked at, from any source and any day
    ledger_payments: int = 0
    matched: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)
    backfills: list[ReceiptBackfill] = field(default_factory=list)

    @property
    def open(self) -> list[Discrepancy]:
        return [d for d in self.discrepancies if not d.healed]

    @property
    def healed(self) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.healed]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per class: found, healed and still open."""
        table = {c.value: {"found": 0, "healed": 0, "open": 0} for c in DiscrepancyClass}
        for d in self.discrepancies:
            row = table[d.category.value]
            row["found"] += 1
            row["healed" if d.healed else "open"] += 1
        return table

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "window": {"start": self.window_start.isoformat(), "end": self.window_end.isoformat()},
            "providers": [str(p) for p in self.providers],
            "heal": self.heal,
            "checked_missing_at_provider": self.checked_missing_at_provider,
            "provider_records": self.provider_records,
            "records_received": self.records_received,
            "ledger_payments": self.ledger_payments,
            "matched": self.matched,
            "counts": self.counts(),
            "healed": len(self.healed),
            "open": len(self.open),
            "receipts_backfilled": sum(1 for b in self.backfills if b.applied),
            "receipts_to_backfill": sum(1 for b in self.backfills if not b.applied),
            "discrepancies": [d.to_dict() for d in self.discrepancies],
        }


def _money(amount_minor: int, currency: str) -> str:
    try:
        return str(Money(amount_minor, currency))
    except InvalidInput:
        return f"{currency} {amount_minor} (minor units)"


def day_window(day: date) -> tuple[datetime, datetime]:
    """The UTC instants bounding ``day`` on the Nairobi calendar (East Africa has no DST)."""
    start = datetime.combine(day, time(0), NAIROBI).astimezone(UTC)
    return start, start + timedelta(days=1)


def nairobi_day(at: datetime) -> date:
    """The Nairobi calendar day of an instant."""
    return at.astimezone(NAIROBI).date()


# Reading the inbox ---------------------------------------------------------------------------

_PARTY_MSISDN = re.compile(r"^\+?(\d{9,15})\b")


def _party_msisdn(values: Iterable[Any]) -> str | None:
    # "254708374149 - JOHN DOE"; masked or hashed numbers are dropped (never a join key anyway).
    return next((m.group(1) for v in values if (m := _PARTY_MSISDN.match(str(v).strip()))), None)


def record_from_stk_callback(body: bytes, received_at: datetime) -> ProviderRecord | None:
    """A successful STK callback (daraja.md §4) as a provider record; ``None`` for failures and junk."""
    try:
        callback = parse_stk_callback(body)
    except InvalidInput:
        return None
    if not callback.succeeded or callback.receipt is None or callback.amount_minor is None:
        return None
    return ProviderRecord(
        provider=Provider.MPESA,
        receipt=callback.receipt,
        amount_minor=callback.amount_minor,
        currency="KES",
        occurred_at=(callback.paid_at or received_at).astimezone(UTC),
        checkout_request_id=callback.checkout_request_id,
        kind=RecordKind.STK,
        source=RecordSource.INBOX,
    )


def record_from_c2b_confirmation(body: bytes, received_at: datetime) -> ProviderRecord | None:
    """A C2B Confirmation (daraja.md §7.3) as a provider record."""
    try:
        c2b = parse_c2b_payload(body)
    except InvalidInput:
        return None
    return ProviderRecord(
        provider=Provider.MPESA,
        receipt=c2b.trans_id,
        amount_minor=c2b.amount_minor,
        currency="KES",
        occurred_at=(c2b.trans_time or received_at).astimezone(UTC),
        msisdn=_party_msisdn([c2b.msisdn]),
        account_reference=c2b.bill_ref or None,
        kind=RecordKind.C2B,
        source=RecordSource.INBOX,
    )


def record_from_async_result(body: bytes, received_at: datetime) -> ProviderRecord | None:
    """A completed Transaction Status (§8) or Reversal (§9) result as a provider record."""
    try:
        result = parse_async_result(body)
    except InvalidInput:
        return None
    if not result.succeeded:
        return None
    status = result.first("TransactionStatus")
    if status is not None and str(status).strip().lower() != "completed":
        return None
    original = result.first("OriginalTransactionID")
    if original is not None:  # a reversal result: TransactionID is the reversal's own receipt
        receipt, kind, source = result.transaction_id, RecordKind.REVERSAL, RecordSource.INBOX
        when = result.time("TransCompletedTime")
    else:
        receipt = str(result.first("ReceiptNo") or result.transaction_id)
        reason = str(result.first("ReasonType") or "").lower()
        kind = RecordKind.REVERSAL if "reversal" in reason else RecordKind.STK if "online" in reason else RecordKind.C2B
        source = RecordSource.TRANSACTION_STATUS
        when = result.time("FinalisedTime") or result.time("InitiatedTime")
    amount = result.amount_minor()
    if not receipt.strip() or amount is None:
        return None
    return ProviderRecord(
        provider=Provider.MPESA,
        receipt=receipt.strip(),
        amount_minor=amount,
        currency="KES",
        occurred_at=(when or received_at).astimezone(UTC),
        msisdn=_party_msisdn(result.parameters.get("DebitPartyName", [])),
        kind=kind,
        source=source,
        original_receipt=str(original).strip() if original is not None else None,
    )


_INBOX_PARSERS: dict[str, Callable[[bytes, datetime], ProviderRecord | None]] = {
    flows.STK_CALLBACK_KIND: record_from_stk_callback,
    paybill.CONFIRMATION_KIND: record_from_c2b_confirmation,
    reversals.RESULT_KIND: record_from_async_result,
}


@dataclass(slots=True)
class InboxRead:
    """The inbox's provider records, and the STK callbacks left unparsed because a record
    passed in already states their CheckoutRequestID and receipt (``corroborated`` receipts)."""

    records: list[ProviderRecord]
    corroborated: list[str]


async def inbox_records(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    providers: Collection[str] = (Provider.MPESA,),
    *,
    known: Mapping[str, str] | None = None,
) -> InboxRead:
    """Provider records in the inbox rows received in ``[start, end)``, in one query.

    Rows marked ``failed`` did not parse when they arrived and are skipped; ``ignored`` ones
    (duplicates, contested successes) still count: they are what the provider sent. ``known``
    maps CheckoutRequestIDs to the receipts other records give them: a callback whose body names
    that receipt adds nothing but its word, so it is not parsed again (parsing is most of the
    cost of a night's reconciliation); any other callback, a contradicting one included, is.
    """
    known = known or {}
    conn = await session.connection()  # Core rows: the ORM's per-row work is not needed here
    rows = await conn.execute(
        sa.select(WebhookEvent.kind, WebhookEvent.event_key, WebhookEvent.body, WebhookEvent.received_at).where(
            WebhookEvent.provider.in_(list(providers)),
            WebhookEvent.kind.in_(INBOX_KINDS),
            WebhookEvent.received_at >= start,
            WebhookEvent.received_at < end,
            WebhookEvent.status != WebhookStatus.FAILED,
        )
    )
    read = InboxRead([], [])
    stk = flows.STK_CALLBACK_KIND
    for kind, event_key, body, received_at in rows:
        receipt = known.get(event_key) if kind == stk else None
        if receipt is not None and f'"{receipt}"' in body:
            read.corroborated.append(receipt)
            continue
        record = _INBOX_PARSERS[kind](body.encode(), received_at)
        if record is not None:
            read.records.append(record)
    return read


# The ledger side -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Booked:
    """One payment as the ledger holds it."""

    id: uuid.UUID
    provider: str
    receipt: str
    amount_minor: int
    currency: str
    paid_at: datetime
    status: PaymentStatus
    intent_id: uuid.UUID | None
    checkout_request_id: str | None
    order_id: uuid.UUID | None
    account_reference: str | None
    booked_minor: int | None = None  # the clearing account's debit in its journal entry
    in_day: bool = False
    matched: bool = False

    @property
    def receipt_is_placeholder(self) -> bool:
        # Settled by STK Query, which carries no receipt: the CheckoutRequestID stands in.
        return self.checkout_request_id is not None and self.receipt == self.checkout_request_id


_PAYMENT_COLUMNS = (
    Payment.id,
    Payment.provider,
    Payment.provider_receipt,
    Payment.amount_minor,
    Payment.currency,
    Payment.paid_at,
    Payment.status,
    Payment.intent_id,
    PaymentIntent.provider_request_id,
    PaymentIntent.order_id,
    Payment.account_reference,
)


def _booked(row: Sequence[Any], *, in_day: bool, booked_minor: int | None = None) -> _Booked:
    """A ``_Booked`` from a row that starts with ``_PAYMENT_COLUMNS``."""
    return _Booked(
        id=row[0],
        provider=row[1],
        receipt=row[2],
        amount_minor=row[3],
        currency=row[4],
        paid_at=row[5],
        status=row[6],
        intent_id=row[7],
        checkout_request_id=row[8],
        order_id=row[9],
        account_reference=row[10],
        booked_minor=booked_minor,
        in_day=in_day,
    )


def _clearing_debit() -> sa.ScalarSelect[Any]:
    # Correlated, one index probe per payment on the entry's unique business key.
    clearing = sa.select(LedgerAccount.id).where(LedgerAccount.code.in_(CLEARING_CODES))
    return (
        sa.select(sa.func.sum(Posting.amount_minor))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(
            JournalEntry.source_type == flows.LEDGER_SOURCE,
            JournalEntry.source_id == Payment.intent_id,
            JournalEntry.kind == flows.LEDGER_KIND,
            Posting.account_id.in_(clearing),
        )
        .scalar_subquery()
    )


async def _day_payments(
    session: AsyncSession, start: datetime, end: datetime, providers: Collection[str]
) -> list[_Booked]:
    conn = await session.connection()  # Core rows: 100,000 of them, the ORM's per-row work adds seconds
    rows = await conn.execute(
        sa.select(*_PAYMENT_COLUMNS, _clearing_debit())
        .outerjoin(PaymentIntent, PaymentIntent.id == Payment.intent_id)
        .where(Payment.paid_at >= start, Payment.paid_at < end, Payment.provider.in_(list(providers)))
    )
    return [
        _booked(row, in_day=True, booked_minor=None if row[-1] is None else int(row[-1]))  # NUMERIC on Postgres
        for row in rows
    ]


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def _payments_by_receipt(session: AsyncSession, keys: Collection[tuple[str, str]]) -> list[_Booked]:
    by_provider: dict[str, list[str]] = defaultdict(list)
    for provider, receipt in keys:
        by_provider[provider].append(receipt)
    found = []
    for provider, receipts in by_provider.items():
        for chunk in _chunks(sorted(receipts), LOOKUP_CHUNK):
            rows = await session.execute(
                sa.select(*_PAYMENT_COLUMNS)
                .outerjoin(PaymentIntent, PaymentIntent.id == Payment.intent_id)
                .where(Payment.provider == provider, Payment.provider_receipt.in_(chunk))
            )
            found += [_booked(row, in_day=False) for row in rows]
    return found


@dataclass(slots=True)
class _Intent:
    id: uuid.UUID
    provider: str
    status: IntentStatus
    amount_minor: int
    currency: str
    checkout_request_id: str


async def _intents_by_checkout(
    session: AsyncSession, checkout_ids: Collection[str]
) -> tuple[dict[str, _Intent], list[_Booked]]:
    """The intents of these CheckoutRequestIDs, and the payments already made for them."""
    intents: dict[str, _Intent] = {}
    payments: list[_Booked] = []
    for chunk in _chunks(sorted(checkout_ids), LOOKUP_CHUNK):
        rows = await session.execute(
            sa.select(
                PaymentIntent.id,
                PaymentIntent.provider,
                PaymentIntent.status,
                PaymentIntent.amount_minor,
                PaymentIntent.currency,
                PaymentIntent.provider_request_id,
                *_PAYMENT_COLUMNS,
            )
            .outerjoin(Payment, Payment.intent_id == PaymentIntent.id)
            .where(PaymentIntent.provider_request_id.in_(chunk))
        )
        for row in rows:
            checkout_id = str(row[5])
            intents[checkout_id] = _Intent(row[0], row[1], row[2], row[3], row[4], checkout_id)
            if row[6] is not None:
                payments.append(_booked(row[6:], in_day=False))
    return intents, payments


async def _payments_of_orders_paid_twice(
    session: AsyncSession, start: datetime, end: datetime
) -> list[tuple[Any, ...]]:
    """Every payment of an order that was paid more than once, where one payment is of the day."""
    day_orders = (
        sa.select(PaymentIntent.order_id)
        .join(Payment, Payment.intent_id == PaymentIntent.id)
        .where(Payment.paid_at >= start, Payment.paid_at < end, PaymentIntent.order_id.is_not(None))
    )
    twice = (
        sa.select(PaymentIntent.order_id)
        .join(Payment, Payment.intent_id == PaymentIntent.id)
        .where(PaymentIntent.order_id.in_(day_orders))
        .group_by(PaymentIntent.order_id)
        .having(sa.func.count(Payment.id) > 1)
    )
    rows = await session.execute(
        sa.select(
            PaymentIntent.order_id,
            Payment.id,
            Payment.provider,
            Payment.provider_receipt,
            Payment.amount_minor,
            Payment.currency,
            Payment.paid_at,
            Payment.status,
            Payment.intent_id,
        )
        .join(Payment, Payment.intent_id == PaymentIntent.id)
        .where(PaymentIntent.order_id.in_(twice))
        .order_by(PaymentIntent.order_id, Payment.paid_at, Payment.id)
    )
    return [tuple(row) for row in rows]


# Comparing ---------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Truth:
    """What the provider says about one receipt, merged over every source that mentions it."""

    record: ProviderRecord
    sources: set[str]
    checkout_request_id: str | None
    handled: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.record.provider, self.record.receipt


def _merge(records: Iterable[ProviderRecord], providers: Collection[str]) -> tuple[dict[tuple[str, str], _Truth], int]:
    truths: dict[tuple[str, str], _Truth] = {}
    received = 0
    for record in records:
        received += 1
        if record.provider not in providers:
            continue
        key = (record.provider, record.receipt)
        truth = truths.get(key)
        if truth is None:
            truths[key] = _Truth(record, {record.source}, record.checkout_request_id)
            continue
        truth.sources.add(record.source)
        truth.checkout_request_id = truth.checkout_request_id or record.checkout_request_id
        if _PRECEDENCE.get(record.source, 9) < _PRECEDENCE.get(truth.record.source, 9):
            truth.record = record
    return truths, received


class _Comparison:
    """The in-memory pass; collects discrepancies, heals to do and receipts to back-fill."""

    def __init__(self, report: ReconciliationReport) -> None:
        self.report = report
        self.heals: list[tuple[Discrepancy, _Truth, _Intent]] = []

    def add(self, discrepancy: Discrepancy) -> Discrepancy:
        self.report.discrepancies.append(discrepancy)
        return discrepancy

    def about(self, category: DiscrepancyClass, reason: str, truth: _Truth, **extra: Any) -> Discrepancy:
        record = truth.record
        fields: dict[str, Any] = {
            "provider": record.provider,
            "receipt": record.receipt,
            "checkout_request_id": truth.checkout_request_id,
            "provider_amount_minor": record.amount_minor,
            "currency": record.currency,
            "occurred_at": record.occurred_at,
            "record_kind": record.kind,
            "sources": tuple(sorted(truth.sources)),
        }
        return self.add(Discrepancy(category, reason, **(fields | extra)))

    def match(self, truth: _Truth, payment: _Booked, *, backfill: bool = True) -> None:
        """A provider record and the payment it settled: amounts must agree."""
        truth.handled = True
        payment.matched = True
        self.report.matched += 1
        record = truth.record
        if record.amount_minor != payment.amount_minor or record.currency != payment.currency:
            self.about(
                DiscrepancyClass.AMOUNT_MISMATCH,
                f"the provider has {_money(record.amount_minor, record.currency)}, "
                f"the payment {_money(payment.amount_minor, payment.currency)}",
                truth,
                ledger_amount_minor=payment.amount_minor,
                payment_id=payment.id,
                intent_id=payment.intent_id,
            )
        if backfill and payment.receipt_is_placeholder and record.receipt != payment.receipt:
            self.report.backfills.append(ReceiptBackfill(payment.provider, payment.id, payment.receipt, record.receipt))

    def by_checkout(self, truth: _Truth, payment: _Booked) -> None:
        """The record's CheckoutRequestID was settled: by a Query (fine) or with another receipt."""
        if payment.receipt_is_placeholder:
            self.match(truth, payment)
            return
        truth.handled = True
        payment.matched = True
        self.about(
            DiscrepancyClass.DUPLICATE,
            f"the provider reports receipt {truth.record.receipt} for a CheckoutRequestID "
            f"already settled with receipt {payment.receipt}",
            truth,
            ledger_amount_minor=payment.amount_minor,
            payment_id=payment.id,
            intent_id=payment.intent_id,
        )

    def missing(self, truth: _Truth, intent: _Intent | None) -> None:
        """No payment for this provider record; heal it when it is the safe case."""
        truth.handled = True
        record = truth.record
        if record.kind == RecordKind.REVERSAL:
            self.about(DiscrepancyClass.MISSING_IN_LEDGER, "a reversal with no payment to reverse", truth)
            return
        if intent is None:
            reason = (
                "a C2B payment with no payment recorded (C2B is not settled automatically)"
                if record.kind == RecordKind.C2B
                else "no payment and no intent with this CheckoutRequestID"
                if truth.checkout_request_id
                else "no payment, and no CheckoutRequestID to find the intent by"
            )
            self.about(DiscrepancyClass.MISSING_IN_LEDGER, reason, truth)
            return
        if record.amount_minor != intent.amount_minor or record.currency != intent.currency:
            self.about(
                DiscrepancyClass.AMOUNT_MISMATCH,
                f"the provider has {_money(record.amount_minor, record.currency)} for an intent of "
                f"{_money(intent.amount_minor, intent.currency)}; never credited",
                truth,
                ledger_amount_minor=intent.amount_minor,
                intent_id=intent.id,
            )
            return
        confirmed = bool(truth.sources & _CONFIRMING)
        if intent.status not in HEALABLE_STATUSES or intent.provider != record.provider:
            reason = f"no payment for an intent that is {intent.status.value}"
        elif intent.status is IntentStatus.FAILED and not confirmed:
            reason = "a callback reports success for a failed intent; needs the statement or Transaction Status"
        else:
            discrepancy = self.about(
                DiscrepancyClass.MISSING_IN_LEDGER,
                f"provider-confirmed payment for a {intent.status.value} intent",
                truth,
                intent_id=intent.id,
                healable=True,
            )
            self.heals.append((discrepancy, truth, intent))
            return
        self.about(DiscrepancyClass.MISSING_IN_LEDGER, reason, truth, intent_id=intent.id)

    def reversal(self, truth: _Truth, original: _Booked | None) -> None:
        truth.handled = True
        if original is not None and original.status is PaymentStatus.REVERSED:
            self.report.matched += 1
            return
        reason = (
            f"the provider reversed {truth.record.original_receipt}, which the ledger still holds as settled"
            if original is not None
            else f"the provider reversed {truth.record.original_receipt or 'a receipt'} the ledger does not have"
        )
        self.about(
            DiscrepancyClass.MISSING_IN_LEDGER,
            reason,
            truth,
            payment_id=original.id if original else None,
            ledger_amount_minor=original.amount_minor if original else None,
        )

    def unconfirmed(self, payment: _Booked) -> None:
        self.add(
            Discrepancy(
                DiscrepancyClass.MISSING_AT_PROVIDER,
                "settled by STK Query but the provider has no such receipt"
                if payment.receipt_is_placeholder
                else "the provider has no record of this receipt",
                provider=payment.provider,
                receipt=payment.receipt,
                checkout_request_id=payment.checkout_request_id,
                ledger_amount_minor=payment.amount_minor,
                currency=payment.currency,
                occurred_at=payment.paid_at,
                payment_id=payment.id,
                intent_id=payment.intent_id,
            )
        )

    def books(self, payment: _Booked) -> None:
        """The payment's own journal entry must book what it received."""
        if payment.intent_id is None:
            return  # C2B/manual postings are keyed differently; compared by their own flows
        if payment.booked_minor is None:
            category, reason = DiscrepancyClass.MISSING_IN_LEDGER, "the payment has no journal entry"
        elif payment.booked_minor != payment.amount_minor:
            category = DiscrepancyClass.AMOUNT_MISMATCH
            reason = (
                f"the journal entry books {_money(payment.booked_minor, payment.currency)}, "
                f"the payment is {_money(payment.amount_minor, payment.currency)}"
            )
        else:
            return
        self.add(
            Discrepancy(
                category,
                reason,
                provider=payment.provider,
                receipt=payment.receipt,
                checkout_request_id=payment.checkout_request_id,
                provider_amount_minor=None,
                ledger_amount_minor=payment.booked_minor,
                currency=payment.currency,
                occurred_at=payment.paid_at,
                payment_id=payment.id,
                intent_id=payment.intent_id,
            )
        )


def _fuzzy_pairs(truths: Iterable[_Truth], payments: Iterable[_Booked]) -> list[tuple[_Truth, _Booked]]:
    """Query-settled payments and STK records without a CheckoutRequestID, paired when exactly
    one of each shares an account reference and amount: the statement may omit the link."""
    records: dict[tuple[str | None, int], list[_Truth]] = defaultdict(list)
    for truth in truths:
        if truth.record.kind == RecordKind.STK and truth.checkout_request_id is None:
            records[(truth.record.account_reference, truth.record.amount_minor)].append(truth)
    placeholders: dict[tuple[str | None, int], list[_Booked]] = defaultdict(list)
    for payment in payments:
        if payment.receipt_is_placeholder:
            placeholders[(payment.account_reference, payment.amount_minor)].append(payment)
    return [
        (records[key][0], found[0])
        for key, found in placeholders.items()
        if key[0] and len(found) == 1 and len(records.get(key, ())) == 1
    ]


async def _load(
    session: AsyncSession, compare: _Comparison, records: list[ProviderRecord], providers: Collection[str]
) -> tuple[dict[tuple[str, str], _Truth], list[_Booked]]:
    """Provider truth (the records passed in and the inbox, merged by receipt) and the day's payments."""
    report = compare.report
    start, end = report.window_start, report.window_end
    known = {
        r.checkout_request_id: r.receipt for r in records if r.checkout_request_id and r.provider == Provider.MPESA
    }
    inbox = await inbox_records(session, start - INBOX_BEFORE, end + INBOX_AFTER, providers, known=known)
    truths, received = _merge([*records, *inbox.records], providers)
    report.records_received = received + len(inbox.corroborated)
    for receipt in inbox.corroborated:
        if (truth := truths.get((Provider.MPESA, receipt))) is not None:
            truth.sources.add(RecordSource.INBOX)
    return truths, await _day_payments(session, start, end, providers)


def _provider_duplicates(
    compare: _Comparison,
    truths: dict[tuple[str, str], _Truth],
    by_receipt: dict[tuple[str, str], _Booked],
    by_checkout: dict[str, _Booked],
    start: datetime,
    end: datetime,
) -> None:
    """One STK push yields one receipt: two receipts for one CheckoutRequestID is the provider
    (or someone posing as it) charging twice. Reported; neither is healed."""
    receipts_of: dict[str, list[_Truth]] = defaultdict(list)
    for truth in truths.values():
        if truth.checkout_request_id and truth.record.kind == RecordKind.STK:
            receipts_of[truth.checkout_request_id].append(truth)
    for checkout_id, group in receipts_of.items():
        if len(group) < 2 or not any(start <= t.record.occurred_at < end for t in group):
            continue
        for truth in group:
            truth.handled = True
            if (payment := by_receipt.get(truth.key) or by_checkout.get(checkout_id)) is not None:
                payment.matched = True
        receipts = ", ".join(sorted(t.record.receipt for t in group))
        first = min(group, key=lambda t: t.record.occurred_at)
        compare.about(DiscrepancyClass.DUPLICATE, f"the provider reports receipts {receipts} for one push", first)


def _match_day(
    compare: _Comparison,
    todays: list[_Truth],
    by_receipt: dict[tuple[str, str], _Booked],
    by_checkout: dict[str, _Booked],
    advance: Callable[[int], None],
) -> tuple[list[_Truth], list[_Truth]]:
    """Match the day's provider records to the day's payments, in memory; what is left over
    (records with no payment of the day) and the reversals are returned for the next phases."""
    unmatched: list[_Truth] = []
    reversals: list[_Truth] = []
    for n, truth in enumerate(todays, 1):
        if n % PROGRESS_STEP == 0:
            advance(PROGRESS_STEP)
        if truth.handled:
            continue
        if truth.record.kind == RecordKind.REVERSAL:
            reversals.append(truth)
            continue
        if truth.record.kind not in COLLECTION_KINDS:
            truth.handled = True
            continue
        by_r = by_receipt.get(truth.key)
        by_c = by_checkout.get(truth.checkout_request_id) if truth.checkout_request_id else None
        if by_r is not None and by_c is not None and by_r is not by_c:
            by_c.matched = True
            compare.match(truth, by_r)
            compare.about(
                DiscrepancyClass.DUPLICATE,
                f"one provider payment is recorded twice: as {by_r.receipt} and on its intent as {by_c.receipt}",
                truth,
                ledger_amount_minor=by_c.amount_minor,
                payment_id=by_c.id,
                intent_id=by_c.intent_id,
                related_payment_ids=(by_r.id,),
            )
        elif by_r is not None:
            compare.match(truth, by_r)
        elif by_c is not None:
            compare.by_checkout(truth, by_c)
        else:
            unmatched.append(truth)
    advance(len(todays) % PROGRESS_STEP)
    return unmatched, reversals


async def _match_elsewhere(
    session: AsyncSession, compare: _Comparison, unmatched: list[_Truth], unmatched_payments: list[_Booked]
) -> None:
    """Records with no payment of the day: settled on another day (a Query that answered after
    midnight), matched loosely to a query-settled payment, or truly missing in the ledger."""
    found = await _payments_by_receipt(session, [t.key for t in unmatched])
    elsewhere = {(p.provider, p.receipt): p for p in found}
    checkout_ids = {t.checkout_request_id for t in unmatched if t.checkout_request_id}
    intents, intent_payments = await _intents_by_checkout(session, checkout_ids)
    elsewhere_by_checkout = {p.checkout_request_id: p for p in intent_payments if p.checkout_request_id}
    still: list[_Truth] = []
    for truth in unmatched:
        if (payment := elsewhere.get(truth.key)) is not None:
            compare.match(truth, payment)
        elif truth.checkout_request_id and (payment := elsewhere_by_checkout.get(truth.checkout_request_id)):
            compare.by_checkout(truth, payment)
        else:
            still.append(truth)
    for truth, payment in _fuzzy_pairs(still, unmatched_payments):
        compare.match(truth, payment, backfill=False)  # a likely match, not proof enough to write
    for truth in still:
        if not truth.handled:
            compare.missing(truth, intents.get(truth.checkout_request_id or ""))


async def _match_reversals(
    session: AsyncSession, compare: _Comparison, reversals: list[_Truth], by_receipt: dict[tuple[str, str], _Booked]
) -> None:
    """A provider reversal must find its payment marked reversed."""
    originals = dict(by_receipt)
    wanted = {
        (t.record.provider, t.record.original_receipt)
        for t in reversals
        if t.record.original_receipt and (t.record.provider, t.record.original_receipt) not in originals
    }
    for payment in await _payments_by_receipt(session, [(p, r) for p, r in wanted if r]):
        originals[(payment.provider, payment.receipt)] = payment
    for truth in reversals:
        compare.reversal(truth, originals.get((truth.record.provider, truth.record.original_receipt or "")))


async def _orders_paid_twice(session: AsyncSession, compare: _Comparison, start: datetime, end: datetime) -> None:
    """Every payment after the first for one order, paid this day and not refunded."""
    paid: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for row in await _payments_of_orders_paid_twice(session, start, end):
        paid[row[0]].append(row)
    for order_id, (kept, *extra) in paid.items():
        for _, payment_id, provider, receipt, amount, currency, paid_at, status, intent_id in extra:
            if not start <= paid_at < end or status is PaymentStatus.REVERSED:
                continue  # reported on its own day, or already refunded
            compare.add(
                Discrepancy(
                    DiscrepancyClass.DUPLICATE,
                    f"order {order_id} was paid more than once; this payment is held in suspense",
                    provider=provider,
                    receipt=receipt,
                    ledger_amount_minor=amount,
                    currency=currency,
                    occurred_at=paid_at,
                    payment_id=payment_id,
                    intent_id=intent_id,
                    related_payment_ids=(kept[1],),
                )
            )


@asynccontextmanager
async def _reading(sessions: async_sessionmaker[AsyncSession] | AsyncSession) -> AsyncIterator[AsyncSession]:
    if isinstance(sessions, AsyncSession):
        yield sessions
        return
    async with sessions() as session:
        # Reads only: on SQLite this keeps the writer lock free for callbacks while we read.
        await session.connection(execution_options={READ_ONLY_OPTION: True})
        yield session


async def reconcile_day(
    sessions: async_sessionmaker[AsyncSession] | AsyncSession,
    day: date,
    records: Iterable[ProviderRecord],
    *,
    clock: Clock,
    heal: bool,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    providers: Collection[str] = (Provider.MPESA,),
    check_missing_at_provider: bool = True,
    heal_batch_size: int = HEAL_BATCH_SIZE,
) -> ReconciliationReport:
    """Compare provider truth for ``day`` (a Nairobi date) with the ledger, and heal the safe class.

    ``records`` are the caller's provider records (statement, Pull API...); the inbox is read
    here. Records of other days are used for matching only. ``progress(n)`` advances by ``n``
    units of work out of the total last given to ``on_total``. With a sessionmaker, healing
    commits one transaction per batch; with a session, everything happens in the caller's
    transaction. Set ``check_missing_at_provider=False`` when the provider's side is known to be
    incomplete (no statement), or every query-settled payment would be reported.
    """
    start, end = day_window(day)
    providers = tuple(providers)
    report = ReconciliationReport(
        day=day,
        window_start=start,
        window_end=end,
        providers=providers,
        heal=heal,
        checked_missing_at_provider=check_missing_at_provider,
    )
    advance = progress or (lambda _n: None)
    compare = _Comparison(report)

    async with _reading(sessions) as session:
        truths, payments = await _load(session, compare, list(records), providers)
        todays = [t for t in truths.values() if start <= t.record.occurred_at < end]
        report.provider_records, report.ledger_payments = len(todays), len(payments)
        if on_total:
            on_total(len(todays) + len(payments))
        by_receipt = {(p.provider, p.receipt): p for p in payments}
        by_checkout = {p.checkout_request_id: p for p in payments if p.checkout_request_id}

        _provider_duplicates(compare, truths, by_receipt, by_checkout, start, end)
        unmatched, reversals = _match_day(compare, todays, by_receipt, by_checkout, advance)
        await _match_elsewhere(session, compare, unmatched, [p for p in payments if not p.matched])
        await _match_reversals(session, compare, reversals, by_receipt)
        for payment in payments:
            compare.books(payment)
            if not payment.matched and check_missing_at_provider:
                compare.unconfirmed(payment)
        advance(len(payments))
        await _orders_paid_twice(session, compare, start, end)

    if heal and (compare.heals or report.backfills):
        if on_total:
            on_total(len(todays) + len(payments) + len(compare.heals) + len(report.backfills))
        await _backfill(sessions, compare, clock, heal_batch_size, advance)
        await _settle(sessions, compare.heals, clock, heal_batch_size, advance)
    report.discrepancies.sort(key=lambda d: (d.category.value, d.occurred_at or start, d.receipt or ""))
    return report


# Healing -----------------------------------------------------------------------------------------


@asynccontextmanager
async def _writing(sessions: async_sessionmaker[AsyncSession] | AsyncSession) -> AsyncIterator[AsyncSession]:
    if isinstance(sessions, AsyncSession):
        yield sessions
        return
    async with sessions() as session, session.begin():
        yield session


async def _backfill(
    sessions: async_sessionmaker[AsyncSession] | AsyncSession,
    compare: _Comparison,
    clock: Clock,
    batch_size: int,
    advance: Callable[[int], None],
) -> None:
    table = cast(sa.Table, Payment.__table__)
    update = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("b_id"), table.c.provider_receipt == sa.bindparam("b_placeholder"))
        .values(provider_receipt=sa.bindparam("b_receipt"), updated_at=sa.bindparam("b_now"))
    )
    for batch in _chunks(compare.report.backfills, batch_size):
        async with _writing(sessions) as session:
            # The real receipt may already be on another payment (a late callback, or a payment
            # of another day): check inside the writing transaction, so the unique constraint
            # never has to, and report it, since then one push was recorded twice.
            rows = await session.execute(
                sa.select(Payment.provider, Payment.provider_receipt).where(
                    Payment.provider_receipt.in_([b.receipt for b in batch])
                )
            )
            taken = {(provider, receipt) for provider, receipt in rows}
            todo = [b for b in batch if (b.provider, b.receipt) not in taken]
            if todo:
                now = clock.now()
                await session.execute(
                    update,
                    [
                        {"b_id": b.payment_id, "b_placeholder": b.placeholder, "b_receipt": b.receipt, "b_now": now}
                        for b in todo
                    ],
                    execution_options={"synchronize_session": False},
                )
                for backfill in todo:
                    backfill.applied = True
        for backfill in batch:
            if (backfill.provider, backfill.receipt) in taken:
                compare.add(
                    Discrepancy(
                        DiscrepancyClass.DUPLICATE,
                        f"receipt {backfill.receipt} is already on another payment, and this one was settled "
                        "by STK Query for the same push",
                        provider=backfill.provider,
                        receipt=backfill.receipt,
                        checkout_request_id=backfill.placeholder,
                        payment_id=backfill.payment_id,
                    )
                )
        advance(len(batch))


async def _settle(
    sessions: async_sessionmaker[AsyncSession] | AsyncSession,
    heals: Sequence[tuple[Discrepancy, _Truth, _Intent]],
    clock: Clock,
    batch_size: int,
    advance: Callable[[int], None],
) -> None:
    for batch in _chunks(heals, batch_size):
        async with _writing(sessions) as session:
            for discrepancy, truth, intent in batch:
                record = truth.record
                try:
                    # A savepoint per heal: one refusal must not undo the rest of the batch.
                    async with session.begin_nested():
                        locked = await session.get(PaymentIntent, intent.id)
                        if locked is None:
                            raise InvalidInput("the intent disappeared", code="intent_missing")
                        settlement = await flows.settle_intent(
                            session,
                            locked,
                            record.receipt,
                            record.amount_minor,
                            record.occurred_at,
                            flows.SettlementSource.QUERY,
                            clock=clock,
                        )
                except DomainError as exc:
                    discrepancy.heal_error = exc.detail
                    continue
                except IntegrityError:
                    discrepancy.heal_error = f"receipt {record.receipt} is already recorded on another payment"
                    continue
                discrepancy.payment_id = settlement.payment.id
                discrepancy.healed = settlement.created
                if not settlement.created:
                    discrepancy.heal_error = "settled meanwhile by another path"
        advance(len(batch))
