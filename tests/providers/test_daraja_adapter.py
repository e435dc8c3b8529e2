"""The Daraja adapter against the in-project simulator over real HTTP on loopback.

Outbound requests are counted with an aiohttp ``TraceConfig`` on the adapter's own session, so
"nothing was sent" and "exactly one OAuth request" are observed on the wire, not assumed.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from lms_domain.clock import FixedClock
from lms_domain.errors import InvalidInput
from lms_domain.money import Money
from lms_domain.payments.models import FailureClass
from lms_domain.payments.ports import (
    GatewayConfigurationError,
    GatewayUnavailable,
    MpesaGateway,
    StkPushRequest,
    StkStatus,
)
from server.providers.daraja import (
    OAUTH_PATH,
    STK_PUSH_PATH,
    STK_QUERY_PATH,
    DarajaGateway,
    classify_result_code,
    daraja_timestamp,
    repush_wait_s,
    stk_password,
)
from server.simulators.daraja import (
    SANDBOX_PASSKEY,
    SANDBOX_SHORTCODE,
    DarajaSimConfig,
    create_daraja_app,
    daraja_simulator_key,
)
from tests.conftest import T0
from tests.loopback import Wire

KEY, SECRET = "sim-consumer-key", "sim-consumer-secret"
received_key: web.AppKey[asyncio.Queue[dict[str, Any]]] = web.AppKey("received")


@dataclass
class Env:
    sim_server: TestServer
    receiver: TestServer
    wire: Wire
    clock: FixedClock
    http: aiohttp.ClientSession

    @property
    def callback_url(self) -> str:
        return str(self.receiver.make_url("/mpesa/stk/secret-token"))

    @property
    def callbacks(self) -> asyncio.Queue[dict[str, Any]]:
        return self.receiver.app[received_key]

    @property
    def base_url(self) -> str:
        return str(self.sim_server.make_url("/"))

    def gateway(self, **overrides: Any) -> DarajaGateway:
        args: dict[str, Any] = {
            "base_url": self.base_url,
            "consumer_key": KEY,
            "consumer_secret": SECRET,
            "shortcode": SANDBOX_SHORTCODE,
            "passkey": SANDBOX_PASSKEY,
            "http": self.http,
            "clock": self.clock,
            "backoff_s": 0.01,
        }
        return DarajaGateway(**(args | overrides))

    def request(self, msisdn: str = "0708374149", **overrides: Any) -> StkPushRequest:
        fields: dict[str, Any] = {
            "amount": Money.kes(10),
            "msisdn": msisdn,
            "account_reference": "INV-0001",
            "description": "Somo fees",
            "callback_url": self.callback_url,
        }
        return StkPushRequest(**(fields | overrides))


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
            await request.app[received_key].put(await request.json())
            return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})

        receiver_app = web.Application()
        receiver_app[received_key] = asyncio.Queue()
        receiver_app.router.add_post("/mpesa/stk/secret-token", collect)
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


def test_password_matches_the_docs_golden_vector_and_timestamp_is_nairobi_time() -> None:
    expected = (
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIw"
        "MjEwNjI4MDkyNDA4"
    )
    assert stk_password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, "20210628092408") == expected
    # 23:30 UTC is already the next day in Nairobi.
    assert daraja_timestamp(datetime(2026, 12, 31, 23, 30, tzinfo=UTC)) == "20270101023000"


# ---- STK Push ----


async def test_push_is_accepted_and_its_callback_reaches_our_receiver(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway: MpesaGateway = env.gateway()  # mypy checks the adapter against the port
    accepted = await gateway.stk_push(env.request())

    assert accepted.checkout_request_id.startswith("ws_CO_")
    assert accepted.merchant_request_id and accepted.customer_message.startswith("Success")
    callback = (await asyncio.wait_for(env.callbacks.get(), 5))["Body"]["stkCallback"]
    assert callback["CheckoutRequestID"] == accepted.checkout_request_id
    assert callback["ResultCode"] == 0
    items = {item["Name"]: item.get("Value") for item in callback["CallbackMetadata"]["Item"]}
    assert items["Amount"] == 10 and items["PhoneNumber"] == 254708374149

    # The simulator checked Password against shortcode + passkey + Timestamp; the Timestamp is 10:00 EAT.
    push = env.wire.bodies[-1]
    assert push["Timestamp"] == "20261127100000"
    assert push["Password"] == stk_password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, "20261127100000")
    assert push["Amount"] == 10 and push["PartyB"] == SANDBOX_SHORTCODE
    assert env.wire.calls == [("GET", OAUTH_PATH), ("POST", STK_PUSH_PATH)]


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("0708374149", "254708374149"),
        ("+254708374149", "254708374149"),
        ("254708374149", "254708374149"),
        (" 0708 374 149 ", "254708374149"),
        ("0110000001", "254110000001"),
        ("+254110000001", "254110000001"),
    ],
)
async def test_phone_formats_are_normalised(make_env: MakeEnv, typed: str, sent: str) -> None:
    env = await make_env()
    accepted = await env.gateway().stk_push(env.request(msisdn=typed))

    assert env.wire.bodies[-1]["PhoneNumber"] == sent == env.wire.bodies[-1]["PartyA"]
    transaction = env.sim_server.app[daraja_simulator_key].transactions[accepted.checkout_request_id]
    assert transaction.phone == sent


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"amount": Money.kes(0)}, "mpesa_amount_out_of_range"),
        ({"amount": Money.kes(250_001)}, "mpesa_amount_out_of_range"),
        ({"amount": Money(1050)}, "mpesa_amount_not_whole"),
        ({"amount": Money(1000, "USD")}, "mpesa_currency_not_kes"),
        ({"account_reference": "INV-000000001"}, "mpesa_account_reference_length"),
        ({"account_reference": ""}, "mpesa_account_reference_length"),
        ({"description": "Somo fees 2026"}, "mpesa_description_too_long"),
        ({"msisdn": "0201234567"}, "mpesa_invalid_phone"),  # a Nairobi landline
        ({"msisdn": "+256712345678"}, "mpesa_invalid_phone"),  # Uganda
        ({"msisdn": "12345"}, "invalid_phone"),
        ({"callback_url": "https://example.com/cb "}, "mpesa_invalid_callback_url"),
        ({"callback_url": "ftp://example.com/cb"}, "mpesa_invalid_callback_url"),
    ],
)
async def test_field_rules_are_refused_before_any_request(
    make_env: MakeEnv, overrides: dict[str, Any], code: str
) -> None:
    env = await make_env()
    with pytest.raises(InvalidInput) as caught:
        await env.gateway().stk_push(env.request(**overrides))

    assert caught.value.code == code
    assert env.wire.calls == []
    assert env.sim_server.app[daraja_simulator_key].transactions == {}


async def test_the_limits_themselves_are_accepted(make_env: MakeEnv) -> None:
    env = await make_env()
    request = env.request(amount=Money.kes(250_000), account_reference="A" * 12, description="D" * 13)
    await env.gateway().stk_push(request)
    await env.gateway().stk_push(env.request(msisdn="0711000001", amount=Money.kes(1), description=""))

    assert env.wire.count(STK_PUSH_PATH) == 2


# ---- token cache ----


async def test_twenty_concurrent_pushes_share_one_oauth_request(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    phones = [f"07110{i:04d}1" for i in range(20)]  # distinct phones: no subscriber lock, no rule 17

    accepted = await asyncio.gather(*(gateway.stk_push(env.request(msisdn=phone)) for phone in phones))

    assert len({a.checkout_request_id for a in accepted}) == 20
    assert env.wire.count(OAUTH_PATH) == 1 and env.wire.count(STK_PUSH_PATH) == 20


@pytest.mark.parametrize("as_number", [False, True], ids=["expires_in-string", "expires_in-number"])
async def test_token_is_reused_then_refreshed_a_minute_before_expiry(make_env: MakeEnv, as_number: bool) -> None:
    env = await make_env(expires_in_as_number=as_number)
    gateway = env.gateway()
    await gateway.stk_push(env.request(msisdn="0711000001"))
    env.clock.advance(timedelta(seconds=3599 - 61))
    await gateway.stk_push(env.request(msisdn="0711000011"))
    assert env.wire.count(OAUTH_PATH) == 1

    env.clock.advance(timedelta(seconds=2))  # inside the last minute: refresh before Daraja refuses
    await gateway.stk_push(env.request(msisdn="0711000021"))
    assert env.wire.count(OAUTH_PATH) == 2 and env.wire.count(STK_PUSH_PATH) == 3


async def test_an_invalidated_token_is_refreshed_and_the_push_retried_exactly_once(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    await gateway.stk_push(env.request(msisdn="0711000001"))
    await mint_token_elsewhere(env)

    accepted = await gateway.stk_push(env.request(msisdn="0711000011"))

    assert accepted.checkout_request_id
    assert env.wire.calls == [
        ("GET", OAUTH_PATH),
        ("POST", STK_PUSH_PATH),
        ("POST", STK_PUSH_PATH),  # refused: 404.001.03
        ("GET", OAUTH_PATH),
        ("POST", STK_PUSH_PATH),
    ]


async def test_concurrent_callers_with_a_dead_token_share_one_refresh(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    await gateway.stk_push(env.request(msisdn="0711000001"))
    await mint_token_elsewhere(env)

    await asyncio.gather(*(gateway.stk_push(env.request(msisdn=f"07120{i:04d}1")) for i in range(5)))

    assert env.wire.count(OAUTH_PATH) == 2 and env.wire.count(STK_PUSH_PATH) == 1 + 5 + 5


# ---- STK Query ----


async def test_query_is_pending_while_the_customer_decides_then_final(make_env: MakeEnv) -> None:
    env = await make_env(processing_ms=300)
    gateway = env.gateway()
    accepted = await gateway.stk_push(env.request(msisdn="0711000006"))  # success, callback lost

    pending = await gateway.stk_query(accepted.checkout_request_id)
    assert pending.status is StkStatus.PENDING and pending.result_code is None
    assert env.wire.count(STK_QUERY_PATH) == 1  # the pending HTTP 500 is an answer, not a fault to retry

    await asyncio.sleep(0.35)
    final = await gateway.stk_query(accepted.checkout_request_id)
    assert final.status is StkStatus.SUCCEEDED
    assert final.result_code == "0" and final.failure_class is None
    assert final.result_desc == "The service request is processed successfully."


@pytest.mark.parametrize(
    ("phone", "code", "failure"),
    [
        ("0711000002", "1032", FailureClass.CUSTOMER),
        ("0711000003", "1037", FailureClass.UNREACHABLE),
        ("0711000004", "1", FailureClass.CUSTOMER),
        ("0711000005", "2001", FailureClass.CUSTOMER),
        ("0711000007", "1019", FailureClass.TRANSIENT),
    ],
)
async def test_query_classifies_failed_pushes(make_env: MakeEnv, phone: str, code: str, failure: FailureClass) -> None:
    env = await make_env()
    gateway = env.gateway()
    accepted = await gateway.stk_push(env.request(msisdn=phone))
    callback = (await asyncio.wait_for(env.callbacks.get(), 5))["Body"]["stkCallback"]

    result = await gateway.stk_query(accepted.checkout_request_id)

    assert result.status is StkStatus.FAILED and result.result_code == code
    assert result.failure_class is failure
    assert classify_result_code(callback["ResultCode"]) is failure  # the int form of the callback


async def test_rule_17_same_amount_within_two_minutes_is_transient_with_a_wait(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    await gateway.stk_push(env.request(msisdn="0711000001"))
    await asyncio.wait_for(env.callbacks.get(), 5)  # the first prompt is answered: the phone is free

    again = await gateway.stk_push(env.request(msisdn="0711000001"))
    callback = (await asyncio.wait_for(env.callbacks.get(), 5))["Body"]["stkCallback"]
    result = await gateway.stk_query(again.checkout_request_id)

    assert callback["ResultCode"] == 17

    assert result.result_code == "17" and result.failure_class is FailureClass.TRANSIENT
    assert repush_wait_s("17") == 120.0


def test_result_code_classification_table() -> None:
    assert classify_result_code("0") is None and classify_result_code(0) is None
    assert classify_result_code("1025") is FailureClass.CONFIGURATION
    assert classify_result_code("SFC_IC0003") is FailureClass.CONFIGURATION
    assert classify_result_code("8006") is FailureClass.CUSTOMER
    assert repush_wait_s(1001) == 60.0 and repush_wait_s("1032") is None


# ---- provider errors ----


async def test_an_open_prompt_locks_the_subscriber_without_a_resend(make_env: MakeEnv) -> None:
    env = await make_env(processing_ms=2000)
    gateway = env.gateway()
    await gateway.stk_push(env.request(msisdn="0711000001"))

    with pytest.raises(GatewayUnavailable) as caught:
        await gateway.stk_push(env.request(msisdn="0711000001", amount=Money.kes(11)))

    assert caught.value.failure_class is FailureClass.TRANSIENT
    assert caught.value.provider_code == "500.001.1001" and caught.value.retry_after_s == 60.0
    assert env.wire.count(STK_PUSH_PATH) == 2


@pytest.mark.parametrize(
    ("overrides", "provider_code"),
    [
        ({"passkey": "0" * 64}, "500.001.1001"),  # Wrong credentials
        ({"shortcode": "600000"}, "500.001.1001"),  # Merchant does not exist
        ({"consumer_secret": "wrong"}, "400.008.01"),
    ],
)
async def test_credential_errors_are_configuration_and_not_retried(
    make_env: MakeEnv, overrides: dict[str, Any], provider_code: str
) -> None:
    env = await make_env()
    with pytest.raises(GatewayConfigurationError) as caught:
        await env.gateway(**overrides).stk_push(env.request())

    assert caught.value.failure_class is FailureClass.CONFIGURATION
    assert caught.value.provider_code == provider_code
    assert len(env.wire.calls) <= 2  # one OAuth, at most one push: no retries


# ---- transport faults, against a tiny hostile Daraja on loopback ----


@dataclass
class Hostile:
    server: TestServer
    hits: Counter[str]


async def hostile_daraja(aiohttp_server: AiohttpServer, push: Callable[[int], web.Response]) -> Hostile:
    hits: Counter[str] = Counter()

    async def oauth(request: web.Request) -> web.Response:
        hits[OAUTH_PATH] += 1
        return web.json_response({"access_token": f"token{hits[OAUTH_PATH]}", "expires_in": "3599"})

    async def stk(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return push(hits[request.path])

    app = web.Application()
    app.router.add_get(OAUTH_PATH, oauth)
    app.router.add_post(STK_PUSH_PATH, stk)
    app.router.add_post(STK_QUERY_PATH, stk)
    return Hostile(await aiohttp_server(app), hits)


def daraja_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"requestId": "1", "errorCode": code, "errorMessage": message}, status=status)


ACCEPTED = {
    "MerchantRequestID": "m-1",
    "CheckoutRequestID": "ws_CO_1",
    "ResponseCode": "0",
    "ResponseDescription": "Success. Request accepted for processing",
    "CustomerMessage": "Success. Request accepted for processing",
}


async def test_spike_arrest_is_retried_with_backoff(make_env: MakeEnv, aiohttp_server: AiohttpServer) -> None:
    env = await make_env()

    def push(n: int) -> web.Response:
        return daraja_error(500, "500.003.02", "Spike Arrest Violation") if n < 3 else web.json_response(ACCEPTED)

    hostile = await hostile_daraja(aiohttp_server, push)
    gateway = env.gateway(base_url=str(hostile.server.make_url("/")))

    assert (await gateway.stk_push(env.request())).checkout_request_id == "ws_CO_1"
    assert hostile.hits[STK_PUSH_PATH] == 3


async def test_retries_are_bounded_and_4xx_is_never_retried(make_env: MakeEnv, aiohttp_server: AiohttpServer) -> None:
    env = await make_env()
    hostile = await hostile_daraja(aiohttp_server, lambda n: web.Response(status=503, text="<html>busy</html>"))
    with pytest.raises(GatewayUnavailable):
        await env.gateway(base_url=str(hostile.server.make_url("/")), attempts=3).stk_push(env.request())
    assert hostile.hits[STK_PUSH_PATH] == 3

    bad = await hostile_daraja(
        aiohttp_server, lambda n: daraja_error(400, "400.002.02", "Bad Request - Invalid Amount")
    )
    with pytest.raises(GatewayConfigurationError) as caught:
        await env.gateway(base_url=str(bad.server.make_url("/"))).stk_push(env.request())
    assert caught.value.provider_code == "400.002.02" and bad.hits[STK_PUSH_PATH] == 1


async def test_a_token_refused_twice_is_configuration_not_a_loop(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    env = await make_env()
    hostile = await hostile_daraja(aiohttp_server, lambda n: daraja_error(404, "404.001.03", "Invalid Access Token"))
    with pytest.raises(GatewayConfigurationError) as caught:
        await env.gateway(base_url=str(hostile.server.make_url("/"))).stk_push(env.request())

    assert caught.value.provider_code == "404.001.03"
    assert hostile.hits == Counter({OAUTH_PATH: 2, STK_PUSH_PATH: 2})


async def test_query_timeouts_are_retried_but_a_push_timeout_is_outcome_unknown(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    env = await make_env()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response(ACCEPTED)

    hits: Counter[str] = Counter()

    async def oauth(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "expires_in": 3599})

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        hits[request.path] += 1
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[count])
    app.router.add_get(OAUTH_PATH, oauth)
    app.router.add_post(STK_PUSH_PATH, slow)
    app.router.add_post(STK_QUERY_PATH, slow)
    server = await aiohttp_server(app)
    gateway = env.gateway(base_url=str(server.make_url("/")), timeout=aiohttp.ClientTimeout(total=0.1), attempts=2)

    with pytest.raises(GatewayUnavailable) as pushed:
        await gateway.stk_push(env.request())
    assert pushed.value.outcome_unknown and hits[STK_PUSH_PATH] == 1

    with pytest.raises(GatewayUnavailable) as queried:
        await gateway.stk_query("ws_CO_1")
    assert not queried.value.outcome_unknown and hits[STK_QUERY_PATH] == 2
