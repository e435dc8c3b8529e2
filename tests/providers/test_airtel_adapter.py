"""The Airtel Money adapter against the in-project simulator over real HTTP on loopback.

Outbound requests are recorded with an aiohttp ``TraceConfig`` on the adapter's own session, so
"nothing was sent", the headers and "exactly one token request" are observed on the wire.
Transport faults are played by tiny hostile Airtel servers, also on loopback.
"""

from __future__ import annotations

import asyncio
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
from lms_domain.payments import airtel as port
from lms_domain.payments.airtel import AirtelCollectionRequest, AirtelTxStatus
from lms_domain.payments.models import FailureClass
from lms_domain.payments.ports import GatewayConfigurationError, GatewayUnavailable, PaymentGatewayError
from server.providers.airtel import COLLECTION_PATH, OAUTH_PATH, REFUND_PATH, AirtelGateway
from server.simulators.airtel import AirtelSimConfig, airtel_simulator_key, create_airtel_app
from tests.conftest import T0
from tests.loopback import Wire

CLIENT_ID, CLIENT_SECRET = "sim-airtel-client-id", "sim-airtel-client-secret"
ENQUIRY_PREFIX = "/standard/v1/payments/"
received_key: web.AppKey[asyncio.Queue[dict[str, Any]]] = web.AppKey("received")


@dataclass
class Env:
    sim_server: TestServer
    receiver: TestServer
    wire: Wire
    clock: FixedClock
    http: aiohttp.ClientSession
    counter: int = 0

    @property
    def callbacks(self) -> asyncio.Queue[dict[str, Any]]:
        return self.receiver.app[received_key]

    @property
    def base_url(self) -> str:
        return str(self.sim_server.make_url("/"))

    def gateway(self, **overrides: Any) -> AirtelGateway:
        args: dict[str, Any] = {
            "base_url": self.base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "http": self.http,
            "clock": self.clock,
            "backoff_s": 0.01,
        }
        return AirtelGateway(**(args | overrides))

    def request(self, msisdn: str = "0733123450", **overrides: Any) -> AirtelCollectionRequest:
        self.counter += 1
        fields: dict[str, Any] = {
            "amount": Money.kes(1000),
            "msisdn": msisdn,
            "reference": "Somo INV-0001",
            "transaction_id": f"somo-{self.counter:04d}",
        }
        return AirtelCollectionRequest(**(fields | overrides))

    async def wait_for_callback(self) -> dict[str, Any]:
        body = await asyncio.wait_for(self.callbacks.get(), 5)
        return dict(body["transaction"])


MakeEnv = Callable[..., Awaitable[Env]]


async def receiver_server(aiohttp_server: AiohttpServer) -> TestServer:
    async def collect(request: web.Request) -> web.Response:
        await request.app[received_key].put(await request.json())
        return web.Response(status=200)

    app = web.Application()
    app[received_key] = asyncio.Queue()
    app.router.add_post("/airtel/callback/secret-token", collect)
    return await aiohttp_server(app)


@pytest.fixture
async def make_env(aiohttp_server: AiohttpServer) -> AsyncIterator[MakeEnv]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(**config: Any) -> Env:
        clock = FixedClock(T0)
        receiver = await receiver_server(aiohttp_server)
        config.setdefault("clock", clock.now)
        config.setdefault("processing_ms", 10)
        config.setdefault("ambiguous_ms", 100)
        config.setdefault("callback_url", str(receiver.make_url("/airtel/callback/secret-token")))
        sim_server = await aiohttp_server(create_airtel_app(AirtelSimConfig(**config)))
        wire = Wire()
        http = aiohttp.ClientSession(trace_configs=[wire.trace()])
        sessions.append(http)
        return Env(sim_server, receiver, wire, clock, http)

    yield make
    for session in sessions:
        await session.close()


async def answered(seconds: float = 0.03) -> None:
    """Let the simulated customer answer the prompt (``processing_ms``)."""
    await asyncio.sleep(seconds)


# ---- collection ----


