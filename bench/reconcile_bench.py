"""Reconciliation of a 100,000-line statement: must take at most 30 s and find every seeded
discrepancy, on SQLite and on PostgreSQL.

    python -m bench.reconcile_bench [--records 100000] [--per-class 100] [--backends sqlite postgres]

Seeding (bulk Core inserts, not timed): 100,000 completed statement lines for one Nairobi day;
the matching intents, payments, journal entries and postings; a success callback in the inbox
for every payment settled by callback (about 98,000 rows); and ``--per-class`` seeded cases of
each class:

* missing in the ledger: half STK pushes still pending (healable), half paybill payments;
* missing at provider: payments of the day on no statement line and in no callback;
* amount mismatch: statement lines whose amount differs from the payment's;
* duplicate: orders paid twice (the second payment in suspense);

plus 1,000 payments settled by STK Query (their receipt is the CheckoutRequestID), matched
through the statement's Linked Transaction ID and back-filled when healing.

Timed, in the same run on the same database:

* *baseline*: parse the statement, read the day's payments and the inbox rows (no comparing);
* *dry run*: parse the statement and ``reconcile_day(heal=False)``;
* *heal*: the same with ``heal=True`` (settles the pending pushes, back-fills receipts);
* *again*: a second healing run, which must heal nothing.

Every run must report exactly the seeded discrepancies: no fewer, and no false positives.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import io
import json
import logging
import os
import platform
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.databases import drop_database, fresh_database
from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.clock import NAIROBI, SystemClock
from lms_domain.commerce.models import Order, OrderStatus
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.ids import new_id
from lms_domain.ledger.accounts import MPESA_CLEARING, REVENUE, SUSPENSE, account_id, ensure_accounts
from lms_domain.ledger.models import JournalEntry, Posting
from lms_domain.payments import flows
from lms_domain.payments.models import (
    IntentStatus,
    Payment,
    PaymentIntent,
    PaymentStatus,
    Provider,
    WebhookEvent,
    WebhookStatus,
)
from lms_domain.payments.reconciliation import DiscrepancyClass, ReconciliationReport, day_window, reconcile_day
from lms_domain.payments.statement import STATEMENT_COLUMNS, parse_statement
from lms_domain.security import Hasher
from lms_domain.tenancy.service import create_institution, create_learner
from server.migrate import upgrade

DAY = date(2026, 11, 27)
BUDGET_S = 30.0
QUERY_SETTLED = 1_000
INSERT_BATCH = 5_000
HEADER = list(STATEMENT_COLUMNS)


@dataclass
class Seeded:
    statement: bytes = b""
    expected: dict[str, set[str]] = field(default_factory=lambda: {c.value: set() for c in DiscrepancyClass})
    healable: set[str] = field(default_factory=set)
    backfills: int = 0
    rows: dict[str, int] = field(default_factory=dict)


def _receipt(n: int) -> str:
    return f"SB{n:08d}"


def _checkout(n: int) -> str:
    return f"ws_CO_27112026{n:016d}"


def _callback(checkout_id: str, receipt: str, amount_minor: int, at: datetime) -> str:
    items = [
        {"Name": "Amount", "Value": amount_minor // 100},
        {"Name": "MpesaReceiptNumber", "Value": receipt},
        {"Name": "Balance"},
        {"Name": "TransactionDate", "Value": int(at.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S"))},
        {"Name": "PhoneNumber", "Value": 254708374149},
    ]
    return json.dumps(
        {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": "29115-34620561-1",
                    "CheckoutRequestID": checkout_id,
                    "ResultCode": 0,
                    "ResultDesc": "The service request is processed successfully.",
                    "CallbackMetadata": {"Item": items},
                }
            }
        }
    )


async def _insert(engine: AsyncEngine, table: Any, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        for i in range(0, len(rows), INSERT_BATCH):
            await conn.execute(sa.insert(table), rows[i : i + INSERT_BATCH])


async def seed(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], records: int, k: int) -> Seeded:
    """The day described in the module docstring; returns what reconciliation must find."""
    async with sessions() as session, session.begin():
        institution = await create_institution(session=session, name="Bench School", code=f"B{uuid.uuid4().hex[:8]}")
        learner = await create_learner(
            session=session,
            institution_id=institution.id,
            display_name="Bench Learner",
            hasher=Hasher(time_cost=1, memory_cost_kib=64, parallelism=1),
        )
        await ensure_accounts(session, institution.id)
    inst, account_no = institution.id, learner.account_no
    clearing, revenue, suspense = (account_id(inst, code) for code in (MPESA_CLEARING, REVENUE, SUSPENSE))
    start, _ = day_window(DAY)
    step = timedelta(seconds=86_000 / records)
    now = datetime.now(NAIROBI)
    seeded = Seeded()
    intents: list[dict[str, Any]] = []
    payments: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    postings: list[dict[str, Any]] = []
    inbox: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    lines: list[list[str]] = []

    def intent(n: int, amount: int, status: IntentStatus, order_id: uuid.UUID | None = None) -> uuid.UUID:
        intent_id = new_id()
        intents.append(
            {
                "id": intent_id,
                "institution_id": inst,
                "learner_id": learner.id,
                "order_id": order_id,
                "provider": Provider.MPESA,
                "currency": "KES",
                "amount_minor": amount,
                "msisdn": "+254708374149",
                "account_reference": account_no,
                "description": flows.STK_DESCRIPTION,
                "idempotency_key": f"bench-{n}",
                "status": status,
                "provider_request_id": _checkout(n),
                "merchant_request_id": "29115-34620561-1",
                "requested_at": start,
                "created_at": now,
                "updated_at": now,
            }
        )
        return intent_id

    def payment(intent_id: uuid.UUID, receipt: str, amount: int, at: datetime, *, sale: bool = True) -> None:
        payment_id, entry_id = new_id(), new_id()
        payments.append(
            {
                "id": payment_id,
                "institution_id": inst,
                "intent_id": intent_id,
                "learner_id": learner.id,
                "provider": Provider.MPESA,
                "provider_receipt": receipt,
                "currency": "KES",
                "amount_minor": amount,
                "msisdn": "+254708374149",
                "account_reference": account_no,
                "status": PaymentStatus.SETTLED,
                "paid_at": at,
                "created_at": now,
                "updated_at": now,
            }
        )
        entries.append(
            {
                "id": entry_id,
                "institution_id": inst,
                "kind": flows.LEDGER_KIND,
                "source_type": flows.LEDGER_SOURCE,
                "source_id": intent_id,
                "description": f"M-Pesa {receipt}",
                "occurred_at": at,
                "created_at": now,
            }
        )
        credit = revenue if sale else suspense
        for account, value in ((clearing, amount), (credit, -amount)):
            postings.append(
                {"id": new_id(), "entry_id": entry_id, "account_id": account, "currency": "KES", "amount_minor": value}
            )

    def callback(n: int, receipt: str, amount: int, at: datetime) -> None:
        body = _callback(_checkout(n), receipt, amount, at)
        inbox.append(
            {
                "id": new_id(),
                "institution_id": inst,
                "provider": Provider.MPESA,
                "kind": flows.STK_CALLBACK_KIND,
                "event_key": _checkout(n),
                "body_sha256": hashlib.sha256(body.encode()).hexdigest(),
                "body": body,
                "headers": {},
                "status": WebhookStatus.PROCESSED,
                "attempts": 1,
                "received_at": at + timedelta(seconds=2),
                "processed_at": at + timedelta(seconds=2),
            }
        )

    def line(receipt: str, at: datetime, amount: int, *, linked: str, reason: str = "Pay Bill Online") -> None:
        local = at.astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S")
        party = "254708374149 - JOHN DOE"
        lines.append(
            [
                receipt,
                local,
                local,
                f"{reason} from {party} Acc. {account_no}",
                "Completed",
                f"{amount // 100:,}.00",
                "",
                "1,000,000.00",
                "true",
                reason,
                party,
                linked,
                account_no,
            ]
        )

    expected = seeded.expected
    for n in range(records):
        at = start + step * n
        amount = (100 + n % 4_900) * 100
        receipt = _receipt(n)
        if n < k:  # missing in the ledger: a pending push (healable), or a paybill payment
            if n % 2 == 0:
                intent(n, amount, IntentStatus.PENDING)
                line(receipt, at, amount, linked=_checkout(n))
                seeded.healable.add(receipt)
            else:
                line(receipt, at, amount, linked="", reason="Pay Bill")
            expected[DiscrepancyClass.MISSING_IN_LEDGER].add(receipt)
        elif n < 2 * k:  # amount mismatch: the statement says KES 50 more
            payment(intent(n, amount, IntentStatus.SUCCEEDED), receipt, amount, at)
            callback(n, receipt, amount, at)
            line(receipt, at, amount + 5_000, linked=_checkout(n))
            expected[DiscrepancyClass.AMOUNT_MISMATCH].add(receipt)
        elif n < 4 * k:  # duplicate: two prompts for one order both paid
            first = (n - 2 * k) % 2 == 0
            if first:
                order_id = new_id()
                orders.append(
                    {
                        "id": order_id,
                        "institution_id": inst,
                        "learner_id": learner.id,
                        "status": OrderStatus.PAID,
                        "currency": "KES",
                        "subtotal_minor": amount,
                        "discount_minor": 0,
                        "total_minor": amount,
                        "paid_at": at,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            else:
                amount = orders[-1]["total_minor"]
                expected[DiscrepancyClass.DUPLICATE].add(receipt)
            payment(intent(n, amount, IntentStatus.SUCCEEDED, orders[-1]["id"]), receipt, amount, at, sale=first)
            callback(n, receipt, amount, at)
            line(receipt, at, amount, linked=_checkout(n))
        elif n < 4 * k + QUERY_SETTLED:  # settled by STK Query: the receipt is the CheckoutRequestID
            payment(intent(n, amount, IntentStatus.SUCCEEDED), _checkout(n), amount, at)
            line(receipt, at, amount, linked=_checkout(n))
            seeded.backfills += 1
        else:
            payment(intent(n, amount, IntentStatus.SUCCEEDED), receipt, amount, at)
            callback(n, receipt, amount, at)
            line(receipt, at, amount, linked=_checkout(n))
    for i in range(k):  # missing at provider: ours only (no line, no callback)
        n = records + i
        at = start + step * (i * records // k)
        receipt = f"SX{i:08d}"
        payment(intent(n, 50_000, IntentStatus.SUCCEEDED), receipt, 50_000, at)
        expected[DiscrepancyClass.MISSING_AT_PROVIDER].add(receipt)

    out = io.StringIO()
    out.write("\ufeffAccount Holder:,Bench School\nShort Code:,174379\n\n")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(lines)
    seeded.statement = out.getvalue().encode()

    for model, rows in (
        (Order, orders),
        (PaymentIntent, intents),
        (Payment, payments),
        (JournalEntry, entries),
        (Posting, postings),
        (WebhookEvent, inbox),
    ):
        await _insert(engine, model.__table__, rows)
        seeded.rows[model.__tablename__] = len(rows)
    return seeded


async def baseline(sessions: async_sessionmaker[AsyncSession], statement: bytes) -> float:
    """The floor: parse the statement and read the day's payments and inbox, compare nothing."""
    start, end = day_window(DAY)
    started = time.perf_counter()
    parsed = parse_statement(statement)
    async with sessions() as session:
        payments = (
            await session.execute(
                sa.select(
                    Payment.id, Payment.provider, Payment.provider_receipt, Payment.amount_minor, Payment.paid_at
                ).where(Payment.paid_at >= start, Payment.paid_at < end)
            )
        ).all()
        inbox = (
            await session.execute(
                sa.select(WebhookEvent.body).where(
                    WebhookEvent.received_at >= start - timedelta(hours=1), WebhookEvent.received_at < end
                )
            )
        ).all()
    assert parsed.records and payments and inbox
    return time.perf_counter() - started


