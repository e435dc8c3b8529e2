"""M-Pesa STK checkout end to end: our app and the Daraja simulator talk over loopback HTTP,
and the simulator's callbacks (with their faults) reach our callback endpoint for real.

The property test at the end drives the domain flows directly with a scripted gateway, to
explore many more orderings than real HTTP timing would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.access import Actor
from lms_domain.clock import FixedClock
from lms_domain.commerce.checkout import place_order
from lms_domain.commerce.models import (
    Invoice,
    InvoiceStatus,
    Order,
    OrderStatus,
    Price,
    PriceInterval,
    Product,
    ProductKind,
    Receipt,
)
from lms_domain.commerce.schemas import CartItem, CartRequest
from lms_domain.entitlements.models import Entitlement
from lms_domain.ids import new_id
from lms_domain.ledger.service import trial_balance
from lms_domain.payments import flows
from lms_domain.payments.models import (
    FailureClass,
    IntentStatus,
    Payment,
    PaymentIntent,
    Provider,
    WebhookEvent,
    WebhookStatus,
)
from lms_domain.payments.ports import StkPushAccepted, StkPushRequest, StkQueryResult, StkStatus
from lms_domain.subscriptions.models import Subscription, SubscriptionStatus
from lms_domain.tenancy.models import Role
from server.app import create_app
from server.keys import callback_tasks_key, gateways_key, sessionmaker_key
from server.settings import DatabaseSettings, HttpSettings, PaymentsSettings, RateLimitSettings, Settings
from server.simulators.daraja import (
    SANDBOX_PASSKEY,
    DarajaSimConfig,
    create_daraja_app,
    daraja_simulator_key,
)
from server.simulators.faults import CallbackFaults
from tests.api.conftest import School, _school, login
from tests.conftest import T0
from tests.factories import make_institution, make_learner
from tests.loopback import HeldPort

V1 = "/api/v1"
SECRET = "test-callback-secret-0123456789"
PAID = "0712345670"  # digit 0: success with a callback
DUPLICATED = "0712345680"  # success, the callback delivered three times
SILENT = "0712345676"  # digit 6: success, but the callback is lost; only Query knows
CANCELLED = "0712345672"  # digit 2: 1032 cancelled by the customer
CONTRADICTED = "0712345690"  # success, then a late contradicting 1032 for the same request


def daraja_phone(local: str) -> str:
    return "254" + local[1:]


@dataclass
class Shop:
    client: TestClient
    app: web.Application
    sim: TestServer
    school: School
    clock: FixedClock
    makers: async_sessionmaker[AsyncSession]
    price_id: str = ""

    @property
    def learner_token(self) -> str:
        return self.school.tokens["learner"]

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.learner_token}", **kw.pop("headers", {})}
        response = await self.client.request(method, path, headers=headers, **kw)
        text = await response.text()
        return response.status, (json.loads(text) if text and "json" in response.content_type else text)

    async def order(self) -> dict[str, Any]:
        status, order = await self.call("POST", V1 + "/orders", json={"items": [{"price_id": self.price_id}]})
        assert status == 201, order
        return dict(order)

    async def pay(self, order: dict[str, Any], phone: str) -> dict[str, Any]:
        status, intent = await self.call(
            "POST", V1 + f"/orders/{order['id']}/payments", json={"provider": "mpesa", "phone": phone}
        )
        assert status == 202, intent
        return dict(intent)

    def deliveries(self, checkout_id: str) -> int:
        """Callbacks for ``checkout_id`` that reached our endpoint and got its answer (the log
        records an attempt when it starts, before our server has stored anything)."""
        attempts = self.sim.app[daraja_simulator_key].log.attempts
        return sum(1 for a in attempts if a.key == checkout_id and (a.status is not None or a.error or a.dropped))

    async def settle_down(self, checkout_id: str, deliveries: int) -> None:
        """Wait (10 s at most) until the simulator has sent ``deliveries`` callbacks and we
        processed them all."""
        for _ in range(500):
            if self.deliveries(checkout_id) >= deliveries:
                break
            await asyncio.sleep(0.02)
        assert self.deliveries(checkout_id) == deliveries
        await self.app[callback_tasks_key].drain()

    async def intent(self, intent_id: str) -> PaymentIntent:
        async with self.makers() as session:
            intent = await session.get(PaymentIntent, uuid.UUID(intent_id))
            assert intent is not None
            return intent

    async def count(self, model: Any, *where: Any) -> int:
        async with self.makers() as session:
            return int(await session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
async def shop(database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> Shop:
    sim = await aiohttp_server(
        create_daraja_app(
            DarajaSimConfig(
                # Slow enough that the pay answer (pending) always precedes the callback, even
                # on a loaded machine: a real customer takes seconds to type the PIN.
                processing_ms=250,
                enforce_rule_17=False,  # the same phone pays the same amount in several tests
                msisdn_faults={
                    daraja_phone(DUPLICATED): CallbackFaults(copies=3),
                    daraja_phone(CONTRADICTED): CallbackFaults(contradict_after_ms=50),
                },
            )
        )
    )
    # The app must know its own address before it starts, for the CallBackURL it sends.
    held = HeldPort()  # bound until the app listens: no other test can take it
    port = held.number
    settings = Settings(
        database=DatabaseSettings(url=database_url),
        http=HttpSettings(public_url=f"http://127.0.0.1:{port}"),
        rate_limit=RateLimitSettings(enabled=False),
        payments=PaymentsSettings(
            simulator_url=str(sim.make_url("/")),
            mpesa_consumer_key="sim-consumer-key",
            mpesa_consumer_secret="sim-consumer-secret",
            mpesa_passkey=SANDBOX_PASSKEY,
            callback_secret=SECRET,
        ),
    )
    clock = FixedClock(T0)
    app = create_app(settings, clock=clock)
    server = await aiohttp_server(app, port=held.release())
    client = await aiohttp_client(server)
    makers = app[sessionmaker_key]
    async with makers() as session, session.begin():
        school, logins = await _school(session, "Gamma School", "0711000003")
    for role, name in logins.items():
        school.tokens[role] = await login(client, name)
    shop = Shop(client=client, app=app, sim=sim, school=school, clock=clock, makers=makers)
    admin = {"Authorization": f"Bearer {school.tokens['institution_admin']}"}
    response = await client.post(
        V1 + "/products",
        json={"sku": "SOMO-PREMIUM", "kind": "subscription", "name_en": "Somo Premium"},
        headers=admin,
    )
    product = await response.json()
    response = await client.post(
        V1 + f"/products/{product['id']}/prices", json={"amount_minor": 30_000, "interval": "month"}, headers=admin
    )
    shop.price_id = (await response.json())["id"]
    return shop


async def test_a_paid_prompt_settles_the_order_once_with_receipt_ledger_and_entitlement(shop: Shop) -> None:
    order = await shop.order()
    intent = await shop.pay(order, PAID)
    assert intent["status"] == "pending" and intent["checkout_request_id"].startswith("ws_CO_")
    assert intent["amount_minor"] == 30_000

    await shop.settle_down(intent["checkout_request_id"], 1)
    assert (await shop.intent(intent["id"])).status is IntentStatus.SUCCEEDED
    status, paid = await shop.call("GET", V1 + f"/orders/{order['id']}")
    assert status == 200 and paid["status"] == "paid"
    async with shop.makers() as session:
        invoice = await session.scalar(sa.select(Invoice).where(Invoice.order_id == uuid.UUID(order["id"])))
        assert invoice is not None and invoice.status is InvoiceStatus.PAID
        [payment] = (
            await session.scalars(sa.select(Payment).where(Payment.intent_id == uuid.UUID(intent["id"])))
        ).all()
        assert payment.amount_minor == 30_000 and payment.provider_receipt != intent["checkout_request_id"]
        [receipt] = (await session.scalars(sa.select(Receipt).where(Receipt.payment_id == payment.id))).all()
        assert re.fullmatch(r"RCT-[0-9A-HJKMNP-TV-Z]{12}", receipt.number) and receipt.invoice_id == invoice.id
        books = await trial_balance(session, shop.school.institution.id)
        assert sum(books.values()) == 0
        assert books["mpesa_clearing"] == 30_000 and books["revenue"] + books["vat_payable"] == -30_000
        assert books["vat_payable"] == -(30_000 * 1600 // 11600 + 1)  # VAT rounded half-up: 4138
        # A monthly price starts a subscription, and the entitlement follows its period.
        [subscription] = (
            await session.scalars(sa.select(Subscription).where(Subscription.learner_id == shop.school.learner.id))
        ).all()
        assert subscription.status is SubscriptionStatus.ACTIVE
        [entitlement] = (
            await session.scalars(sa.select(Entitlement).where(Entitlement.source_id == subscription.id))
        ).all()
        assert entitlement.learner_id == shop.school.learner.id and entitlement.course_id is None
        assert entitlement.valid_until == subscription.current_period_end
        assert timedelta(days=28) <= entitlement.valid_until - entitlement.valid_from <= timedelta(days=31)
        [event] = (await session.scalars(sa.select(WebhookEvent))).all()
        assert event.status is WebhookStatus.PROCESSED and event.event_key == intent["checkout_request_id"]

    # A paid order cannot be prompted for again.
    status, problem = await shop.call("POST", V1 + f"/orders/{order['id']}/payments", json={"phone": PAID})
    assert status == 409 and problem["code"] == "order_not_pending"


async def test_three_copies_of_the_callback_settle_once(shop: Shop) -> None:
    intent = await shop.pay(await shop.order(), DUPLICATED)
    await shop.settle_down(intent["checkout_request_id"], 3)
    assert (await shop.intent(intent["id"])).status is IntentStatus.SUCCEEDED
    assert await shop.count(Payment) == 1 and await shop.count(Receipt) == 1 and await shop.count(Entitlement) == 1
    assert await shop.count(WebhookEvent) == 1  # exact duplicates collapse into the inbox row
    async with shop.makers() as session:
        assert (await trial_balance(session, shop.school.institution.id))["mpesa_clearing"] == 30_000


async def test_a_lost_callback_is_settled_by_stk_query(shop: Shop) -> None:
    intent = await shop.pay(await shop.order(), SILENT)
    await asyncio.sleep(0.5)  # well past the simulated customer's answer (250 ms)
    assert shop.deliveries(intent["checkout_request_id"]) == 0
    assert (await shop.intent(intent["id"])).status is IntentStatus.PENDING

    async def poll() -> dict[uuid.UUID, IntentStatus]:
        return await flows.poll_silent_intents(
            sessions=shop.makers, gateways=shop.app[gateways_key], clock=shop.clock, older_than=timedelta(minutes=1)
        )

    assert await poll() == {}  # not pending long enough yet: nothing is asked
    shop.clock.advance(timedelta(minutes=2))
    assert await poll() == {uuid.UUID(intent["id"]): IntentStatus.SUCCEEDED}
    assert await shop.count(Payment) == 1 and await shop.count(Receipt) == 1
    assert await poll() == {}
    assert await shop.count(Payment) == 1


async def test_a_cancelled_prompt_fails_the_intent_and_leaves_the_order_payable(shop: Shop) -> None:
    order = await shop.order()
    intent = await shop.pay(order, CANCELLED)
    await shop.settle_down(intent["checkout_request_id"], 1)
    failed = await shop.intent(intent["id"])
    assert failed.status is IntentStatus.FAILED and failed.failure_class is FailureClass.CUSTOMER
    assert failed.result_code == "1032"
    status, body = await shop.call("GET", V1 + f"/orders/{order['id']}")
    assert body["status"] == "pending"
    assert await shop.count(Payment) == 0 and await shop.count(Entitlement) == 0


async def test_a_late_contradicting_result_is_an_anomaly_not_a_reversal(shop: Shop) -> None:
    intent = await shop.pay(await shop.order(), CONTRADICTED)
    await shop.settle_down(intent["checkout_request_id"], 2)
    assert (await shop.intent(intent["id"])).status is IntentStatus.SUCCEEDED
    assert await shop.count(Payment) == 1
    async with shop.makers() as session:
        events = (await session.scalars(sa.select(WebhookEvent).order_by(WebhookEvent.received_at))).all()
    assert [e.status for e in events] == [WebhookStatus.PROCESSED, WebhookStatus.IGNORED]
    assert events[1].error is not None and events[1].error.startswith("anomaly: ResultCode 1032")


async def test_a_wrong_secret_is_404_and_stores_nothing(shop: Shop) -> None:
    body = {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": 1032, "ResultDesc": "x"}}}
    response = await shop.client.post("/callbacks/mpesa/not-the-secret/stk", json=body)
    assert response.status == 404
    assert await shop.count(WebhookEvent) == 0


async def test_malformed_callbacks_are_400_and_only_json_is_kept(shop: Shop) -> None:
    response = await shop.client.post(f"/callbacks/mpesa/{SECRET}/stk", data=b"<xml/>")
    assert response.status == 400 and response.content_type == "application/problem+json"
    assert await shop.count(WebhookEvent) == 0
    success_without_metadata = {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_2", "ResultCode": 0}}}
    response = await shop.client.post(f"/callbacks/mpesa/{SECRET}/stk", json=success_without_metadata)
    assert response.status == 400
    async with shop.makers() as session:
        [event] = (await session.scalars(sa.select(WebhookEvent))).all()
    assert event.status is WebhookStatus.FAILED and event.event_key == "ws_CO_2"
    assert await shop.count(Payment) == 0


# The property ------------------------------------------------------------------------------


class ScriptedGateway:
    """The port, answering pushes at once and queries as the test scripts them."""

    def __init__(self) -> None:
        self.answers: dict[str, StkQueryResult] = {}
        self.pushed = 0

    async def stk_push(self, request: StkPushRequest) -> StkPushAccepted:
        self.pushed += 1
        return StkPushAccepted(f"m-{self.pushed}", f"ws_CO_{uuid.uuid4().hex[:20]}", "Success")

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        return self.answers[checkout_request_id]


QUERY_ANSWERS = {
    "query_success": StkQueryResult(StkStatus.SUCCEEDED, "0", "ok"),
    "query_failure": StkQueryResult(StkStatus.FAILED, "1032", "cancelled", FailureClass.CUSTOMER),
    "query_pending": StkQueryResult(StkStatus.PENDING),
}
OPS = ("success_cb", "failure_cb", "query_success", "query_failure", "query_pending")


def callback_body(checkout_id: str, op: str, amount_minor: int) -> bytes:
    callback: dict[str, Any] = {"MerchantRequestID": "m", "CheckoutRequestID": checkout_id}
    if op == "success_cb":
        callback |= {"ResultCode": 0, "ResultDesc": "ok"}
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": amount_minor // 100},
                {"Name": "MpesaReceiptNumber", "Value": "R" + hashlib.sha256(checkout_id.encode()).hexdigest()[:9]},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": 20261127101500},
            ]
        }
    else:
        callback |= {"ResultCode": 1032, "ResultDesc": "Request cancelled by user"}
    return json.dumps({"Body": {"stkCallback": callback}}).encode()


async def store_callback(session: AsyncSession, checkout_id: str, body: bytes) -> uuid.UUID:
    """What the endpoint does: one inbox row per distinct (key, body)."""
    digest = hashlib.sha256(body).hexdigest()
    existing = await session.scalar(
        sa.select(WebhookEvent.id).where(WebhookEvent.event_key == checkout_id, WebhookEvent.body_sha256 == digest)
    )
    if existing is not None:
        return existing
    event = WebhookEvent(
        id=new_id(),
        provider=Provider.MPESA,
        kind=flows.STK_CALLBACK_KIND,
        event_key=checkout_id,
        body_sha256=digest,
        body=body.decode(),
    )
    session.add(event)
    await session.flush()
    return event.id


def model_step(state: str, op: str) -> str:
    """The reference: one-way states, and only a Query may revive a failed intent."""
    if state == "settled":
        return state
    if op == "query_success" or (op == "success_cb" and state == "pending"):
        return "settled"
    if op in ("failure_cb", "query_failure") and state == "pending":
        return "failed"
    return state


Sessionmaker = async_sessionmaker[AsyncSession]


# Function-scoped fixtures are fine here: each example makes its own institution, so examples
# never see each other's rows, and the database is only the fixture's container.
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[*settings().suppress_health_check, HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(OPS)), min_size=1, max_size=14))
async def test_any_interleaving_settles_each_intent_at_most_once(
    sessionmaker: Sessionmaker, clock: FixedClock, ops: list[tuple[int, str]]
) -> None:
    gateway = ScriptedGateway()
    async with sessionmaker() as session, session.begin():
        institution = await make_institution(session)
        learner = await make_learner(session, institution=institution)
        product = Product(
            id=new_id(),
            institution_id=institution.id,
            sku="PREMIUM",
            kind=ProductKind.SUBSCRIPTION,
            name_en="Premium",
        )
        session.add(product)
        await session.flush()
        price = Price(
            id=new_id(),
            institution_id=institution.id,
            product_id=product.id,
            amount_minor=30_000,
            interval=PriceInterval.MONTH,
        )
        session.add(price)
        await session.flush()
    actor = Actor(user_id=None, role=Role.LEARNER, institution_id=institution.id, learner_id=learner.id)
    intents: list[PaymentIntent] = []
    for n in range(3):
        async with sessionmaker() as session, session.begin():
            order = await place_order(
                session=session, actor=actor, data=CartRequest(items=[CartItem(price_id=price.id)]), clock=clock
            )
        intents.append(
            await flows.start_stk_payment(
                sessions=sessionmaker,
                actor=actor,
                order_id=order.id,
                msisdn="0712345670",
                idempotency_key=f"prop-{order.id}-{n}",
                gateway=gateway,
                clock=clock,
                callback_url="https://example.test/cb",
            )
        )
    states = ["pending"] * 3
    for index, op in ops:
        intent = intents[index]
        checkout_id = intent.provider_request_id
        assert checkout_id is not None
        async with sessionmaker() as session, session.begin():
            if op in QUERY_ANSWERS:
                gateway.answers[checkout_id] = QUERY_ANSWERS[op]
                await flows.apply_query_result(session, intent.id, gateway, clock)
            else:
                event_id = await store_callback(session, checkout_id, callback_body(checkout_id, op, 30_000))
                await flows.settle_from_callback(session, event_id, clock)
        states[index] = model_step(states[index], op)

    async with sessionmaker() as session:
        for intent, state in zip(intents, states, strict=True):
            stored = await session.get(PaymentIntent, intent.id)
            assert stored is not None
            payments = await session.scalar(
                sa.select(sa.func.count()).select_from(Payment).where(Payment.intent_id == intent.id)
            )
            paid_order = await session.get(Order, intent.order_id)
            assert paid_order is not None
            expected = {"pending": IntentStatus.PENDING, "failed": IntentStatus.FAILED}.get(
                state, IntentStatus.SUCCEEDED
            )
            assert stored.status is expected, (state, ops)
            assert payments == (1 if state == "settled" else 0)
            assert paid_order.status is (OrderStatus.PAID if state == "settled" else OrderStatus.PENDING)
        books = await trial_balance(session, institution.id)
        assert sum(books.values()) == 0
        assert books["mpesa_clearing"] == 30_000 * states.count("settled")
        receipts = await session.scalar(
            sa.select(sa.func.count()).select_from(Receipt).where(Receipt.institution_id == institution.id)
        )
        assert receipts == states.count("settled")
