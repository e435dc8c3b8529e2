"""The Daraja adapter's org APIs (``MpesaOrgApi``), C2B simulate and Pull against the simulator.

Results land on a real aiohttp receiver and are parsed with the domain's parsers; outbound
requests are observed on the adapter's own session with an aiohttp ``TraceConfig``.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from lms_domain.clock import FixedClock
from lms_domain.errors import InvalidInput
from lms_domain.money import Money
from lms_domain.payments.mpesa import parse_async_result, parse_c2b_payload
from lms_domain.payments.ports import (
    GatewayConfigurationError,
    GatewayUnavailable,
    MpesaOrgApi,
    StkPushRequest,
)
from server.providers.daraja import (
    C2B_REGISTER_PATH,
    C2B_SIMULATE_PATH,
    OAUTH_PATH,
    PULL_QUERY_PATH,
    PULL_REGISTER_PATH,
    REVERSAL_PATH,
    TRANSACTION_STATUS_PATH,
    DarajaGateway,
    PullTransaction,
)
from server.simulators.daraja import (
    SANDBOX_PASSKEY,
    SANDBOX_SHORTCODE,
    DarajaSimConfig,
    DarajaSimulator,
    create_daraja_app,
    daraja_simulator_key,
)
from tests.conftest import T0
from tests.loopback import Wire

KEY, SECRET = "sim-consumer-key", "sim-consumer-secret"
PAYBILL = "600984"
PATHS = {
    "confirm": "/c2b/confirm/tok",
    "validate": "/c2b/validate/tok",
    "result": "/results/tok",
    "timeout": "/timeouts/tok",
    "stk": "/stk/tok",
}
inbox_key: web.AppKey[dict[str, asyncio.Queue[bytes]]] = web.AppKey("inbox")


@dataclass
class Env:
    sim_server: TestServer
    receiver: TestServer
    wire: Wire
    clock: FixedClock
    http: aiohttp.ClientSession

    @property
    def sim(self) -> DarajaSimulator:
        return self.sim_server.app[daraja_simulator_key]

    def url(self, name: str) -> str:
        return str(self.receiver.make_url(PATHS[name]))

    async def next(self, name: str) -> bytes:
        return await asyncio.wait_for(self.receiver.app[inbox_key][PATHS[name]].get(), 5)

    def gateway(self, **overrides: Any) -> DarajaGateway:
        args: dict[str, Any] = {
            "base_url": str(self.sim_server.make_url("/")),
            "consumer_key": KEY,
            "consumer_secret": SECRET,
            "shortcode": PAYBILL,
            "passkey": SANDBOX_PASSKEY,
            "http": self.http,
            "clock": self.clock,
            "backoff_s": 0.01,
            "initiator": "testapi",
            "security_credential": "c2VjcmV0",
        }
        return DarajaGateway(**(args | overrides))

    async def c2b_payment(self, gateway: DarajaGateway, msisdn: str = "0708374149", amount: int = 10) -> str:
        """A sandbox payment to the paybill; its receipt (TransID)."""
        originator = await gateway.c2b_simulate(PAYBILL, msisdn, Money.kes(amount), "INV-0001")
        [record] = [p for p in self.sim.c2b_payments.values() if p.originator_id == originator]
        return record.trans_id


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(aiohttp_server: AiohttpServer) -> AsyncIterator[MakeEnv]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(**config: Any) -> Env:
        clock = FixedClock(T0)
        config.setdefault("clock", clock.now)
        config.setdefault("processing_ms", 10)
        sim_server = await aiohttp_server(create_daraja_app(DarajaSimConfig(**config)))

        async def collect(request: web.Request) -> web.Response:
            await request.app[inbox_key][request.path].put(await request.read())
            return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})

        receiver_app = web.Application()
        inbox: dict[str, asyncio.Queue[bytes]] = {path: asyncio.Queue() for path in PATHS.values()}
        receiver_app[inbox_key] = inbox
        for path in PATHS.values():
            receiver_app.router.add_post(path, collect)
        receiver = await aiohttp_server(receiver_app)
        wire = Wire()
        http = aiohttp.ClientSession(trace_configs=[wire.trace()])
        sessions.append(http)
        return Env(sim_server, receiver, wire, clock, http)

    yield make
    for session in sessions:
        await session.close()


async def mint_token_elsewhere(env: Env) -> None:
    """Another client of the same app fetches a token, which kills the adapter's (Daraja FAQ)."""
    basic = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    async with aiohttp.ClientSession() as other:
        url = env.sim_server.make_url(OAUTH_PATH).with_query(grant_type="client_credentials")
        async with other.get(url, headers={"Authorization": basic}) as response:
            assert response.status == 200