def check(report: ReconciliationReport, seeded: Seeded, *, heal: bool, first_heal: bool) -> list[str]:
    """Differences between what was found and what was seeded (empty when exact)."""
    problems = []
    found: dict[str, set[str]] = {c.value: set() for c in DiscrepancyClass}
    for d in report.discrepancies:
        found[d.category.value].add(d.receipt or "")
    for name, receipts in seeded.expected.items():
        want = set(receipts) - (seeded.healable if heal and not first_heal else set())
        if found[name] != want:
            problems.append(f"{name}: missed {len(want - found[name])}, spurious {len(found[name] - want)}")
    healed = {d.receipt for d in report.healed}
    if healed != (seeded.healable if first_heal else set()):
        problems.append(f"healed {len(healed)}")
    backfilled = sum(1 for b in report.backfills if b.applied)
    if backfilled != (seeded.backfills if first_heal else 0):
        problems.append(f"back-filled {backfilled}")
    return problems


async def reconcile(
    sessions: async_sessionmaker[AsyncSession], statement: bytes, *, heal: bool
) -> tuple[float, ReconciliationReport]:
    started = time.perf_counter()
    parsed = parse_statement(statement)
    report = await reconcile_day(sessions, DAY, parsed.records, clock=SystemClock(), heal=heal)
    return time.perf_counter() - started, report