async def test_a_collection_is_accepted_then_calls_back_and_enquires_paid(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway: port.AirtelGateway = env.gateway()  # mypy checks the adapter against the port
    request = env.request(transaction_id="9f1c2a7e-3a7d-4b2e-9f51-1d2b3c4d5e6f")
    accepted = await gateway.collect(request)

    assert accepted == port.AirtelCollectionAccepted(
        transaction_id="9f1c2a7e-3a7d-4b2e-9f51-1d2b3c4d5e6f", response_code="DP00800001006", message="SUCCESS"
    )
    assert env.wire.calls == [("POST", OAUTH_PATH), ("POST", COLLECTION_PATH)]
    assert env.wire.bodies[0] == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "client_credentials",
    }
    assert env.wire.bodies[1] == {
        "reference": "Somo INV-0001",
        "subscriber": {"country": "KE", "currency": "KES", "msisdn": "733123450"},
        "transaction": {
            "amount": 1000,
            "country": "KE",
            "currency": "KES",
            "id": "9f1c2a7e-3a7d-4b2e-9f51-1d2b3c4d5e6f",
        },
    }
    headers = env.wire.headers[1]
    assert (headers["X-Country"], headers["X-Currency"], headers["Accept"]) == ("KE", "KES", "*/*")
    assert headers["Authorization"].startswith("Bearer ") and "X-Sim-Callback-Url" not in headers

    callback = await env.wait_for_callback()
    assert callback["id"] == request.transaction_id and callback["status_code"] == "TS"
    result = await gateway.enquire(request.transaction_id)
    assert result.status is AirtelTxStatus.SUCCESS and result.succeeded
    assert result.airtel_money_id == callback["airtel_money_id"] and result.failure_class is None
    assert result.amount_minor is None  # the documented answer carries no amount
    assert env.wire.calls[-1] == ("GET", ENQUIRY_PREFIX + request.transaction_id)
    assert env.wire.count(OAUTH_PATH) == 1


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("0733123450", "733123450"),
        ("+254733123450", "733123450"),
        ("254733123450", "733123450"),
        (" 0733 123 450 ", "733123450"),
        ("0100000001", "100000001"),
    ],
)
async def test_msisdns_are_sent_without_the_country_code(make_env: MakeEnv, typed: str, sent: str) -> None:
    env = await make_env()
    accepted = await env.gateway().collect(env.request(msisdn=typed))
    assert env.wire.bodies[-1]["subscriber"]["msisdn"] == sent
    assert env.sim_server.app[airtel_simulator_key].transactions[accepted.transaction_id].msisdn == sent


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"amount": Money.kes(0)}, "airtel_amount_not_positive"),
        ({"amount": Money(100_050)}, "airtel_amount_not_whole"),
        ({"amount": Money(1000, "USD")}, "airtel_currency"),
        ({"msisdn": "0201234567"}, "airtel_invalid_phone"),  # a Nairobi landline
        ({"msisdn": "+256712345678"}, "airtel_invalid_phone"),  # Uganda
        ({"msisdn": "12345"}, "invalid_phone"),
        ({"transaction_id": ""}, "airtel_invalid_transaction_id"),
        ({"transaction_id": "has space"}, "airtel_invalid_transaction_id"),
        ({"transaction_id": "x" * 65}, "airtel_invalid_transaction_id"),
        ({"reference": "  "}, "airtel_missing_reference"),
    ],
)
async def test_field_rules_are_refused_before_any_request(
    make_env: MakeEnv, overrides: dict[str, Any], code: str
) -> None:
    env = await make_env()
    with pytest.raises(InvalidInput) as caught:
        await env.gateway().collect(env.request(**overrides))
    assert caught.value.code == code
    assert env.wire.calls == []
    assert env.sim_server.app[airtel_simulator_key].transactions == {}


async def test_an_id_false_answer_still_returns_our_id(make_env: MakeEnv) -> None:
    env = await make_env(collection_id_false=True)
    accepted = await env.gateway().collect(env.request(transaction_id="ours-1"))
    assert accepted.transaction_id == "ours-1"


async def test_the_callback_url_reaches_the_simulator_only_when_given(make_env: MakeEnv) -> None:
    env = await make_env(callback_url=None)
    gateway = env.gateway()
    await gateway.collect(env.request())
    await answered()
    assert env.callbacks.empty()
    url = str(env.receiver.make_url("/airtel/callback/secret-token"))
    request = env.request(msisdn="0733000000", callback_url=url)
    await gateway.collect(request)
    assert env.wire.headers[-1]["X-Sim-Callback-Url"] == url
    assert (await env.wait_for_callback())["id"] == request.transaction_id


