"""Every way money arrives or leaves, end to end over real HTTP: the server and the Daraja and
Airtel simulators on loopback, no mocks. Airtel collections settle only by enquiry; paybill
payments pay an order, or wait in suspense for an admin; refunds go back by Reversal; renewals
prompt once per approval and extend the subscription."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import FixedClock
from lms_domain.commerce.models import Order, OrderStatus, Refund, RefundStatus
from lms_domain.entitlements.models import Entitlement
from lms_domain.ids import new_id
from lms_domain.ledger.service import trial_balance
from lms_domain.money import Money
from lms_domain.payments.models import (
    IntentStatus,
    Payment,
    PaymentIntent,
    PaymentStatus,
    Provider,
    ProviderAccount,
    ProviderAccountKind,
    WebhookEvent,
    WebhookStatus,
)
from lms_domain.subscriptions.models import RenewalOutcome, Subscription, SubscriptionRenewalAttempt
from lms_domain.tenancy.models import Learner
from server.app import create_app
from server.jobs import context_of, run_job
from server.keys import callback_tasks_key, gateways_key, sessionmaker_key, settings_key
from server.settings import DatabaseSettings, HttpSettings, PaymentsSettings, RateLimitSettings, Settings
from server.simulators.airtel import AirtelSimConfig, add_airtel_routes, airtel_simulator_key
from server.simulators.daraja import (
    SANDBOX_PASSKEY,
    SANDBOX_SHORTCODE,
    C2BRegistration,
    DarajaSimConfig,
    create_daraja_app,
    daraja_simulator_key,
)
from tests.api.conftest import School, _school, login
from tests.conftest import T0
from tests.loopback import HeldPort

V1 = "/api/v1"
SECRET = "test-callback-secret-channels-01"
PAYBILL = "600984"
OWN_STK_SHORTCODE = "600777"  # a school's own Lipa na M-Pesa shortcode
STK_PAID = "0712345670"
STK_SILENT = "0712345676"  # digit 6: paid, the callback is lost
AIRTEL_PAID = "0733123450"  # Airtel prefix 73, last digit 0: paid with a callback
AIRTEL_SILENT = "0733123456"  # paid, callback lost: only the poller's enquiry finds it
AIRTEL_FAILED = "0733123454"  # not enough balance


@dataclass
class World:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    sim: TestServer
    school: School
    makers: async_sessionmaker[AsyncSession]
    price_id: str
    clock: FixedClock

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.school.tokens[role]}"}

    async def call(self, method: str, path: str, role: str = "learner", **kw: Any) -> tuple[int, Any]:
        response = await self.client.request(method, V1 + path, headers=self.auth(role), **kw)
        text = await response.text()
        return response.status, (json.loads(text) if text and "json" in response.content_type else text)

    async def order(self) -> dict[str, Any]:
        status, order = await self.call("POST", "/orders", json={"items": [{"price_id": self.price_id}]})
        assert status == 201, order
        return dict(order)

    async def settle(self, condition: Any, what: str) -> None:
        """Wait (10 s at most) for ``condition()`` while callbacks are delivered and processed."""
        for _ in range(500):
            await self.app[callback_tasks_key].drain()
            if await condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def scalar(self, stmt: Any) -> Any:
        async with self.makers() as session:
            return await session.scalar(stmt)

    async def add_mpesa_account(self, kind: ProviderAccountKind, shortcode: str, *, active: bool = True) -> None:
        """Give the school its own M-Pesa shortcode (credentials and base URL from settings)."""
        async with self.makers() as session, session.begin():
            session.add(
                ProviderAccount(
                    id=new_id(),
                    institution_id=self.school.institution.id,
                    provider=Provider.MPESA,
                    kind=kind,
                    shortcode=shortcode,
                    base_url="",
                    credentials_ref="",
                    is_active=active,
                )
            )

    async def books(self) -> dict[str, int]:
        async with self.makers() as session:
            return await trial_balance(session, self.school.institution.id)


@pytest.fixture
async def world(database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> World:
    sim_app = create_daraja_app(
        DarajaSimConfig(
            processing_ms=10,
            enforce_rule_17=False,
            c2b_external_validation=frozenset({PAYBILL}),
            passkeys={SANDBOX_SHORTCODE: SANDBOX_PASSKEY, OWN_STK_SHORTCODE: SANDBOX_PASSKEY},
        )
    )
    add_airtel_routes(sim_app, AirtelSimConfig(processing_ms=10, callback_auth=True))
    sim = await aiohttp_server(sim_app)
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
            airtel_client_id="sim-airtel-client-id",
            airtel_client_secret="sim-airtel-client-secret",
            airtel_callback_hash_secret="sim-airtel-callback-secret",
            callback_secret=SECRET,
            poll_interval_s=0,
        ),
    )
    clock = FixedClock(T0)
    app = create_app(settings, clock=clock)
    server = await aiohttp_server(app, port=held.release())
    client = await aiohttp_client(server)
    makers = app[sessionmaker_key]
    async with makers() as session, session.begin():
        school, logins = await _school(session, "Delta School", "0711000004")
    for role, name in logins.items():
        school.tokens[role] = await login(client, name)
    admin = {"Authorization": f"Bearer {school.tokens['institution_admin']}"}
    response = await client.post(
        V1 + "/products", json={"sku": "SOMO-PLUS", "kind": "subscription", "name_en": "Somo Plus"}, headers=admin
    )
    product = await response.json()
    response = await client.post(
        V1 + f"/products/{product['id']}/prices", json={"amount_minor": 25_000, "interval": "month"}, headers=admin
    )
    price_id = (await response.json())["id"]
    gateways = app[gateways_key]
    await gateways.daraja(PAYBILL).register_c2b_urls(
        shortcode=PAYBILL,
        confirmation_url=gateways.c2b_confirmation_url,
        validation_url=gateways.c2b_validation_url,
    )
    return World(client=client, app=app, sim=sim, school=school, makers=makers, price_id=price_id, clock=clock)


async def _intent(world: World, intent_id: str) -> PaymentIntent:
    async with world.makers() as session:
        intent = await session.get(PaymentIntent, uuid.UUID(intent_id))
        assert intent is not None
        return intent


# Airtel --------------------------------------------------------------------------------------


async def test_an_airtel_collection_settles_only_through_the_enquiry_its_callback_triggers(world: World) -> None:
    order = await world.order()
    status, intent = await world.call(
        "POST", f"/orders/{order['id']}/payments", json={"provider": "airtel", "phone": AIRTEL_PAID}
    )
    assert status == 202 and intent["provider"] == "airtel" and intent["status"] == "pending", intent

    async def paid() -> bool:
        return (await _intent(world, intent["id"])).status is IntentStatus.SUCCEEDED

    await world.settle(paid, "the Airtel callback and enquiry")
    payment = await world.scalar(sa.select(Payment).where(Payment.intent_id == uuid.UUID(intent["id"])))
    assert payment.provider.value == "airtel" and payment.amount_minor == 25_000
    # The receipt is Airtel's id, learned from the enquiry, not our transaction id.
    sim = world.sim.app[airtel_simulator_key]
    [known] = [t for t in sim.transactions.values() if t.transaction_id == intent["checkout_request_id"]]
    assert payment.provider_receipt == known.airtel_money_id
    event = await world.scalar(sa.select(WebhookEvent).where(WebhookEvent.kind == "airtel_callback"))
    assert event.status is WebhookStatus.PROCESSED and event.headers["X-Somo-Hash"] != "mismatch"
    books = await world.books()
    assert sum(books.values()) == 0 and books["airtel_clearing"] == 25_000


async def test_a_lost_airtel_callback_is_settled_by_the_poller_and_a_failure_is_final(world: World) -> None:
    order = await world.order()
    _, silent = await world.call(
        "POST", f"/orders/{order['id']}/payments", json={"provider": "airtel", "phone": AIRTEL_SILENT}
    )
    other = await world.order()
    _, failing = await world.call(
        "POST", f"/orders/{other['id']}/payments", json={"provider": "airtel", "phone": AIRTEL_FAILED}
    )
    await asyncio.sleep(0.1)  # the customer answers after processing_ms
    world.clock.advance(timedelta(minutes=2))  # past poll_after_s
    summary = await run_job(context_of(world.app), "payments-poll")
    assert summary["asked"] >= 1 and summary["settled"] >= 1
    assert (await _intent(world, silent["id"])).status is IntentStatus.SUCCEEDED
    failed = await _intent(world, failing["id"])
    assert failed.status is IntentStatus.FAILED and failed.failure_class is not None
    assert (
        await world.scalar(sa.select(Order).where(Order.id == uuid.UUID(other["id"])))
    ).status is OrderStatus.PENDING


async def test_the_poller_asks_about_a_payment_through_its_own_schools_shortcode(world: World) -> None:
    await world.add_mpesa_account(ProviderAccountKind.STK_PUSH, OWN_STK_SHORTCODE)
    order = await world.order()
    _, intent = await world.call("POST", f"/orders/{order['id']}/payments", json={"phone": STK_SILENT})
    [pushed] = world.sim.app[daraja_simulator_key].transactions.values()
    assert pushed.shortcode == OWN_STK_SHORTCODE
    await asyncio.sleep(0.1)  # the customer has answered; the callback is lost
    world.clock.advance(timedelta(minutes=2))
    # STK Query must go to the shortcode that pushed: Daraja refuses another one's CheckoutRequestID.
    assert (await run_job(context_of(world.app), "payments-poll"))["settled"] == 1
    assert (await _intent(world, intent["id"])).status is IntentStatus.SUCCEEDED


async def test_a_forged_airtel_callback_moves_no_money(world: World) -> None:
    order = await world.order()
    _, intent = await world.call(
        "POST", f"/orders/{order['id']}/payments", json={"provider": "airtel", "phone": AIRTEL_FAILED}
    )
    forged = {
        "transaction": {
            "id": intent["checkout_request_id"],
            "status_code": "TS",
            "airtel_money_id": "MP000000.0000.X00000",
            "message": "Paid",
        },
        "hash": "bm90IHRoZSByaWdodCBoYXNo",
    }
    response = await world.client.post(f"/callbacks/airtel/{SECRET}", json=forged)
    assert response.status == 200  # answered, alerted, never trusted

    async def processed() -> bool:
        event = await world.scalar(sa.select(WebhookEvent).where(WebhookEvent.body.contains("MP000000")))
        return event is not None and event.status is not WebhookStatus.RECEIVED

    await world.settle(processed, "the forged callback's enquiry")
    event = await world.scalar(sa.select(WebhookEvent).where(WebhookEvent.body.contains("MP000000")))
    assert event.headers["X-Somo-Hash"] == "mismatch"
    assert (await _intent(world, intent["id"])).status is not IntentStatus.SUCCEEDED
    assert await world.scalar(sa.select(sa.func.count()).select_from(Payment)) == 0


# Paybill -------------------------------------------------------------------------------------


async def _learner(world: World) -> Learner:
    learner = await world.scalar(sa.select(Learner).where(Learner.id == world.school.learner.id))
    assert learner is not None
    return learner


async def test_a_paybill_payment_to_the_learners_account_pays_their_order(world: World) -> None:
    order = await world.order()
    learner = await _learner(world)
    gateway = world.app[gateways_key].daraja(PAYBILL)
    await gateway.c2b_simulate(PAYBILL, "0712000111", Money(25_000), learner.account_no)

    async def paid() -> bool:
        found = await world.scalar(sa.select(Order).where(Order.id == uuid.UUID(order["id"])))
        return bool(found.status is OrderStatus.PAID)

    await world.settle(paid, "the paybill confirmation")
    payment = await world.scalar(sa.select(Payment))
    assert payment.learner_id == learner.id and payment.intent_id is None
    books = await world.books()
    assert sum(books.values()) == 0 and books["mpesa_clearing"] == 25_000 and books["suspense"] == 0
    # A re-delivered confirmation (same TransID) pays nothing again.
    event = await world.scalar(sa.select(WebhookEvent).where(WebhookEvent.kind == "c2b_confirmation"))
    body = json.loads(event.body)
    body["OrgAccountBalance"] = "0.00"  # a different body for the same TransID is kept, not applied
    response = await world.client.post(f"/callbacks/paybill/{SECRET}/confirmation", json=body)
    assert response.status == 200
    await world.app[callback_tasks_key].drain()
    assert await world.scalar(sa.select(sa.func.count()).select_from(Payment)) == 1
    assert (await world.books())["mpesa_clearing"] == 25_000


async def test_validation_rejects_an_account_number_with_a_typo(world: World) -> None:
    learner = await _learner(world)
    typo = learner.account_no[:-1] + str((int(learner.account_no[-1]) + 1) % 10)
    response = await world.client.post(
        f"/callbacks/paybill/{SECRET}/validation",
        json={"TransID": "UKL0000001", "TransAmount": "250.00", "BusinessShortCode": PAYBILL, "BillRefNumber": typo},
    )
    assert response.status == 200 and (await response.json()) == {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}
    response = await world.client.post(
        f"/callbacks/paybill/{SECRET}/validation",
        json={
            "TransID": "UKL0000002",
            "TransAmount": "250.00",
            "BusinessShortCode": PAYBILL,
            "BillRefNumber": learner.account_no,
        },
    )
    assert (await response.json())["ResultCode"] == "0"


async def test_a_mistyped_paybill_payment_waits_in_suspense_until_an_admin_matches_it(world: World) -> None:
    learner = await _learner(world)
    order = await world.order()
    digits = learner.account_no
    # Two neighbouring digits swapped: the typo the Luhn check digit exists to catch.
    i = next(i for i in range(len(digits) - 1) if digits[i] != digits[i + 1])
    swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
    # Validation is off for this confirmation (posted as Daraja would after a Completed fallback).
    confirmation = {
        "TransactionType": "Pay Bill",
        "TransID": "UKL51ZDR4F",
        "TransTime": "20261127101325",
        "TransAmount": "250.00",
        "BusinessShortCode": PAYBILL,
        "BillRefNumber": swapped,
        "MSISDN": "2547 ***** 126",
        "FirstName": "AMINA",
    }

    await world.add_mpesa_account(ProviderAccountKind.PAYBILL, PAYBILL)
    response = await world.client.post(f"/callbacks/paybill/{SECRET}/confirmation", json=confirmation)
    assert response.status == 200 and (await response.json())["ResultCode"] == 0
    await world.app[callback_tasks_key].drain()
    books = await world.books()
    assert books["suspense"] == -25_000 and sum(books.values()) == 0

    status, page = await world.call("GET", "/payments/suspense", "institution_admin")
    assert status == 200, page
    [item] = page["items"]
    assert item["held_minor"] == 25_000 and item["account_reference"] == swapped
    assert [c["learner_id"] for c in item["candidates"]] == [str(learner.id)]
    status, problem = await world.call("GET", "/payments/suspense")
    assert status == 403, problem

    status, matched = await world.call(
        "POST",
        f"/payments/{item['payment_id']}/match",
        "institution_admin",
        json={"learner_id": str(learner.id), "order_id": order["id"]},
    )
    assert status == 200 and matched["learner_id"] == str(learner.id), matched
    assert (await world.scalar(sa.select(Order).where(Order.id == uuid.UUID(order["id"])))).status is OrderStatus.PAID
    books = await world.books()
    assert books["suspense"] == 0 and books["revenue"] + books["vat_payable"] == -25_000 and sum(books.values()) == 0
    status, again = await world.call(
        "POST",
        f"/payments/{item['payment_id']}/match",
        "institution_admin",
        json={"learner_id": str(learner.id), "order_id": order["id"]},
    )
    assert status == 409 and again["code"] == "payment_not_in_suspense"
    assert (await world.call("GET", "/payments/suspense", "institution_admin"))[1]["items"] == []


# Refunds -------------------------------------------------------------------------------------


async def _paid_by_stk(world: World) -> tuple[dict[str, Any], Payment]:
    order = await world.order()
    _, intent = await world.call("POST", f"/orders/{order['id']}/payments", json={"phone": STK_PAID})

    async def paid() -> bool:
        return (await _intent(world, intent["id"])).status is IntentStatus.SUCCEEDED

    await world.settle(paid, "the STK callback")
    payment = await world.scalar(sa.select(Payment).where(Payment.intent_id == uuid.UUID(intent["id"])))
    return order, payment


async def test_an_approved_refund_is_reversed_once_and_takes_the_access_back(world: World) -> None:
    order, payment = await _paid_by_stk(world)
    status, refund = await world.call(
        "POST", "/refunds", json={"payment_id": str(payment.id), "amount_minor": 10_000, "reason": "partial"}
    )
    assert status == 201
    await world.call("POST", f"/refunds/{refund['id']}/approve", "institution_admin")
    status, problem = await world.call("POST", f"/refunds/{refund['id']}/send", "institution_admin")
    assert status == 409 and problem["code"] == "partial_refund_unsupported"
    await world.call("POST", f"/refunds/{refund['id']}/reject", "institution_admin", json={"reason": "partial"})

    _, refund = await world.call(
        "POST", "/refunds", json={"payment_id": str(payment.id), "amount_minor": 25_000, "reason": "wrong plan"}
    )
    status, _ = await world.call("POST", f"/refunds/{refund['id']}/send", "institution_admin")
    assert status == 409  # not approved yet
    await world.call("POST", f"/refunds/{refund['id']}/approve", "institution_admin")
    status, sent = await world.call("POST", f"/refunds/{refund['id']}/send", "institution_admin")
    assert status == 202 and sent["status"] == "processing", sent

    async def reversed_() -> bool:
        found = await world.scalar(sa.select(Refund).where(Refund.id == uuid.UUID(refund["id"])))
        return bool(found.status is RefundStatus.SUCCEEDED)

    await world.settle(reversed_, "the Reversal result")
    async with world.makers() as session:
        reversed_payment = await session.get(Payment, payment.id)
        assert reversed_payment is not None and reversed_payment.status is PaymentStatus.REVERSED
        order_row = await session.get(Order, uuid.UUID(order["id"]))
        assert order_row is not None and order_row.status is OrderStatus.REFUNDED
        live = await session.scalar(
            sa.select(sa.func.count())
            .select_from(Entitlement)
            .where(Entitlement.learner_id == world.school.learner.id, Entitlement.revoked_at.is_(None))
        )
        assert live == 0
    books = await world.books()
    assert sum(books.values()) == 0 and books["mpesa_clearing"] == 0
    assert books["refunds"] + books["revenue"] == 0 and books["vat_payable"] == 0
    status, again = await world.call("POST", f"/refunds/{refund['id']}/send", "institution_admin")
    assert status == 409 and again["code"] == "refund_not_approved"


# Renewals ------------------------------------------------------------------------------------


async def test_a_renewal_prompts_once_per_approval_and_extends_the_period(world: World) -> None:
    await _paid_by_stk(world)
    subscription = await world.scalar(sa.select(Subscription).where(Subscription.learner_id == world.school.learner.id))
    first_end = subscription.current_period_end
    status, approval = await world.call("POST", f"/subscriptions/{subscription.id}/renew", json={"phone": STK_PAID})
    assert status == 202 and approval["prompted"] is True and approval["attempt_no"] == 0, approval
    # Approving the same period again (the prompt still open, or already paid) fires nothing new.
    status, again = await world.call(
        "POST",
        f"/subscriptions/{subscription.id}/renew",
        json={"phone": STK_PAID, "period_start": first_end.isoformat()},
    )
    assert status == 202 and again["prompted"] is False and again["attempt_id"] == approval["attempt_id"]

    async def renewed() -> bool:
        found = await world.scalar(sa.select(Subscription).where(Subscription.id == subscription.id))
        return bool(found.current_period_end > first_end)

    await world.settle(renewed, "the renewal's STK callback")
    attempt = await world.scalar(
        sa.select(SubscriptionRenewalAttempt).where(SubscriptionRenewalAttempt.id == uuid.UUID(approval["attempt_id"]))
    )
    assert attempt.outcome is RenewalOutcome.SUCCEEDED
    entitlement = await world.scalar(sa.select(Entitlement).where(Entitlement.source_id == subscription.id))
    renewed_sub = await world.scalar(sa.select(Subscription).where(Subscription.id == subscription.id))
    assert entitlement.valid_until == renewed_sub.current_period_end
    books = await world.books()
    assert sum(books.values()) == 0 and books["mpesa_clearing"] == 50_000
    # The paid period cannot be approved again.
    status, paid = await world.call(
        "POST", f"/subscriptions/{subscription.id}/renew", json={"period_start": first_end.isoformat()}
    )
    assert status == 202 and paid["prompted"] is False


async def test_ledger_balances_are_for_admins_of_the_institution_and_sum_to_zero(world: World) -> None:
    await _paid_by_stk(world)
    status, books = await world.call("GET", "/ledger/balances", "institution_admin")
    assert status == 200 and books["total_minor"] == 0, books
    by_code = {account["code"]: account for account in books["accounts"]}
    assert by_code["mpesa_clearing"]["reported_minor"] == 25_000
    assert by_code["revenue"]["balance_minor"] < 0 < by_code["revenue"]["reported_minor"]
    assert (await world.call("GET", "/ledger/balances", "learner"))[0] == 403
    status, _ = await world.call("GET", f"/ledger/balances?institution_id={uuid.uuid4()}", "institution_admin")
    assert status == 404


async def test_register_c2b_registers_every_active_paybill_with_daraja(world: World) -> None:
    from server.paybills import register_paybills

    await world.add_mpesa_account(ProviderAccountKind.PAYBILL, "600111")
    await world.add_mpesa_account(ProviderAccountKind.PAYBILL, "600222", active=False)
    done = await register_paybills(world.app[settings_key])
    assert [(r.shortcode, r.outcome) for r in done] == [("600111", "registered")]
    registered = world.sim.app[daraja_simulator_key].c2b_urls["600111"]
    assert isinstance(registered, C2BRegistration)
    assert registered.confirmation_url.endswith("/callbacks/paybill/" + SECRET + "/confirmation")
    assert "600222" not in world.sim.app[daraja_simulator_key].c2b_urls