async def run_backend(backend: str, args: argparse.Namespace, workdir: str, console: Console) -> dict[str, Any]:
    url = await fresh_database(backend, args.postgres, workdir)
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    install_change_capture()
    clock = SystemClock()
    sessions = make_sessionmaker(engine, SyncContext(node_id=uuid.uuid4(), role=NodeRole.CENTRAL, clock=clock))
    try:
        began = time.perf_counter()
        seeded = await seed(engine, sessions, args.records, args.per_class)
        console.print(
            f"[dim]{backend}: seeded {sum(seeded.rows.values()):,} rows in {time.perf_counter() - began:.1f} s "
            f"({', '.join(f'{t} {n:,}' for t, n in seeded.rows.items())})[/]"
        )
        if backend == "postgres":
            async with engine.begin() as conn:  # committed: statistics from a rolled-back ANALYZE are lost
                await conn.execute(sa.text("ANALYZE"))
        result: dict[str, Any] = {"backend": backend, "baseline": await baseline(sessions, seeded.statement)}
        for name, heal, first_heal in (("dry run", False, False), ("heal", True, True), ("again", True, False)):
            elapsed, report = await reconcile(sessions, seeded.statement, heal=heal)
            problems = check(report, seeded, heal=heal, first_heal=first_heal)
            result[name] = elapsed
            result[f"{name} problems"] = problems
            result[f"{name} found"] = len(report.discrepancies)
            console.print(
                f"[dim]{backend} {name}: {elapsed:.2f} s, {report.provider_records:,} provider records, "
                f"{report.ledger_payments:,} payments, {len(report.discrepancies)} discrepancies, "
                f"{len(report.healed)} healed, {sum(b.applied for b in report.backfills)} back-filled"
                + (f", [red]{'; '.join(problems)}[/]" if problems else "")
                + "[/]"
            )
        return result
    finally:
        await engine.dispose()
        await drop_database(url, args.postgres)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument(
        "--postgres", default=os.environ.get("SOMO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    # Healing the seeded pushes (which have no order) puts their money in suspense, and says so.
    logging.getLogger("somo").setLevel(logging.ERROR)
    console = Console()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for backend in args.backends:
            results.append(asyncio.run(run_backend(backend, args, workdir, console)))

    table = Table(
        title=f"Reconciliation of {args.records:,} statement lines, {args.per_class} seeded per class "
        f"({platform.python_version()}, {os.cpu_count()} cores), budget {BUDGET_S:.0f} s"
    )
    for column in ("backend", "baseline s", "dry run s", "heal s", "again s", "dry run / baseline", "all found"):
        table.add_column(column, justify="right")
    failed = False
    for r in results:
        exact = not any(r[f"{name} problems"] for name in ("dry run", "heal", "again"))
        within = all(r[name] <= BUDGET_S for name in ("dry run", "heal", "again"))
        failed |= not (exact and within)
        table.add_row(
            r["backend"],
            f"{r['baseline']:.2f}",
            f"{r['dry run']:.2f}",
            f"{r['heal']:.2f}",
            f"{r['again']:.2f}",
            f"{r['dry run'] / r['baseline']:.1f}x",
            "yes" if exact else "[red]no[/]",
        )
    console.print(table)
    if failed:
        raise SystemExit("reconciliation missed a seeded discrepancy or exceeded the budget")


if __name__ == "__main__":
    main()
