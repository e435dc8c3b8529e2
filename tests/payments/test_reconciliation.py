"""Reconciliation: a day seeded with every case, classified, healed exactly once; the statement
parser (including arbitrary text); and ``somo reconcile`` run as an operator would."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.access import Actor
from lms_domain.clock import NAIROBI, FixedClock
from lms_domain.commerce.checkout import place_order
from lms_domain.commerce.models import Order, OrderStatus, Price, PriceInterval, Product, ProductKind
from lms_domain.commerce.schemas import CartItem, CartRequest
from lms_domain.ids import new_id
from lms_domain.ledger.service import trial_balance
from lms_domain.payments import flows, reversals
from lms_domain.payments.models import IntentStatus, Payment, PaymentIntent, Provider, WebhookEvent
from lms_domain.payments.ports import StkPushAccepted, StkPushRequest, StkQueryResult, StkStatus
from lms_domain.payments.reconciliation import (
    Discrepancy,
    DiscrepancyClass,
    ProviderRecord,
    ReconciliationReport,
    RecordKind,
    RecordSource,
    day_window,
    reconcile_day,
)
from lms_domain.payments.statement import STATEMENT_COLUMNS, parse_statement
from lms_domain.tenancy.models import Institution, Learner, Role
from server.reconcile import run_reconciliation
from server.settings import DatabaseSettings, PaymentsSettings, Settings
from server.simulators.daraja import DarajaSimConfig, create_daraja_app
from tests.conftest import T0
from tests.factories import make_institution, make_learner

DAY = date(2026, 11, 27)  # T0 is 10:00 on this day in Nairobi
PRICE = 30_000  # KES 300
SOMO = Path(sys.executable).parent / "somo"
HEADER = list(STATEMENT_COLUMNS)
Sessionmaker = async_sessionmaker[AsyncSession]
MISSING = DiscrepancyClass.MISSING_IN_LEDGER
AT_PROVIDER = DiscrepancyClass.MISSING_AT_PROVIDER
AMOUNT = DiscrepancyClass.AMOUNT_MISMATCH
DUPLICATE = DiscrepancyClass.DUPLICATE


# Statement lines ---------------------------------------------------------------------------------


def shillings(amount_minor: int) -> str:
    return f"{amount_minor // 100:,}.00"


def line(
    receipt: str,
    at: datetime,
    amount_minor: int,
    *,
    linked: str = "",
    account: str = "",
    reason: str = "Pay Bill Online",
    withdrawn: bool = False,
    status: str = "Completed",
    party: str = "254712345670 - WANJIKU TEST",
) -> dict[str, str]:
    local = at.astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "Receipt No.": receipt,
        "Completion Time": local,
        "Initiation Time": local,
        "Details": f"{reason} from {party} Acc. {account}",
        "Transaction Status": status,
        "Paid In": "" if withdrawn else shillings(amount_minor),
        "Withdrawn": f"-{shillings(amount_minor)}" if withdrawn else "",
        "Balance": "1,000,000.00",
        "Balance Confirmed": "true",
        "Reason Type": reason,
        "Other Party Info": party,
        "Linked Transaction ID": linked,
        "A/C No.": account,
    }


def statement_csv(rows: list[dict[str, str]], *, preamble: bool = True) -> str:
    out = io.StringIO()
    if preamble:
        out.write("\ufeffAccount Holder:,Somo Test School\nShort Code:,174379\n\n")
    writer = csv.DictWriter(out, fieldnames=HEADER, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        out.write("\r\n")  # the portal leaves blank lines; they must not count as bad ones
    return out.getvalue()


# A seeded day ------------------------------------------------------------------------------------


class ScriptedGateway:
    """The STK port: every push accepted, every query answered as the test scripts it."""

    def __init__(self) -> None:
        self.answers: dict[str, StkQueryResult] = {}

    async def stk_push(self, request: StkPushRequest) -> StkPushAccepted:
        return StkPushAccepted(f"m-{uuid.uuid4().hex[:8]}", f"ws_CO_{uuid.uuid4().hex[:20]}", "Success")

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        return self.answers[checkout_request_id]


def callback_body(checkout_id: str, *, receipt: str | None, amount_minor: int, at: datetime) -> bytes:
    callback: dict[str, Any] = {"MerchantRequestID": "m", "CheckoutRequestID": checkout_id}
    if receipt is None:
        callback |= {"ResultCode": 1032, "ResultDesc": "Request cancelled by user"}
    else:
        callback |= {"ResultCode": 0, "ResultDesc": "The service request is processed successfully."}
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": amount_minor // 100},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": int(at.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S"))},
                {"Name": "PhoneNumber", "Value": 254712345670},
            ]
        }
    return json.dumps({"Body": {"stkCallback": callback}}).encode()


@dataclass
class Day:
    """Every case of a reconciliation, seeded through the real flows."""

    sessions: Sessionmaker
    clock: FixedClock
    institution: Institution
    learner: Learner
    gateway: ScriptedGateway
    actor: Actor
    price_id: uuid.UUID
    intents: dict[str, PaymentIntent] = field(default_factory=dict)
    lines: list[dict[str, str]] = field(default_factory=list)

    async def order(self) -> uuid.UUID:
        async with self.sessions() as session, session.begin():
            order = await place_order(
                session=session,
                actor=self.actor,
                data=CartRequest(items=[CartItem(price_id=self.price_id)]),
                clock=self.clock,
            )
        return order.id

    async def push(self, name: str, order_id: uuid.UUID | None = None) -> PaymentIntent:
        self.clock.advance(timedelta(minutes=3))  # past the in-flight window of the previous push
        intent = await flows.start_stk_payment(
            sessions=self.sessions,
            actor=self.actor,
            order_id=order_id or await self.order(),
            msisdn="0712345670",
            idempotency_key=f"rec-{name}",
            gateway=self.gateway,
            clock=self.clock,
            callback_url="https://example.test/cb",
        )
        assert intent.status is IntentStatus.PENDING and intent.provider_request_id
        self.intents[name] = intent
        return intent

    def checkout(self, name: str) -> str:
        checkout_id = self.intents[name].provider_request_id
        assert checkout_id is not None
        return checkout_id

    async def callback(self, name: str, receipt: str | None, amount_minor: int = PRICE) -> None:
        """What the callback endpoint and its background task do: inbox row, then settle."""
        body = callback_body(self.checkout(name), receipt=receipt, amount_minor=amount_minor, at=self.clock.now())
        async with self.sessions() as session, session.begin():
            event = WebhookEvent(
                id=new_id(),
                provider=Provider.MPESA,
                kind=flows.STK_CALLBACK_KIND,
                event_key=self.checkout(name),
                body_sha256=hashlib.sha256(body).hexdigest(),
                body=body.decode(),
                received_at=self.clock.now(),
            )
            session.add(event)
            await session.flush()
            await flows.settle_from_callback(session, event.id, self.clock)

    async def query_success(self, name: str) -> None:
        self.gateway.answers[self.checkout(name)] = StkQueryResult(StkStatus.SUCCEEDED, "0", "ok")
        async with self.sessions() as session, session.begin():
            await flows.apply_query_result(session, self.intents[name].id, self.gateway, self.clock)

    def on_statement(self, receipt: str, amount_minor: int = PRICE, **kw: Any) -> None:
        self.lines.append(line(receipt, self.clock.now(), amount_minor, account=self.learner.account_no, **kw))

    def statement(self) -> str:
        return statement_csv(self.lines)

    def records(self) -> list[ProviderRecord]:
        parsed = parse_statement(self.statement())
        assert parsed.bad_lines == [], parsed.bad_lines
        return parsed.records


async def seed_day(sessions: Sessionmaker, clock: FixedClock) -> Day:
    """One case of each kind, on 27 November 2026 (Nairobi):

    paid      callback and statement agree                 -> matched
    queried   settled by STK Query, statement has receipt   -> matched, receipt back-filled
    pending   no callback, statement has it                 -> missing in ledger, healed
    revived   failure callback, statement says paid         -> missing in ledger, healed
    contested failure, then a success callback only        -> missing in ledger, not healed
    c2b       paybill payment on the statement only         -> missing in ledger, not healed
    phantom   settled by Query, provider has no receipt     -> missing at provider
    short     statement amount differs from the payment     -> amount mismatch
    twice-2   second prompt for an already paid order       -> duplicate
    """
    async with sessions() as session, session.begin():
        institution = await make_institution(session)
        learner = await make_learner(session, institution=institution)
        product = Product(
            id=new_id(), institution_id=institution.id, sku="PREMIUM", kind=ProductKind.SUBSCRIPTION, name_en="Premium"
        )
        session.add(product)
        await session.flush()
        price = Price(
            id=new_id(),
            institution_id=institution.id,
            product_id=product.id,
            amount_minor=PRICE,
            interval=PriceInterval.MONTH,
        )
        session.add(price)
    actor = Actor(user_id=None, role=Role.LEARNER, institution_id=institution.id, learner_id=learner.id)
    day = Day(sessions, clock, institution, learner, ScriptedGateway(), actor, price.id)

    await day.push("paid")
    await day.callback("paid", "SKR1000001")
    day.on_statement("SKR1000001", linked=day.checkout("paid"))

    await day.push("queried")
    await day.query_success("queried")
    day.on_statement("SKR1000002", linked=day.checkout("queried"))

    await day.push("pending")
    day.on_statement("SKR1000003", linked=day.checkout("pending"))

    await day.push("revived")
    await day.callback("revived", None)
    day.on_statement("SKR1000004", linked=day.checkout("revived"))

    await day.push("contested")
    await day.callback("contested", None)
    await day.callback("contested", "SKR1000005")

    day.on_statement("SKR1000006", 50_000, reason="Pay Bill", linked="")

    await day.push("phantom")
    await day.query_success("phantom")

    await day.push("short")
    await day.callback("short", "SKR1000008")
    day.on_statement("SKR1000008", 25_000, linked=day.checkout("short"))

    order_id = await day.order()
    await day.push("twice-1", order_id)
    await day.push("twice-2", order_id)
    await day.callback("twice-1", "SKR1000009")
    day.on_statement("SKR1000009", linked=day.checkout("twice-1"))
    day.clock.advance(timedelta(minutes=1))
    await day.callback("twice-2", "SKR1000010")
    day.on_statement("SKR1000010", linked=day.checkout("twice-2"))

    # Noise the parser and the day window must shrug off.
    day.lines.append(line("SKR0999999", T0 - timedelta(days=1), PRICE))  # the day before
    day.lines.append(line("SKR1000011", clock.now(), PRICE, status="Failed"))
    return day


def by_class(report: ReconciliationReport) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {c.value: set() for c in DiscrepancyClass}
    for d in report.discrepancies:
        found[d.category.value].add(d.receipt or "")
    return found


def one(report: ReconciliationReport, receipt: str) -> Discrepancy:
    [found] = [d for d in report.discrepancies if d.receipt == receipt]
    return found


async def test_every_class_is_found_and_only_the_safe_one_is_healed(
    sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    day = await seed_day(sessionmaker, clock)
    phantom = day.checkout("phantom")

    dry = await reconcile_day(sessionmaker, DAY, day.records(), clock=clock, heal=False)
    assert by_class(dry) == {
        "missing_in_ledger": {"SKR1000003", "SKR1000004", "SKR1000005", "SKR1000006"},
        "missing_at_provider": {phantom},
        "amount_mismatch": {"SKR1000008"},
        "duplicate": {"SKR1000010"},
    }
    assert {d.receipt for d in dry.discrepancies if d.healable} == {"SKR1000003", "SKR1000004"}
    assert dry.healed == [] and [b.applied for b in dry.backfills] == [False]
    assert one(dry, "SKR1000005").reason.startswith("a callback reports success for a failed intent")
    assert one(dry, "SKR1000006").record_kind == RecordKind.C2B
    assert one(dry, "SKR1000008").provider_amount_minor == 25_000
    assert one(dry, "SKR1000008").ledger_amount_minor == PRICE
    assert one(dry, phantom).category is AT_PROVIDER
    assert dry.provider_records == 9 and dry.ledger_payments == 6
    async with sessionmaker() as session:  # a dry run changes nothing
        assert await session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 6

    healed = await reconcile_day(sessionmaker, DAY, day.records(), clock=clock, heal=True)
    assert {d.receipt for d in healed.healed} == {"SKR1000003", "SKR1000004"}
    assert {d.receipt for d in healed.open} == {"SKR1000005", "SKR1000006", phantom, "SKR1000008", "SKR1000010"}
    assert [(b.receipt, b.applied) for b in healed.backfills] == [("SKR1000002", True)]

    async with sessionmaker() as session:
        for name, receipt in (("pending", "SKR1000003"), ("revived", "SKR1000004"), ("queried", "SKR1000002")):
            intent = await session.get(PaymentIntent, day.intents[name].id)
            assert intent is not None and intent.status is IntentStatus.SUCCEEDED
            [payment] = (await session.scalars(sa.select(Payment).where(Payment.intent_id == intent.id))).all()
            assert payment.provider_receipt == receipt and payment.amount_minor == PRICE
            order = await session.get(Order, intent.order_id)
            assert order is not None and order.status is OrderStatus.PAID

    # Healing again finds the same open discrepancies and heals nothing more.
    again = await reconcile_day(sessionmaker, DAY, day.records(), clock=clock, heal=True)
    assert again.healed == [] and again.backfills == []
    assert {d.receipt for d in again.open} == {d.receipt for d in healed.open}
    assert again.matched == healed.matched + 2  # the two healed now match their statement lines
    async with sessionmaker() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 8
        books = await trial_balance(session, day.institution.id)
        assert sum(books.values()) == 0
        assert books["mpesa_clearing"] == 8 * PRICE


async def test_a_receipt_missing_in_the_ledger_settles_once_even_when_two_runs_race(
    sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    day = await seed_day(sessionmaker, clock)
    records = day.records()
    first, second = await asyncio.gather(
        reconcile_day(sessionmaker, DAY, records, clock=clock, heal=True),
        reconcile_day(sessionmaker, DAY, records, clock=clock, heal=True),
    )
    healed = [d.receipt or "" for d in [*first.healed, *second.healed]]
    assert sorted(healed) == ["SKR1000003", "SKR1000004"]  # each once, whichever run won
    async with sessionmaker() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 8
        assert sum((await trial_balance(session, day.institution.id)).values()) == 0


async def test_inbox_alone_does_not_claim_payments_missing_at_provider(
    sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    day = await seed_day(sessionmaker, clock)
    report = await reconcile_day(sessionmaker, DAY, [], clock=clock, heal=False, check_missing_at_provider=False)
    assert by_class(report)["missing_at_provider"] == set()
    # The inbox still knows the contested success and the payment recorded twice for one order.
    assert {"SKR1000005"} <= by_class(report)["missing_in_ledger"]
    assert by_class(report)["duplicate"] == {"SKR1000010"}
    assert one(report, "SKR1000005").sources == (RecordSource.INBOX,)
    # The other day sees none of it.
    other = await reconcile_day(sessionmaker, DAY + timedelta(days=1), day.records(), clock=clock, heal=True)
    assert other.discrepancies == [] and other.provider_records == 0 and other.ledger_payments == 0


async def test_a_transaction_status_result_in_the_inbox_is_provider_truth(
    sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    """Filed where the callbacks endpoint files org-API results (``reversals.RESULT_KIND``)."""
    await seed_day(sessionmaker, clock)
    finalised = clock.now().astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")
    body = json.dumps(
        {
            "Result": {
                "ConversationID": "AG_20261127_00004933440000000001",
                "OriginatorConversationID": "3213-416199-2",
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "ResultType": 0,
                "TransactionID": "SKR1000003",
                "ResultParameters": {
                    "ResultParameter": [
                        {"Key": "ReceiptNo", "Value": "SKR1000003"},
                        {"Key": "TransactionStatus", "Value": "Completed"},
                        {"Key": "FinalisedTime", "Value": finalised},
                        {"Key": "Amount", "Value": str(PRICE // 100)},
                        {"Key": "TransactionReason"},
                    ]
                },
            }
        }
    ).encode()
    async with sessionmaker() as session, session.begin():
        session.add(
            WebhookEvent(
                id=new_id(),
                provider=Provider.MPESA,
                kind=reversals.RESULT_KIND,
                event_key="AG_20261127_00004933440000000001",
                body_sha256=hashlib.sha256(body).hexdigest(),
                body=body.decode(),
                received_at=clock.now(),
            )
        )
    report = await reconcile_day(sessionmaker, DAY, [], clock=clock, heal=False, check_missing_at_provider=False)
    assert "SKR1000003" in by_class(report)["missing_in_ledger"]
    assert one(report, "SKR1000003").sources == (RecordSource.TRANSACTION_STATUS,)


async def test_a_query_settlement_after_midnight_matches_the_statement_of_its_day(
    sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    """The transaction is on the 27th, the Query that settled it answered on the 28th: it is
    found on the 27th (by CheckoutRequestID, another day's payment) and back-filled."""
    day = await seed_day(sessionmaker, clock)
    await day.push("late")
    day.on_statement("SKR1000020", linked=day.checkout("late"))
    day.clock.advance(timedelta(days=1))
    await day.query_success("late")
    report = await reconcile_day(sessionmaker, DAY, day.records(), clock=clock, heal=True)
    assert "SKR1000020" not in {d.receipt for d in report.discrepancies}
    assert ("SKR1000020", True) in [(b.receipt, b.applied) for b in report.backfills]


async def test_a_session_runs_everything_in_the_callers_transaction(
    sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    day = await seed_day(sessionmaker, clock)
    async with sessionmaker() as session:
        report = await reconcile_day(session, DAY, day.records(), clock=clock, heal=True)
        assert len(report.healed) == 2
        assert await session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 8
        await session.rollback()
    async with sessionmaker() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 6


# The statement parser ------------------------------------------------------------------------------


def test_the_portal_csv_is_parsed_with_its_quirks() -> None:
    at = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    rows = [
        line("SKR2000001", at, 120_000, linked="ws_CO_27112026123000123712345670", account="1234567890"),
        line("SKR2000002", at, 1_250_000, reason="Pay Bill", party="2547 ***** 670 - W T", account="12 345"),
        line("SKR2000003", at, 120_000, withdrawn=True, reason="Reversal", linked="SKR2000001"),
        line("SKR2000004", at, 5_000, withdrawn=True, reason="Business Charges"),  # not a collection
        line("SKR2000005", at, 5_000, status="Cancelled"),
    ]
    rows[1]["Details"] = 'Pay Bill from "W, T" Acc. 12 345'  # quotes and commas inside a field
    parsed = parse_statement(statement_csv(rows).encode())
    assert parsed.bad_lines == [] and parsed.skipped == 2
    stk, c2b, reversal = parsed.records
    assert stk == ProviderRecord(
        provider="mpesa",
        receipt="SKR2000001",
        amount_minor=120_000,
        currency="KES",
        occurred_at=at,
        msisdn="254712345670",
        account_reference="1234567890",
        checkout_request_id="ws_CO_27112026123000123712345670",
        kind=RecordKind.STK,
        source=RecordSource.STATEMENT,
    )
    assert (c2b.kind, c2b.amount_minor, c2b.msisdn, c2b.account_reference) == ("c2b", 1_250_000, None, "12 345")
    assert (reversal.kind, reversal.original_receipt, reversal.amount_minor) == ("reversal", "SKR2000001", 120_000)


def test_bad_lines_are_reported_and_the_rest_is_kept() -> None:
    at = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    good = line("SKR3000001", at, PRICE)
    bad_amount = line("SKR3000002", at, PRICE) | {"Paid In": "3OO.00"}
    cents = line("SKR3000003", at, PRICE) | {"Paid In": "300.005"}
    both = line("SKR3000004", at, PRICE) | {"Withdrawn": "1.00"}
    bad_time = line("SKR3000005", at, PRICE) | {"Completion Time": "27/13/2026 25:00", "Initiation Time": ""}
    bad_receipt = line("not a receipt", at, PRICE)
    text = statement_csv([good, bad_amount, cents, both, bad_time, bad_receipt]) + 'SKR3000006,"unterminated\n'
    parsed = parse_statement(text)
    assert [r.receipt for r in parsed.records] == ["SKR3000001"]
    reasons = [b.reason for b in parsed.bad_lines]
    assert len(reasons) == 6, parsed.bad_lines
    assert "not an amount" in reasons[0] and "decimals" in reasons[1] and "exactly one" in reasons[2]
    assert "not a time" in reasons[3] and "receipt" in reasons[4]
    assert all(b.line > 0 for b in parsed.bad_lines)


def test_a_file_without_the_header_is_one_bad_line() -> None:
    parsed = parse_statement(b"SKR3000001,2026-11-27 10:00:00,,x,Completed,300.00\n")
    assert parsed.records == [] and [b.reason for b in parsed.bad_lines] == ["no header line with 'Receipt No.' found"]
    assert parse_statement(b"").bad_lines == []
    header_only = parse_statement(",".join(HEADER[:3]) + "\n")
    assert header_only.bad_lines[0].reason.startswith("header lacks")


@given(st.one_of(st.text(), st.binary()))
def test_arbitrary_text_never_raises(data: str | bytes) -> None:
    parsed = parse_statement(data)
    assert all(isinstance(b.reason, str) and b.reason for b in parsed.bad_lines)


@given(
    body=st.text(max_size=300),
    prefix=st.sampled_from(["", ",".join(HEADER) + "\n", ",".join(HEADER) + "\r\nSKR1000001,"]),
)
def test_arbitrary_lines_after_a_header_never_raise(body: str, prefix: str) -> None:
    parsed = parse_statement(prefix + body)
    for record in parsed.records:
        assert record.amount_minor > 0 and record.occurred_at.tzinfo is not None


@given(
    st.lists(
        st.tuples(
            st.integers(1, 250_000),
            st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
            st.booleans(),
        ),
        max_size=20,
    )
)
def test_well_formed_lines_round_trip(payments: list[tuple[int, datetime, bool]]) -> None:
    rows = [
        line(f"SKR{n:07d}", at.replace(microsecond=0, tzinfo=NAIROBI), kes * 100, linked="ws_CO_1" if stk else "")
        for n, (kes, at, stk) in enumerate(payments)
    ]
    parsed = parse_statement(statement_csv(rows, preamble=bool(len(rows) % 2)))
    assert parsed.bad_lines == []
    assert [(r.amount_minor, r.occurred_at, r.kind) for r in parsed.records] == [
        (kes * 100, at.replace(microsecond=0, tzinfo=NAIROBI), "stk") for kes, at, _stk in payments
    ]


# The server side: fetching the statement, and the command ------------------------------------------


def test_day_window_is_the_nairobi_day() -> None:
    assert day_window(DAY) == (datetime(2026, 11, 26, 21, tzinfo=UTC), datetime(2026, 11, 27, 21, tzinfo=UTC))


async def test_the_simulators_statement_is_fetched_and_an_unreachable_one_is_a_warning(
    sessionmaker: Sessionmaker, clock: FixedClock, database_url: str, aiohttp_server: AiohttpServer
) -> None:
    """The Daraja simulator's own ``/sim/statement``, over loopback, with the day's lines injected."""
    day = await seed_day(sessionmaker, clock)
    sim = await aiohttp_server(create_daraja_app(DarajaSimConfig()))
    async with (
        aiohttp.ClientSession() as http,
        http.post(sim.make_url("/sim/statement/inject"), json=day.lines) as response,
    ):
        assert response.status == 200, await response.text()
    url = str(sim.make_url("/"))
    settings = Settings(database=DatabaseSettings(url=database_url), payments=PaymentsSettings(simulator_url=url))

    run = await run_reconciliation(sessionmaker, settings, DAY, heal=False, clock=clock)
    assert run.warnings == [] and run.statements[0].location == f"{url}sim/statement?date=2026-11-27"
    assert run.statements[0].records == 8 and run.statements[0].skipped == 1  # the day's lines only
    assert run.report.checked_missing_at_provider
    from_file = await reconcile_day(sessionmaker, DAY, day.records(), clock=clock, heal=False)
    assert by_class(run.report) == by_class(from_file)

    await sim.close()
    offline = await run_reconciliation(sessionmaker, settings, DAY, heal=False, clock=clock)
    assert len(offline.warnings) == 1 and "statement unavailable" in offline.warnings[0]
    assert not offline.report.checked_missing_at_provider
    assert by_class(offline.report)["missing_at_provider"] == set()


def somo(database_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SOMO_")}
    env |= {"SOMO_DATABASE__URL": database_url, "SOMO_PAYMENTS__SIMULATOR_URL": "http://127.0.0.1:9"}
    return subprocess.run(
        [str(SOMO), "reconcile", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


async def test_somo_reconcile_heals_reports_and_exits_by_what_is_left(
    sessionmaker: Sessionmaker, clock: FixedClock, database_url: str, tmp_path: Path
) -> None:
    day = await seed_day(sessionmaker, clock)
    path = tmp_path / "statement.csv"
    path.write_text(day.statement(), encoding="utf-8")

    dry = await asyncio.to_thread(
        somo, database_url, "--date", "2026-11-27", "--statement", str(path), "--json", "--dry-run", cwd=tmp_path
    )
    assert dry.returncode == 1, dry.stderr
    assert dry.stderr.strip().splitlines() == ["somo reconcile: 7 discrepancies remain for a person to resolve"]
    report = json.loads(dry.stdout)
    assert report["counts"]["missing_in_ledger"] == {"found": 4, "healed": 0, "open": 4}
    assert report["heal"] is False and report["receipts_to_backfill"] == 1

    healed = await asyncio.to_thread(
        somo, database_url, "--date", "2026-11-27", "--statement", str(path), "--json", cwd=tmp_path
    )
    assert healed.returncode == 1, healed.stderr
    report = json.loads(healed.stdout)
    assert report["healed"] == 2 and report["open"] == 5 and report["receipts_backfilled"] == 1
    assert {d["receipt"] for d in report["discrepancies"] if d["healed"]} == {"SKR1000003", "SKR1000004"}
    assert report["counts"] == {
        "missing_in_ledger": {"found": 4, "healed": 2, "open": 2},
        "missing_at_provider": {"found": 1, "healed": 0, "open": 1},
        "amount_mismatch": {"found": 1, "healed": 0, "open": 1},
        "duplicate": {"found": 1, "healed": 0, "open": 1},
    }
    assert report["statements"][0]["location"] == str(path) and report["statements"][0]["bad_lines"] == []

    table = await asyncio.to_thread(somo, database_url, "--date", "2026-11-27", "--statement", str(path), cwd=tmp_path)
    assert table.returncode == 1
    assert "Reconciliation of 2026-11-27" in table.stdout and "missing at provider" in table.stdout
    assert "SKR1000008" in table.stdout

    # A day with nothing on either side is clean: exit 0. The simulator is not running, so the
    # default statement is a warning, not a failure.
    quiet = await asyncio.to_thread(somo, database_url, "--date", "2026-11-20", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    [warning] = quiet.stderr.strip().splitlines()
    assert warning.startswith(
        "warning: statement unavailable (cannot fetch http://127.0.0.1:9/sim/statement?date=2026-11-20"
    )

    missing = await asyncio.to_thread(
        somo, database_url, "--date", "2026-11-27", "--statement", str(tmp_path / "nope.csv"), cwd=tmp_path
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"somo reconcile: cannot read {tmp_path / 'nope.csv'}: No such file or directory"
    ]

    async with sessionmaker() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 8
        assert sum((await trial_balance(session, day.institution.id)).values()) == 0


def test_a_bad_date_is_a_usage_error(tmp_path: Path) -> None:
    result = somo("sqlite+aiosqlite:///" + str(tmp_path / "x.db"), "--date", "27-11-2026", cwd=tmp_path)
    assert result.returncode == 2 and "is not a date: use YYYY-MM-DD" in result.stderr