# ---- C2B ----


async def test_urls_are_registered_and_a_simulated_payment_is_confirmed(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    api: MpesaOrgApi = gateway  # mypy checks the adapter against the port
    await api.register_c2b_urls(
        shortcode=PAYBILL, confirmation_url=env.url("confirm"), validation_url=env.url("validate")
    )
    originator = await gateway.c2b_simulate(PAYBILL, "+254708374149", Money.kes(10), "INV-0001")

    payment = parse_c2b_payload(await env.next("confirm"))
    assert (payment.amount_minor, payment.bill_ref, payment.msisdn) == (1000, "INV-0001", "254708374149")
    assert env.sim.c2b_payments[payment.trans_id].originator_id == originator
    assert env.wire.calls == [("GET", OAUTH_PATH), ("POST", C2B_REGISTER_PATH), ("POST", C2B_SIMULATE_PATH)]
    assert env.wire.bodies == [
        {
            "ShortCode": PAYBILL,
            "ResponseType": "Completed",
            "ConfirmationURL": env.url("confirm"),
            "ValidationURL": env.url("validate"),
        },
        {
            "ShortCode": PAYBILL,
            "CommandID": "CustomerPayBillOnline",
            "Amount": 10,
            "Msisdn": "254708374149",
            "BillRefNumber": "INV-0001",
        },
    ]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"response_type": "completed"}, "mpesa_invalid_response_type"),
        ({"shortcode": "1234"}, "mpesa_invalid_shortcode"),
        ({"confirmation_url": "https://example.com/mpesa/confirm"}, "mpesa_invalid_c2b_url"),
        ({"confirmation_url": "https://example.com/c2b/Query"}, "mpesa_invalid_c2b_url"),
        ({"validation_url": "https://abc.ngrok.io/validate"}, "mpesa_invalid_c2b_url"),
        ({"validation_url": "https://example.com/SAFARICOM"}, "mpesa_invalid_c2b_url"),
        ({"validation_url": "ftp://example.com/validate"}, "mpesa_invalid_c2b_url"),
    ],
)
async def test_url_registration_rules_are_enforced_before_any_request(
    make_env: MakeEnv, overrides: dict[str, Any], code: str
) -> None:
    env = await make_env()
    args = {
        "shortcode": PAYBILL,
        "confirmation_url": "https://example.com/c2b/confirm",
        "validation_url": "https://example.com/c2b/validate",
    }
    with pytest.raises(InvalidInput) as caught:
        await env.gateway().register_c2b_urls(**(args | overrides))
    assert caught.value.code == code and env.wire.calls == []


async def test_production_refuses_a_second_registration_and_it_is_not_retried(make_env: MakeEnv) -> None:
    env = await make_env(c2b_allow_overwrite=False)
    gateway = env.gateway()
    urls = {"confirmation_url": env.url("confirm"), "validation_url": env.url("validate")}
    await gateway.register_c2b_urls(shortcode=PAYBILL, **urls)
    with pytest.raises(GatewayConfigurationError) as caught:
        await gateway.register_c2b_urls(shortcode=PAYBILL, response_type="Cancelled", **urls)

    assert caught.value.code == "mpesa_c2b_urls_already_registered"
    assert caught.value.provider_code == "500.003.1001" and env.wire.count(C2B_REGISTER_PATH) == 2