async def test_a_reused_transaction_id_is_refused_without_a_resend(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    await gateway.collect(env.request(transaction_id="dup-1"))
    with pytest.raises(GatewayConfigurationError) as caught:
        await gateway.collect(env.request(transaction_id="dup-1", msisdn="0733000000"))
    assert caught.value.code == "airtel_duplicate_transaction_id" and caught.value.provider_code == "ESB000041"
    assert env.wire.count(COLLECTION_PATH) == 2


@pytest.mark.parametrize(
    ("gateway_args", "sim_config", "provider_code"),
    [
        ({"country": "UG"}, {}, "ROUTER006"),
        ({"currency": "UGX"}, {"countries": {"KE": "KES", "UG": "UGX"}}, "ROUTER112"),
    ],
)
async def test_country_and_currency_problems_are_configuration_errors(
    make_env: MakeEnv, gateway_args: dict[str, str], sim_config: dict[str, Any], provider_code: str
) -> None:
    env = await make_env(**sim_config)
    amount = Money(100_000, gateway_args.get("currency", "KES"))
    with pytest.raises(GatewayConfigurationError) as caught:
        await env.gateway(**gateway_args).collect(env.request(amount=amount))
    assert caught.value.provider_code == provider_code
    assert caught.value.failure_class is FailureClass.CONFIGURATION
    assert env.wire.count(COLLECTION_PATH) == 1


async def test_wrong_credentials_are_configuration_and_not_retried(make_env: MakeEnv) -> None:
    env = await make_env()
    with pytest.raises(GatewayConfigurationError) as caught:
        await env.gateway(client_secret="wrong").collect(env.request())
    assert caught.value.code == "airtel_credentials_rejected"
    assert env.wire.calls == [("POST", OAUTH_PATH)]


# ---- token cache ----


async def test_twenty_concurrent_collections_share_one_token_request(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    accepted = await asyncio.gather(*(gateway.collect(env.request(msisdn=f"07330{i:04d}1")) for i in range(20)))
    assert len({a.transaction_id for a in accepted}) == 20
    assert env.wire.count(OAUTH_PATH) == 1 and env.wire.count(COLLECTION_PATH) == 20


async def test_the_token_is_reused_then_refreshed_before_its_180_seconds_end(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    await gateway.collect(env.request())
    env.clock.advance(timedelta(seconds=119))
    await gateway.collect(env.request())
    assert env.wire.count(OAUTH_PATH) == 1
    env.clock.advance(timedelta(seconds=2))  # inside the last minute: refresh before Airtel refuses
    await gateway.collect(env.request())
    assert env.wire.count(OAUTH_PATH) == 2 and env.wire.count(COLLECTION_PATH) == 3


async def test_a_401_refreshes_once_and_retries_once(make_env: MakeEnv) -> None:
    env = await make_env(invalidate_previous_token=True)
    gateway = env.gateway()
    await gateway.collect(env.request())
    await env.gateway(http=env.http).collect(env.request())  # another worker's token kills ours

    await gateway.collect(env.request())
    assert env.wire.calls[-3:] == [("POST", COLLECTION_PATH), ("POST", OAUTH_PATH), ("POST", COLLECTION_PATH)]
    assert env.wire.count(OAUTH_PATH) == 3 and len(env.sim_server.app[airtel_simulator_key].transactions) == 3


async def test_concurrent_callers_with_a_dead_token_share_one_refresh(make_env: MakeEnv) -> None:
    env = await make_env(invalidate_previous_token=True)
    gateway = env.gateway()
    await gateway.collect(env.request())
    await env.gateway().enquire("somo-0001")  # a second gateway mints a token, killing the first's
    before = env.wire.count(OAUTH_PATH)

    await asyncio.gather(*(gateway.collect(env.request(msisdn=f"07331{i:04d}1")) for i in range(5)))
    assert env.wire.count(OAUTH_PATH) == before + 1
    assert env.wire.count(COLLECTION_PATH) == 1 + 5 + 5


# ---- enquiry ----


async def test_enquiry_is_in_progress_until_the_customer_answers(make_env: MakeEnv) -> None:
    env = await make_env(processing_ms=200)
    gateway = env.gateway()
    accepted = await gateway.collect(env.request(msisdn="0733123456"))  # paid, callback lost
    pending = await gateway.enquire(accepted.transaction_id)
    assert pending.status is AirtelTxStatus.IN_PROGRESS and not pending.status.is_final
    assert pending.airtel_money_id is None and pending.failure_class is None
    assert env.wire.count(ENQUIRY_PREFIX, prefix=True) == 1  # an answer, not a fault to retry
    await answered(0.22)
    final = await gateway.enquire(accepted.transaction_id)
    assert final.succeeded and final.airtel_money_id and final.response_code == "DP00800001001"


async def test_ambiguous_is_never_failed(make_env: MakeEnv) -> None:
    env = await make_env(processing_ms=10, ambiguous_ms=300)
    gateway = env.gateway()
    accepted = await gateway.collect(env.request(msisdn="0733123457"))
    await answered(0.05)
    ambiguous = await gateway.enquire(accepted.transaction_id)
    assert ambiguous.status is AirtelTxStatus.AMBIGUOUS
    assert ambiguous.failure_class is None and ambiguous.airtel_money_id is None
    assert ambiguous.response_code == "DP00800001000"


@pytest.mark.parametrize(
    ("msisdn", "code", "failure"),
    [
        ("0733123452", "DP00800001002", FailureClass.CUSTOMER),
        ("0733123453", "DP00800001005", FailureClass.CUSTOMER),
        ("0733123454", "DP00800001007", FailureClass.CUSTOMER),
        ("0733123455", "DP00800001008", FailureClass.CUSTOMER),
        ("0733123458", "DP00800001029", FailureClass.TRANSIENT),
    ],
)
async def test_failed_collections_are_classified(
    make_env: MakeEnv, msisdn: str, code: str, failure: FailureClass
) -> None:
    env = await make_env()
    gateway = env.gateway()
    accepted = await gateway.collect(env.request(msisdn=msisdn))
    callback = await env.wait_for_callback()
    result = await gateway.enquire(accepted.transaction_id)
    assert callback["status_code"] == "TF"
    assert result.status is AirtelTxStatus.FAILED and result.response_code == code
    assert result.failure_class is failure and result.airtel_money_id is None


async def test_a_below_minimum_amount_is_configuration(make_env: MakeEnv) -> None:
    env = await make_env(min_amount=10)
    gateway = env.gateway()
    accepted = await gateway.collect(env.request(amount=Money.kes(5)))
    await answered()
    result = await gateway.enquire(accepted.transaction_id)
    assert (result.response_code, result.failure_class) == ("DP00800001004", FailureClass.CONFIGURATION)


async def test_an_enquiry_amount_is_read_when_airtel_sends_one(make_env: MakeEnv) -> None:
    env = await make_env(enquiry_amount=True)
    gateway = env.gateway()
    accepted = await gateway.collect(env.request(amount=Money.kes(250)))
    await answered()
    assert (await gateway.enquire(accepted.transaction_id)).amount_minor == 25_000


async def test_an_unknown_id_is_retried_for_the_race_then_reported(make_env: MakeEnv) -> None:
    env = await make_env()
    with pytest.raises(PaymentGatewayError) as caught:
        await env.gateway(attempts=3).enquire("never-sent")
    assert caught.value.code == "airtel_transaction_not_found" and caught.value.provider_code == "ESB000045"
    assert caught.value.failure_class is FailureClass.TRANSIENT
    assert env.wire.count(ENQUIRY_PREFIX, prefix=True) == 3


async def test_enquiry_ids_are_escaped_into_the_path(make_env: MakeEnv) -> None:
    env = await make_env()
    with pytest.raises(PaymentGatewayError):
        await env.gateway(attempts=1).enquire("a/b?c")
    assert env.wire.calls[-1] == ("GET", ENQUIRY_PREFIX + "a%2Fb%3Fc")
    with pytest.raises(InvalidInput):
        await env.gateway().enquire(" ")


# ---- refund ----


async def test_a_refund_is_accepted_once_and_never_resent(make_env: MakeEnv) -> None:
    env = await make_env(refund_success_flag=False)
    gateway = env.gateway()
    accepted = await gateway.collect(env.request())
    await answered()
    money_id = (await gateway.enquire(accepted.transaction_id)).airtel_money_id
    assert money_id is not None

    refunded = await gateway.refund(money_id)
    # success is false in one docs copy: the result code decides, not the flag.
    assert refunded == port.AirtelRefundResult(
        airtel_money_id=money_id,
        status="SUCCESS",
        result_code="ESB000010",
        response_code=None,
        message="SUCCESS",
        success_flag=False,
    )
    assert env.wire.bodies[-1] == {"transaction": {"airtel_money_id": money_id}}

    with pytest.raises(GatewayUnavailable) as caught:
        await gateway.refund(money_id)
    assert caught.value.provider_code == "ESB000011"
    assert env.wire.count(REFUND_PATH) == 2


async def test_refund_of_an_unknown_id_and_input_rules(make_env: MakeEnv) -> None:
    env = await make_env()
    gateway = env.gateway()
    with pytest.raises(PaymentGatewayError) as caught:
        await gateway.refund("MP000000.0000.A00000")
    assert caught.value.code == "airtel_transaction_not_found" and env.wire.count(REFUND_PATH) == 1
    with pytest.raises(InvalidInput):
        await gateway.refund("  ")
    assert env.wire.count(REFUND_PATH) == 1


# ---- transport faults, against tiny hostile Airtel servers on loopback ----


@dataclass
class Hostile:
    server: TestServer
    hits: Counter[str]

    @property
    def url(self) -> str:
        return str(self.server.make_url("/"))


Script = Callable[[int], web.Response]


async def hostile_airtel(
    aiohttp_server: AiohttpServer, business: Script, *, delay_s: float = 0.0, token: Script | None = None
) -> Hostile:
    hits: Counter[str] = Counter()

    async def oauth(request: web.Request) -> web.Response:
        hits[OAUTH_PATH] += 1
        if token is not None:
            return token(hits[OAUTH_PATH])
        return web.json_response({"access_token": f"t{hits[OAUTH_PATH]}", "expires_in": "180", "token_type": "bearer"})

    async def handle(request: web.Request) -> web.Response:
        key = ENQUIRY_PREFIX if request.method == "GET" else request.path
        hits[key] += 1
        await asyncio.sleep(delay_s)
        return business(hits[key])

    app = web.Application()
    app.router.add_post(OAUTH_PATH, oauth)
    app.router.add_post(COLLECTION_PATH, handle)
    app.router.add_post(REFUND_PATH, handle)
    app.router.add_get(ENQUIRY_PREFIX + "{id}", handle)
    return Hostile(await aiohttp_server(app), hits)


def airtel_error(http: int, result_code: str, message: str = "error") -> web.Response:
    body = {"data": {}, "status": {"code": str(http), "message": message, "result_code": result_code, "success": False}}
    return web.json_response(body, status=http)


ACCEPTED: dict[str, Any] = {
    "data": {"transaction": {"id": False, "status": "SUCCESS"}},
    "status": {
        "code": "200",
        "message": "SUCCESS",
        "result_code": "ESB000010",
        "response_code": "DP00800001006",
        "success": True,
    },
}
PAID = {
    "data": {"transaction": {"airtel_money_id": "133410367531", "id": "x", "message": "ok", "status": "TS"}},
    "status": {"response_code": "DP00800001001", "code": "200", "success": True, "result_code": "ESB000010"},
}


async def test_a_503_collection_is_resent_with_backoff(make_env: MakeEnv, aiohttp_server: AiohttpServer) -> None:
    env = await make_env()
    hostile = await hostile_airtel(
        aiohttp_server,
        lambda n: web.Response(status=503, text="<html>busy</html>") if n < 3 else web.json_response(ACCEPTED),
    )
    accepted = await env.gateway(base_url=hostile.url).collect(env.request(transaction_id="ours-503"))
    assert accepted.transaction_id == "ours-503" and hostile.hits[COLLECTION_PATH] == 3


async def test_retries_are_bounded_and_4xx_is_never_retried(make_env: MakeEnv, aiohttp_server: AiohttpServer) -> None:
    env = await make_env()
    busy = await hostile_airtel(aiohttp_server, lambda n: web.Response(status=502))
    with pytest.raises(GatewayUnavailable) as unavailable:
        await env.gateway(base_url=busy.url, attempts=3).collect(env.request())
    assert busy.hits[COLLECTION_PATH] == 3 and not unavailable.value.outcome_unknown

    bad = await hostile_airtel(aiohttp_server, lambda n: airtel_error(400, "ESB000008", "Field validation error."))
    with pytest.raises(GatewayConfigurationError) as caught:
        await env.gateway(base_url=bad.url).collect(env.request())
    assert caught.value.provider_code == "ESB000008" and bad.hits[COLLECTION_PATH] == 1


async def test_a_500_collection_is_not_resent(make_env: MakeEnv, aiohttp_server: AiohttpServer) -> None:
    env = await make_env()
    hostile = await hostile_airtel(aiohttp_server, lambda n: airtel_error(500, "ESB000001"))
    with pytest.raises(GatewayUnavailable):
        await env.gateway(base_url=hostile.url).collect(env.request())
    assert hostile.hits[COLLECTION_PATH] == 1


async def test_a_resend_that_finds_our_id_taken_is_outcome_unknown(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    env = await make_env()
    hostile = await hostile_airtel(
        aiohttp_server,
        lambda n: (
            web.Response(status=502)
            if n == 1
            else airtel_error(400, "ESB000041", "External Transaction ID already exists.")
        ),
    )
    with pytest.raises(GatewayUnavailable) as caught:
        await env.gateway(base_url=hostile.url).collect(env.request())
    assert caught.value.outcome_unknown and caught.value.provider_code == "ESB000041"


async def test_a_collection_declined_at_once_is_a_classified_error(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    env = await make_env()
    declined = {**ACCEPTED, "status": {**ACCEPTED["status"], "response_code": "DP00800001026", "success": False}}
    hostile = await hostile_airtel(aiohttp_server, lambda n: web.json_response(declined))
    with pytest.raises(GatewayConfigurationError) as caught:
        await env.gateway(base_url=hostile.url).collect(env.request())
    assert caught.value.provider_code == "DP00800001026"


async def test_a_token_refused_twice_is_configuration_not_a_loop(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    env = await make_env()
    hostile = await hostile_airtel(aiohttp_server, lambda n: web.json_response({"error": "invalid_token"}, status=401))
    with pytest.raises(GatewayConfigurationError) as caught:
        await env.gateway(base_url=hostile.url).collect(env.request())
    assert caught.value.code == "airtel_token_rejected"
    assert hostile.hits == Counter({OAUTH_PATH: 2, COLLECTION_PATH: 2})


async def test_a_token_answer_without_a_lifetime_is_unavailable(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    env = await make_env()
    hostile = await hostile_airtel(
        aiohttp_server, lambda n: web.json_response(ACCEPTED), token=lambda n: web.json_response({"access_token": "t"})
    )
    with pytest.raises(GatewayUnavailable) as caught:
        await env.gateway(base_url=hostile.url).collect(env.request())
    assert caught.value.code == "airtel_bad_token_answer" and hostile.hits[COLLECTION_PATH] == 0


async def test_a_collection_timeout_is_outcome_unknown_but_enquiry_is_retried(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    env = await make_env()
    hostile = await hostile_airtel(aiohttp_server, lambda n: web.json_response(PAID), delay_s=1.0)
    gateway = env.gateway(base_url=hostile.url, timeout=aiohttp.ClientTimeout(total=0.1), attempts=2)

    with pytest.raises(GatewayUnavailable) as collected:
        await gateway.collect(env.request())
    assert collected.value.outcome_unknown and hostile.hits[COLLECTION_PATH] == 1

    with pytest.raises(GatewayUnavailable) as enquired:
        await gateway.enquire("somo-x")
    assert not enquired.value.outcome_unknown and hostile.hits[ENQUIRY_PREFIX] == 2


async def test_enquiry_rides_out_the_not_found_race_and_5xx(make_env: MakeEnv, aiohttp_server: AiohttpServer) -> None:
    env = await make_env()
    answers = [airtel_error(404, "ESB000045"), web.Response(status=500, text="oops"), web.json_response(PAID)]
    hostile = await hostile_airtel(aiohttp_server, lambda n: answers[n - 1])
    result = await env.gateway(base_url=hostile.url).enquire("somo-race")
    assert result.succeeded and result.transaction_id == "somo-race" and hostile.hits[ENQUIRY_PREFIX] == 3


async def test_an_enquiry_without_a_known_status_is_unavailable(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    env = await make_env()
    odd = {"data": {"transaction": {"status": "DONE"}}, "status": {"result_code": "ESB000010"}}
    hostile = await hostile_airtel(aiohttp_server, lambda n: web.json_response(odd))
    with pytest.raises(GatewayUnavailable) as caught:
        await env.gateway(base_url=hostile.url).enquire("somo-odd")
    assert caught.value.code == "airtel_bad_answer"


async def test_an_unreachable_airtel_is_unavailable(make_env: MakeEnv, aiohttp_server: AiohttpServer) -> None:
    env = await make_env()
    hostile = await hostile_airtel(aiohttp_server, lambda n: web.json_response(ACCEPTED))
    url = hostile.url
    await hostile.server.close()
    with pytest.raises(GatewayUnavailable) as caught:
        await env.gateway(base_url=url, attempts=2).collect(env.request())
    assert caught.value.code == "airtel_unreachable" and not caught.value.outcome_unknown
    assert env.wire.count(OAUTH_PATH) == 2  # connection refused: safe to re-send, bounded