async def test_c2b_simulate_is_sandbox_only_and_checks_its_fields_first(make_env: MakeEnv) -> None:
    env = await make_env()
    with pytest.raises(GatewayConfigurationError) as production:
        await env.gateway(base_url="https://api.safaricom.co.ke/").c2b_simulate(
            PAYBILL, "0708374149", Money.kes(10), "INV-0001"
        )
    assert production.value.code == "mpesa_simulate_in_production"
    for args, code in [
        (("0708374149", Money.kes(10), "A" * 21), "mpesa_bill_ref_length"),
        (("0708374149", Money.kes(10), " "), "mpesa_bill_ref_length"),
        (("0201234567", Money.kes(10), "INV-0001"), "mpesa_invalid_phone"),
        (("0708374149", Money(1050), "INV-0001"), "mpesa_amount_not_whole"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            await env.gateway().c2b_simulate(PAYBILL, *args)
        assert caught.value.code == code
    assert env.wire.calls == []


# ---- Transaction Status ----


async def test_transaction_status_is_acknowledged_and_its_result_reaches_the_result_url(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    receipt = await env.c2b_payment(gateway)

    accepted = await gateway.transaction_status(receipt, result_url=env.url("result"), timeout_url=env.url("timeout"))

    assert re.fullmatch(r"AG_20261127_[0-9a-f]{20}", accepted.conversation_id)
    assert accepted.originator_conversation_id and accepted.response_description.startswith("Accept")
    assert env.wire.bodies[-1] == {
        "Initiator": "testapi",
        "SecurityCredential": "c2VjcmV0",
        "CommandID": "TransactionStatusQuery",
        "TransactionID": receipt,
        "PartyA": PAYBILL,
        "IdentifierType": "4",
        "ResultURL": env.url("result"),
        "QueueTimeOutURL": env.url("timeout"),
        "Remarks": "Reconciliation",
    }
    result = parse_async_result(await env.next("result"))
    assert (result.conversation_id, result.originator_conversation_id) == (
        accepted.conversation_id,
        accepted.originator_conversation_id,
    )
    assert result.succeeded and result.first("ReceiptNo") == receipt
    assert result.first("TransactionStatus") == "Completed" and result.amount_minor() == 1000


async def test_status_by_conversation_back_fills_the_receipt_of_a_query_only_push(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway(shortcode=SANDBOX_SHORTCODE)
    push = StkPushRequest(Money.kes(10), "0711000006", "INV-0001", "Somo fees", env.url("stk"))
    accepted = await gateway.stk_push(push)  # success whose callback is lost

    await gateway.transaction_status_by_conversation(
        accepted.merchant_request_id, result_url=env.url("result"), timeout_url=env.url("timeout")
    )

    assert env.wire.bodies[-1]["OriginalConversationID"] == accepted.merchant_request_id
    assert "TransactionID" not in env.wire.bodies[-1]
    result = parse_async_result(await env.next("result"))
    assert result.first("ReceiptNo") == env.sim.transactions[accepted.checkout_request_id].receipt


# ---- Reversal ----


async def test_reverse_sends_the_misspelled_key_and_a_second_reversal_is_r000001(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    receipt = await env.c2b_payment(gateway)
    urls = {"result_url": env.url("result"), "timeout_url": env.url("timeout")}

    accepted = await gateway.reverse(receipt, Money.kes(10), remarks="Paid twice", **urls)

    sent = env.wire.bodies[-1]
    assert sent["RecieverIdentifierType"] == "11" and "ReceiverIdentifierType" not in sent
    assert (sent["CommandID"], sent["Amount"], sent["ReceiverParty"]) == ("TransactionReversal", "10", PAYBILL)
    reversed_ = parse_async_result(await env.next("result"))
    assert reversed_.conversation_id == accepted.conversation_id and reversed_.succeeded
    assert reversed_.first("OriginalTransactionID") == receipt and reversed_.amount_minor() == 1000

    await gateway.reverse(receipt, Money.kes(10), remarks="Paid twice", **urls)
    again = parse_async_result(await env.next("result"))
    assert again.result_code == "R000001" and not again.succeeded
    await gateway.transaction_status(receipt, **urls)
    assert parse_async_result(await env.next("result")).first("TransactionStatus") == "Reversed"


async def test_org_calls_need_an_api_operator(make_env: MakeEnv) -> None:
    env = await make_env()
    urls = {"result_url": env.url("result"), "timeout_url": env.url("timeout")}
    for gateway in (env.gateway(initiator=""), env.gateway(security_credential="")):
        with pytest.raises(GatewayConfigurationError) as status:
            await gateway.transaction_status("UKA1B2C3D4", **urls)
        with pytest.raises(GatewayConfigurationError) as reversal:
            await gateway.reverse("UKA1B2C3D4", Money.kes(10), remarks="Paid twice", **urls)
        assert status.value.code == reversal.value.code == "mpesa_initiator_missing"
    assert env.wire.calls == []


Call = Callable[[DarajaGateway, str, str], Awaitable[object]]


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda g, r, t: g.reverse("UKA1B2C3D4", Money.kes(10), result_url=r, timeout_url=t, remarks="x"),
            "mpesa_remarks_length",
        ),
        (
            lambda g, r, t: g.reverse("UKA1B2C3D4", Money(1050), result_url=r, timeout_url=t, remarks="ok"),
            "mpesa_amount_not_whole",
        ),
        (
            lambda g, r, t: g.transaction_status("UK A1B2", result_url=r, timeout_url=t),
            "mpesa_invalid_transaction_id",
        ),
        (
            lambda g, r, t: g.transaction_status("UKA1B2C3D4", result_url="ftp://x/r", timeout_url=t),
            "mpesa_invalid_result_url",
        ),
        (
            lambda g, r, t: g.transaction_status("UKA1B2C3D4", result_url=r, timeout_url=t, remarks=""),
            "mpesa_remarks_length",
        ),
        (
            lambda g, r, t: g.transaction_status_by_conversation(" ", result_url=r, timeout_url=t),
            "mpesa_invalid_conversation_id",
        ),
    ],
    ids=["short-remarks", "cents", "spaced-receipt", "ftp-result-url", "empty-remarks", "blank-conversation"],
)
async def test_org_field_rules_are_refused_before_any_request(make_env: MakeEnv, call: Call, code: str) -> None:
    env = await make_env()
    with pytest.raises(InvalidInput) as caught:
        await call(env.gateway(), env.url("result"), env.url("timeout"))
    assert caught.value.code == code and env.wire.calls == []


async def test_a_token_refused_with_400_003_01_is_refreshed_once(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    urls = {"result_url": env.url("result"), "timeout_url": env.url("timeout")}
    await gateway.transaction_status("UKA1B2C3D4", **urls)
    await mint_token_elsewhere(env)

    await gateway.transaction_status("UKA1B2C3D4", **urls)

    assert env.wire.calls == [
        ("GET", OAUTH_PATH),
        ("POST", TRANSACTION_STATUS_PATH),
        ("POST", TRANSACTION_STATUS_PATH),  # refused: 400.003.01
        ("GET", OAUTH_PATH),
        ("POST", TRANSACTION_STATUS_PATH),
    ]


# ---- retries, against a tiny hostile Daraja ----


Reply = Callable[[int], Awaitable[web.Response]]


async def hostile_daraja(aiohttp_server: AiohttpServer, replies: dict[str, Reply]) -> tuple[TestServer, Counter[str]]:
    hits: Counter[str] = Counter()

    async def oauth(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "expires_in": "3599"})

    async def api(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return await replies[request.path](hits[request.path])

    app = web.Application()
    app.router.add_get(OAUTH_PATH, oauth)
    for path in replies:
        app.router.add_post(path, api)
    return await aiohttp_server(app), hits


def daraja_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"requestId": "1", "errorCode": code, "errorMessage": message}, status=status)


async def test_org_requests_are_resent_only_when_certainly_unprocessed(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    env = await make_env()

    async def internal_error(n: int) -> web.Response:
        return daraja_error(500, "500.003.1001", "Internal Server Error")

    async def slow(n: int) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({})

    async def busy_then_accepted(n: int) -> web.Response:
        if n < 3:
            return daraja_error(500, "500.003.02", "Spike Arrest Violation")
        return web.json_response({"OriginatorCoversationID": "o-1", "ResponseCode": "0", "ResponseDescription": "x"})

    async def unavailable_then_empty(n: int) -> web.Response:
        if n < 3:
            return web.Response(status=503, text="<html>busy</html>")
        return web.json_response({"ResponseRefID": "r", "ResponseCode": "1001", "Transaction": "[[]]"})

    server, hits = await hostile_daraja(
        aiohttp_server,
        {
            TRANSACTION_STATUS_PATH: internal_error,
            REVERSAL_PATH: slow,
            C2B_SIMULATE_PATH: busy_then_accepted,
            PULL_QUERY_PATH: unavailable_then_empty,
        },
    )
    gateway = env.gateway(base_url=str(server.make_url("/")), timeout=aiohttp.ClientTimeout(total=0.1), attempts=3)
    urls = {"result_url": env.url("result"), "timeout_url": env.url("timeout")}

    with pytest.raises(GatewayUnavailable) as status:
        await gateway.transaction_status("UKA1B2C3D4", **urls)
    assert not status.value.outcome_unknown and hits[TRANSACTION_STATUS_PATH] == 1
    with pytest.raises(GatewayUnavailable) as reversal:
        await gateway.reverse("UKA1B2C3D4", Money.kes(10), remarks="Paid twice", **urls)
    assert reversal.value.outcome_unknown and hits[REVERSAL_PATH] == 1
    assert await gateway.c2b_simulate(PAYBILL, "0708374149", Money.kes(10), "INV-0001") == "o-1"
    assert hits[C2B_SIMULATE_PATH] == 3  # spike arrest: Daraja did no work
    assert await gateway.pull_transactions(PAYBILL, T0, T0) == [] and hits[PULL_QUERY_PATH] == 3


# ---- Pull ----


async def test_pull_registers_then_pages_through_parsed_rows(make_env: MakeEnv) -> None:
    env = await make_env(pull_page_size=2)
    gateway = env.gateway()
    registration = {"nominated_number": "0722000000", "callback_url": env.url("result")}
    assert await gateway.register_pull(PAYBILL, **registration) is True
    assert env.wire.bodies[-1] == {
        "ShortCode": PAYBILL,
        "RequestType": "Pull",
        "NominatedNumber": "0722000000",
        "CallBackURL": env.url("result"),
    }
    assert await gateway.register_pull(PAYBILL, **registration) is False
    receipts = []
    for n in (1, 2, 3):
        receipts.append(await env.c2b_payment(gateway, msisdn=f"071100000{n}", amount=10 * n))
        env.clock.advance(timedelta(minutes=1))
    start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=1)

    first = await gateway.pull_transactions(PAYBILL, start, end)

    assert env.wire.bodies[-1] == {
        "ShortCode": PAYBILL,
        "StartDate": "2026-11-27 09:00:00",
        "EndDate": "2026-11-27 11:00:00",
        "OffSetValue": "0",
    }
    assert first[0] == PullTransaction(
        transaction_id=receipts[0],
        trx_date=T0,
        msisdn="254711000001",
        transaction_type="c2b-pay-bill-debit",
        bill_reference="INV-0001",
        amount=Money.kes(10),
        organization_name="Safaricom Daraja 984",
    )
    assert [row.transaction_id for row in first] == receipts[:2]
    rest = await gateway.pull_transactions(PAYBILL, start, end, offset=2)
    assert [(row.transaction_id, row.amount) for row in rest] == [(receipts[2], Money.kes(30))]
    assert await gateway.pull_transactions(PAYBILL, start, end, offset=3) == []
    assert env.wire.count(PULL_REGISTER_PATH) == 2 and env.wire.count(PULL_QUERY_PATH) == 3
    with pytest.raises(InvalidInput):
        await gateway.pull_transactions(PAYBILL, end, start)
