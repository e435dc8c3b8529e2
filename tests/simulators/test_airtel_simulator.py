"""The Airtel Money simulator over real HTTP on loopback: OAuth, header and body validation,
the digit table, enquiry over time, refunds, signed callbacks with their faults, the test-only
endpoints and determinism. Callbacks land on a second, real aiohttp server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from lms_domain.clock import FixedClock
from lms_domain.payments.airtel import HashCandidate, match_callback_hash
from server.simulators.airtel import (
    AirtelSimConfig,
    AirtelSimulator,
    Outcome,
    add_airtel_routes,
    airtel_simulator_key,
    create_airtel_app,
    failed,
)
from server.simulators.daraja import DarajaSimConfig, create_daraja_app
from server.simulators.faults import CallbackFaults, DispatchFaults
from tests.conftest import T0
from tests.loopback import Receiver, start_receiver

CLIENT_ID, CLIENT_SECRET = "sim-airtel-client-id", "sim-airtel-client-secret"
CALLBACK_SECRET = "portal-secret"
PAID = "733123450"  # ends in 0: TS
DECLINED = "733123454"  # ends in 4: TF, not enough balance
SILENT = "733123456"  # ends in 6: TS, no callback
AMBIGUOUS = "733123457"  # ends in 7: TA, then TS
COLLECT = "/merchant/v1/payments/"


@dataclass
class Sim:
    client: TestClient[web.Request, web.Application]
    token: str
    receiver: Receiver
    counter: int = 0

    @property
    def state(self) -> AirtelSimulator:
        return self.client.app[airtel_simulator_key]

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {"Authorization": f"Bearer {self.token}", "X-Country": "KE", "X-Currency": "KES", "Accept": "*/*"}
        return {**base, **(extra or {})}

    def next_id(self) -> str:
        self.counter += 1
        return f"somo-tx-{self.counter:04d}"

    async def collect(
        self, headers: dict[str, str] | None = None, path: str = COLLECT, **fields: Any
    ) -> tuple[int, Any]:
        body = collection_body(fields.pop("msisdn", PAID), fields.pop("id", None) or self.next_id(), **fields)
        response = await self.client.post(path, json=body, headers=self.headers(headers))
        return response.status, await response.json()

    async def accepted(self, headers: dict[str, str] | None = None, **fields: Any) -> str:
        transaction_id = fields.pop("id", None) or self.next_id()
        status, body = await self.collect(headers, id=transaction_id, **fields)
        assert status == 200, body
        return transaction_id

    async def enquire(self, transaction_id: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        response = await self.client.get(f"/standard/v1/payments/{transaction_id}", headers=self.headers(headers))
        return response.status, await response.json()

    async def refund(self, airtel_money_id: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        body = {"transaction": {"airtel_money_id": airtel_money_id}}
        response = await self.client.post("/standard/v1/payments/refund", json=body, headers=self.headers(headers))
        return response.status, await response.json()


def collection_body(msisdn: str, transaction_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": "Somo INV-0001",
        "subscriber": {"country": "KE", "currency": "KES", "msisdn": msisdn},
        "transaction": {"amount": 1000, "country": "KE", "currency": "KES", "id": transaction_id},
    }
    for name, value in overrides.items():
        section, _, key = name.partition("__")
        if key:
            body[section][key] = value
        else:
            body[section] = value
    return body


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    return await start_receiver(aiohttp_server, "/airtel/callback/secret-token", "/other/callback")


MakeSim = Callable[..., Awaitable[Sim]]


async def fetch_token(client: TestClient[web.Request, web.Application]) -> str:
    body = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "client_credentials"}
    response = await client.post("/auth/oauth2/token", json=body)
    assert response.status == 200
    return str((await response.json())["access_token"])


@pytest.fixture
def make_sim(aiohttp_client: AiohttpClient, receiver: Receiver) -> MakeSim:
    async def make(**config: Any) -> Sim:
        config.setdefault("clock", FixedClock(T0).now)
        config.setdefault("processing_ms", 10)
        config.setdefault("ambiguous_ms", 100)
        config.setdefault("callback_url", receiver.url)
        client = await aiohttp_client(create_airtel_app(AirtelSimConfig(**config)))
        return Sim(client, await fetch_token(client), receiver)

    return make


async def settle(sim: Sim, seconds: float = 0.03) -> None:
    """Let the customer answer (processing_ms) and every queued callback land."""
    await asyncio.sleep(seconds)
    await sim.state.dispatcher.drain()


# ---- OAuth ----


async def test_oauth_with_a_json_body_returns_a_string_expires_in(make_sim: MakeSim) -> None:
    sim = await make_sim()
    body = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "client_credentials"}
    response = await sim.client.post("/auth/oauth2/token", json=body)
    answer = await response.json()
    assert response.status == 200
    assert set(answer) == {"access_token", "expires_in", "token_type"}
    assert answer["expires_in"] == "180" and answer["token_type"] == "bearer"
    assert re.fullmatch(r"[A-Za-z0-9]{32}", answer["access_token"])
    assert answer["access_token"] != sim.token
    sim.token = answer["access_token"]
    assert (await sim.collect())[0] == 200


async def test_oauth_with_basic_auth_and_a_json_grant_type(make_sim: MakeSim) -> None:
    sim = await make_sim()
    response = await sim.client.post(
        "/auth/oauth2/token",
        json={"grant_type": "client_credentials"},
        headers={"Authorization": basic(CLIENT_ID, CLIENT_SECRET)},
    )
    assert response.status == 200 and (await response.json())["expires_in"] == "180"


@pytest.mark.parametrize(
    ("body", "authorization", "status", "error"),
    [
        ({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, None, 400, "unsupported_grant_type"),
        (
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "password"},
            None,
            400,
            "unsupported_grant_type",
        ),
        (
            {"client_id": CLIENT_ID, "client_secret": "wrong", "grant_type": "client_credentials"},
            None,
            401,
            "invalid_client",
        ),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, basic(CLIENT_ID, "wrong"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "Basic !!!", 401, "invalid_client"),
    ],
)
async def test_oauth_errors(
    make_sim: MakeSim, body: dict[str, Any], authorization: str | None, status: int, error: str
) -> None:
    sim = await make_sim()
    headers = {"Authorization": authorization} if authorization else {}
    response = await sim.client.post("/auth/oauth2/token", json=body, headers=headers)
    assert response.status == status and (await response.json())["error"] == error


async def test_tokens_expire_after_180_seconds(make_sim: MakeSim) -> None:
    clock = FixedClock(T0)
    sim = await make_sim(clock=clock.now)
    clock.advance(timedelta(seconds=179))
    assert (await sim.collect())[0] == 200
    clock.advance(timedelta(seconds=1))
    status, body = await sim.collect()
    assert (status, body["error"]) == (401, "invalid_token")


async def test_a_new_token_can_kill_the_old_one_when_configured(make_sim: MakeSim) -> None:
    sim = await make_sim(invalidate_previous_token=True)
    old = sim.token
    sim.token = await fetch_token(sim.client)
    assert (await sim.collect())[0] == 200
    sim.token = old
    assert (await sim.collect())[0] == 401


# ---- headers and body validation ----


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Authorization": ""}, 401, None),
        ({"Authorization": "Bearer nope"}, 401, None),
        ({"X-Country": ""}, 400, "ROUTER006"),
        ({"X-Country": "UG"}, 400, "ROUTER006"),
        ({"X-Currency": ""}, 400, "ROUTER112"),
        ({"X-Currency": "UGX"}, 400, "ROUTER112"),
    ],
)
async def test_every_business_call_checks_token_and_country_headers(
    make_sim: MakeSim, headers: dict[str, str], status: int, code: str | None
) -> None:
    sim = await make_sim()
    paid = await sim.accepted()
    answers = [
        await sim.collect(headers),
        await sim.enquire(paid, headers),
        await sim.refund("MP261127.1000.A00000", headers),
    ]
    for got_status, body in answers:
        assert got_status == status, body
        if code is None:
            assert body["error"] == "invalid_token"
        else:
            assert body["status"]["result_code"] == code and body["status"]["success"] is False
            assert body["status"]["code"] == "400"  # a string, like every status.code
    assert len(sim.state.transactions) == 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"msisdn": "254733123450"}, "ESB000033"),  # the country code must not be sent
        ({"msisdn": "0733123450"}, "ESB000033"),
        ({"msisdn": "73312345"}, "ESB000033"),
        ({"msisdn": "+73312345"}, "ESB000008"),
        ({"msisdn": None}, "ESB000008"),
        ({"transaction__amount": 0}, "ESB000008"),
        ({"transaction__amount": -5}, "ESB000008"),
        ({"transaction__amount": 10.5}, "ESB000008"),
        ({"transaction__amount": "ten"}, "ESB000008"),
        ({"transaction__amount": True}, "ESB000008"),
        ({"subscriber__country": "UG"}, "ESB000034"),
        ({"transaction__country": "TZ"}, "ESB000034"),
        ({"subscriber__currency": "UGX"}, "ESB000035"),
        ({"transaction__currency": "USD"}, "ESB000035"),
        ({"transaction__id": ""}, "ESB000008"),
        ({"transaction__id": 12345}, "ESB000008"),
        ({"reference": ""}, "ESB000008"),
        ({"reference": None}, "ESB000008"),
        ({"subscriber": "733123450"}, "ESB000008"),
    ],
)
async def test_invalid_collections_get_the_esb_error(make_sim: MakeSim, fields: dict[str, Any], code: str) -> None:
    sim = await make_sim()
    msisdn = fields.pop("msisdn", PAID)
    status, body = await sim.collect(msisdn=msisdn, **fields)
    assert status == 400
    assert body["status"]["result_code"] == code and body["status"]["success"] is False
    assert body["status"]["message"]
    await settle(sim)
    assert sim.state.transactions == {} and sim.state.log.attempts == []


async def test_type_drift_that_airtel_tolerates_is_accepted(make_sim: MakeSim) -> None:
    sim = await make_sim()
    for fields in (
        {"transaction__amount": "1000"},
        {"transaction__amount": 1000.0},
        {"msisdn": 733123450},
        {"subscriber": {"msisdn": "733123450"}},  # country/currency in the body are optional
    ):
        assert (await sim.collect(**fields))[0] == 200, fields


async def test_a_reused_transaction_id_is_esb000041(make_sim: MakeSim) -> None:
    sim = await make_sim()
    await sim.accepted(id="tx-1")
    status, body = await sim.collect(id="tx-1", msisdn=DECLINED)
    assert (status, body["status"]["result_code"]) == (400, "ESB000041")
    assert body["status"]["message"] == "External Transaction ID already exists."
    await settle(sim)
    [row] = sim.state.truth()
    assert row["status"] == "TS" and row["msisdn"] == PAID


async def test_the_collection_path_needs_its_trailing_slash(make_sim: MakeSim) -> None:
    sim = await make_sim()
    body = collection_body(PAID, "tx-slash")
    response = await sim.client.post("/merchant/v1/payments", json=body, headers=sim.headers())
    assert response.status == 404 and sim.state.transactions == {}


# ---- collection, callback, enquiry ----


async def test_a_paid_collection_answers_pending_then_calls_back_and_enquires_ts(make_sim: MakeSim) -> None:
    sim = await make_sim(processing_ms=100)
    status, answer = await sim.collect(id="9f1c2a7e")
    assert status == 200
    assert answer == {
        "data": {"transaction": {"id": "9f1c2a7e", "status": "SUCCESS"}},
        "status": {
            "code": "200",
            "message": "SUCCESS",
            "result_code": "ESB000010",
            "response_code": "DP00800001006",
            "success": True,
        },
    }
    status, pending = await sim.enquire("9f1c2a7e")
    assert status == 200
    assert pending["data"]["transaction"] == {
        "airtel_money_id": None,
        "id": "9f1c2a7e",
        "message": "Transaction in progress",
        "status": "TIP",
    }
    assert pending["status"]["response_code"] == "DP00800001006" and pending["status"]["success"] is False

    await settle(sim, 0.12)
    [callback] = sim.receiver.json()
    money_id = callback["transaction"]["airtel_money_id"]
    assert re.fullmatch(r"MP261127\.1000\.[A-Z]\d{5}", money_id)  # 10:00 in Nairobi
    assert callback == {
        "transaction": {
            "id": "9f1c2a7e",
            "message": f"Paid KES 1,000 to SOMO LEARNING LIMITED, Trans ID {money_id}.",
            "status_code": "TS",
            "airtel_money_id": money_id,
        }
    }
    [attempt] = sim.state.log.attempts
    assert (attempt.status, attempt.url, attempt.key, attempt.kind, attempt.at) == (
        200,
        sim.receiver.url,
        "9f1c2a7e",
        "result",
        T0,
    )

    status, final = await sim.enquire("9f1c2a7e")
    assert final == {
        "data": {
            "transaction": {
                "airtel_money_id": money_id,
                "id": "9f1c2a7e",
                "message": "Your transaction has been successfully processed",
                "status": "TS",
            }
        },
        "status": {
            "response_code": "DP00800001001",
            "code": "200",
            "success": True,
            "result_code": "ESB000010",
            "message": "SUCCESS",
        },
    }


@pytest.mark.parametrize(
    ("msisdn", "status", "code", "callbacks"),
    [
        ("733123450", "TS", "DP00800001001", 1),
        ("733123451", "TS", "DP00800001001", 1),
        ("733123452", "TF", "DP00800001002", 1),
        ("733123453", "TF", "DP00800001005", 1),
        ("733123454", "TF", "DP00800001007", 1),
        ("733123455", "TF", "DP00800001008", 1),
        ("733123456", "TS", "DP00800001001", 0),
        ("733123458", "TF", "DP00800001029", 1),
        ("100000009", "TS", "DP00800001001", 1),
    ],
)
async def test_the_last_digit_scripts_the_outcome(
    make_sim: MakeSim, msisdn: str, status: str, code: str, callbacks: int
) -> None:
    sim = await make_sim()
    transaction_id = await sim.accepted(msisdn=msisdn)
    await settle(sim)
    _, answer = await sim.enquire(transaction_id)
    assert (answer["data"]["transaction"]["status"], answer["status"]["response_code"]) == (status, code)
    assert answer["status"]["success"] is (status == "TS")
    assert len(sim.receiver.bodies) == callbacks
    for body in sim.receiver.json():
        assert body["transaction"]["status_code"] == status and body["transaction"]["id"] == transaction_id
        assert (body["transaction"]["airtel_money_id"] is None) is (status == "TF")


async def test_the_ambiguous_digit_is_tip_then_ta_then_ts(make_sim: MakeSim) -> None:
    sim = await make_sim(processing_ms=150, ambiguous_ms=300)
    transaction_id = await sim.accepted(msisdn=AMBIGUOUS)
    seen = [(await sim.enquire(transaction_id))[1]]
    await asyncio.sleep(0.25)
    seen.append((await sim.enquire(transaction_id))[1])
    assert sim.receiver.bodies == []  # no callback while ambiguous
    await settle(sim, 0.25)
    seen.append((await sim.enquire(transaction_id))[1])
    assert [a["data"]["transaction"]["status"] for a in seen] == ["TIP", "TA", "TS"]
    ambiguous = seen[1]
    assert ambiguous["data"]["transaction"]["airtel_money_id"] is None
    assert ambiguous["data"]["transaction"]["message"] == "Ambiguous"
    assert (ambiguous["status"]["code"], ambiguous["status"]["success"]) == ("200", False)
    assert ambiguous["status"]["response_code"] == "DP00800001000"
    [callback] = sim.receiver.json()
    assert callback["transaction"]["status_code"] == "TS"


@pytest.mark.parametrize(
    ("outcome", "status", "code", "callbacks"),
    [
        ("TF:DP00800001002", "TF", "DP00800001002", 1),
        ("DP00800001007", "TF", "DP00800001007", 1),
        ("DP00800001001", "TS", "DP00800001001", 1),
        ("tf", "TF", "DP00800001008", 1),
        ("none", "TS", "DP00800001001", 0),
        ("TA", "TA", "DP00800001000", 0),
        ("TIP", "TIP", "DP00800001006", 0),
        ("TE", "TE", "DP00800001029", 0),
        ("TA:TF:DP00800001024", "TF", "DP00800001024", 1),
    ],
)
async def test_the_outcome_header_overrides_the_digit(
    make_sim: MakeSim, outcome: str, status: str, code: str, callbacks: int
) -> None:
    sim = await make_sim()
    transaction_id = await sim.accepted({"X-Sim-Outcome": outcome}, msisdn=PAID)
    await settle(sim, 0.15)
    _, answer = await sim.enquire(transaction_id)
    assert (answer["data"]["transaction"]["status"], answer["status"]["response_code"]) == (status, code)
    assert len(sim.receiver.bodies) == callbacks


@pytest.mark.parametrize("outcome", ["TX", "TF:ESB000001", "DP00800009999", "TA:TA"])
async def test_an_unknown_outcome_header_is_refused(make_sim: MakeSim, outcome: str) -> None:
    sim = await make_sim()
    status, body = await sim.collect({"X-Sim-Outcome": outcome})
    assert (status, body["status"]["result_code"]) == (400, "sim.outcome")
    assert sim.state.transactions == {}


async def test_config_outcomes_per_msisdn_and_amount_limits(make_sim: MakeSim) -> None:
    sim = await make_sim(msisdn_outcomes={PAID: failed("DP00800001009")}, min_amount=10, max_amount=5000)
    scripted = await sim.accepted()
    below = await sim.accepted(msisdn="733000001", transaction__amount=9)
    above = await sim.accepted(msisdn="733000011", transaction__amount=5001)
    at_limit = await sim.accepted(msisdn="733000021", transaction__amount=5000)
    await settle(sim)
    codes = [(await sim.enquire(t))[1]["status"]["response_code"] for t in (scripted, below, above, at_limit)]
    assert codes == ["DP00800001009", "DP00800001004", "DP00800001003", "DP00800001001"]


async def test_an_unknown_transaction_id_is_esb000045(make_sim: MakeSim) -> None:
    sim = await make_sim()
    status, body = await sim.enquire("never-sent")
    assert (status, body["status"]["result_code"]) == (404, "ESB000045")
    assert body["status"]["message"] == "No Transaction Found With Provided Transaction Id."


async def test_documented_variants_are_configurable(make_sim: MakeSim) -> None:
    sim = await make_sim(collection_id_false=True, enquiry_amount=True, callback_code_field=True)
    status, answer = await sim.collect(id="tx-false", msisdn=DECLINED)
    assert status == 200 and answer["data"]["transaction"]["id"] is False
    await settle(sim)
    _, enquiry = await sim.enquire("tx-false")
    assert enquiry["data"]["transaction"]["amount"] == 1000
    assert sim.receiver.json()[0]["transaction"]["code"] == "DP00800001007"


async def test_v2_collection_requires_the_signing_headers_when_enforced(make_sim: MakeSim) -> None:
    sim = await make_sim(require_signature=True)
    status, body = await sim.collect(path="/merchant/v2/payments/")
    assert (status, body["status"]["response_code"]) == (400, "DP00800001026")
    signed = {"x-signature": "c2lnbmF0dXJl", "x-key": "a2V5"}
    assert (await sim.collect(signed, path="/merchant/v2/payments/", id="tx-v2"))[0] == 200
    assert sim.state.transactions["tx-v2"].signed
    assert (await sim.collect(id="tx-v1"))[0] == 200  # v1 needs no signature


# ---- callbacks: URL, hash, faults ----


async def test_the_callback_url_is_the_portal_setting_unless_a_test_overrides_it(make_sim: MakeSim) -> None:
    sim = await make_sim()
    other = str(sim.receiver.server.make_url("/other/callback"))
    await sim.accepted({"X-Sim-Callback-Url": other})
    await sim.accepted(msisdn="733000000")
    await settle(sim)
    assert [a.url for a in sim.state.log.attempts] == [other, sim.receiver.url]

    silent = await make_sim(callback_url=None)
    await silent.accepted()
    await settle(silent)
    assert silent.state.log.attempts == [] and len(silent.state.transactions) == 1


async def test_without_callback_auth_there_is_no_hash(make_sim: MakeSim) -> None:
    sim = await make_sim()
    await sim.accepted()
    await settle(sim)
    assert "hash" not in sim.receiver.json()[0]


@pytest.mark.parametrize(
    ("canonicalisation", "candidate"),
    [
        ("transaction_json", HashCandidate.TRANSACTION_JSON),
        ("raw_body", HashCandidate.RAW_BODY_WITHOUT_HASH),
    ],
)
async def test_signed_callbacks_verify_under_the_configured_canonicalisation(
    make_sim: MakeSim, canonicalisation: str, candidate: HashCandidate
) -> None:
    sim = await make_sim(callback_auth=True, callback_secret=CALLBACK_SECRET, hash_canonicalisation=canonicalisation)
    await sim.accepted()
    await sim.accepted(msisdn=DECLINED)
    await settle(sim)
    for raw in sim.receiver.bodies:
        body = json.loads(raw)
        assert list(body) == ["transaction", "hash"]
        if canonicalisation == "transaction_json":
            signed = json.dumps({"transaction": body["transaction"]}, separators=(",", ":")).encode()
            expected = base64.b64encode(hmac.new(CALLBACK_SECRET.encode(), signed, hashlib.sha256).digest())
            assert body["hash"] == expected.decode()
        assert match_callback_hash(raw, CALLBACK_SECRET) is candidate
        assert match_callback_hash(raw, "another-secret") is None


async def test_duplicates_drops_and_delays(make_sim: MakeSim) -> None:
    sim = await make_sim()
    loop = asyncio.get_running_loop()
    started = loop.time()
    dup = await sim.accepted({"X-Sim-Faults": "dup=3"})
    dropped = await sim.accepted({"X-Sim-Faults": "drop"}, msisdn="733000000")
    delayed = await sim.accepted({"X-Sim-Faults": "delay=150"}, msisdn="733000010")
    await asyncio.sleep(0.08)
    assert delayed not in [json.loads(b)["transaction"]["id"] for b in sim.receiver.bodies]
    await settle(sim)
    assert loop.time() - started >= 0.15
    assert len(set(sim.receiver.bodies[:3])) == 1
    assert [(a.key, a.kind, a.dropped) for a in sim.state.log.attempts] == [
        (dup, "result", False),
        (dup, "duplicate", False),
        (dup, "duplicate", False),
        (dropped, "result", True),
        (delayed, "result", False),
    ]
    assert (await sim.enquire(dropped))[1]["data"]["transaction"]["status"] == "TS"


@pytest.mark.parametrize(("msisdn", "first", "late"), [(PAID, "TS", "TF"), (DECLINED, "TF", "TS")])
async def test_a_contradiction_arrives_late_and_enquiry_keeps_the_first(
    make_sim: MakeSim, msisdn: str, first: str, late: str
) -> None:
    sim = await make_sim(callback_auth=True, callback_secret=CALLBACK_SECRET)
    transaction_id = await sim.accepted({"X-Sim-Faults": "contradict=40"}, msisdn=msisdn)
    await settle(sim)
    result, contradiction = sim.receiver.json()
    assert (result["transaction"]["status_code"], contradiction["transaction"]["status_code"]) == (first, late)
    assert result["transaction"]["id"] == contradiction["transaction"]["id"] == transaction_id
    assert [a.kind for a in sim.state.log.attempts] == ["result", "contradiction"]
    assert all(match_callback_hash(raw, CALLBACK_SECRET) for raw in sim.receiver.bodies)
    assert (await sim.enquire(transaction_id))[1]["data"]["transaction"]["status"] == first


async def test_config_faults_per_msisdn_and_a_bad_fault_header(make_sim: MakeSim) -> None:
    sim = await make_sim(msisdn_faults={PAID: CallbackFaults(copies=2)})
    await sim.accepted()
    await settle(sim)
    assert len(sim.receiver.bodies) == 2
    status, body = await sim.collect({"X-Sim-Faults": "explode"})
    assert (status, body["status"]["result_code"]) == (400, "sim.faults")


# ---- refunds ----


async def test_a_paid_collection_is_refunded_once(make_sim: MakeSim) -> None:
    sim = await make_sim()
    transaction_id = await sim.accepted()
    await settle(sim)
    money_id = (await sim.enquire(transaction_id))[1]["data"]["transaction"]["airtel_money_id"]

    status, body = await sim.refund(money_id)
    assert (status, body) == (
        200,
        {
            "data": {"transaction": {"airtel_money_id": money_id, "status": "SUCCESS"}},
            "status": {"code": "200", "message": "SUCCESS", "result_code": "ESB000010", "success": True},
        },
    )
    [row] = await (await sim.client.get("/sim/airtel/transactions")).json()
    assert row["refunded_at"] == T0.isoformat()
    status, again = await sim.refund(money_id)
    assert (status, again["status"]["result_code"]) == (400, "ESB000011")


async def test_refund_errors_and_the_inconsistent_success_flag(make_sim: MakeSim) -> None:
    sim = await make_sim(refund_success_flag=False)
    assert (await sim.refund("MP000000.0000.A00000"))[1]["status"]["result_code"] == "ESB000045"
    response = await sim.client.post("/standard/v1/payments/refund", json={"transaction": {}}, headers=sim.headers())
    assert (await response.json())["status"]["result_code"] == "ESB000008"
    transaction_id = await sim.accepted()
    await settle(sim)
    money_id = (await sim.enquire(transaction_id))[1]["data"]["transaction"]["airtel_money_id"]
    status, scripted = await sim.refund(money_id, {"X-Sim-Outcome": "ESB000001"})
    assert (status, scripted["status"]["result_code"]) == (400, "ESB000001")
    status, body = await sim.refund(money_id)
    assert (status, body["status"]["result_code"], body["status"]["success"]) == (200, "ESB000010", False)


# ---- test-only endpoints, the combined app, determinism ----


async def test_transactions_deliveries_and_reset(make_sim: MakeSim) -> None:
    sim = await make_sim(processing_ms=10)
    paid = await sim.accepted({"X-Sim-Faults": "dup=2"})
    declined = await sim.accepted(msisdn=DECLINED, transaction__amount=250)
    pending = await sim.accepted({"X-Sim-Outcome": "TIP"}, msisdn="733000000")
    await settle(sim)
    rows = await (await sim.client.get("/sim/airtel/transactions")).json()
    assert [(r["transaction_id"], r["msisdn"], r["amount"], r["status"]) for r in rows] == [
        (paid, PAID, 1000, "TS"),
        (declined, DECLINED, 250, "TF"),
        (pending, "733000000", 1000, "TIP"),
    ]
    assert rows[0]["airtel_money_id"] and rows[1]["airtel_money_id"] is None
    assert rows[0]["created_at"] == T0.isoformat() and rows[0]["currency"] == "KES"

    deliveries = await (await sim.client.get("/sim/airtel/deliveries")).json()
    assert [(d["seq"], d["key"], d["kind"], d["status"]) for d in deliveries] == [
        (0, paid, "result", 200),
        (1, paid, "duplicate", 200),
        (2, declined, "result", 200),
    ]
    assert deliveries[0]["body"] == sim.receiver.json()[0]

    assert (await sim.client.post("/sim/airtel/reset")).status == 200
    assert await (await sim.client.get("/sim/airtel/deliveries")).json() == []
    assert await (await sim.client.get("/sim/airtel/transactions")).json() == []
    assert (await sim.collect())[0] == 401  # tokens are state too


host_started_key = web.AppKey("host_started", list[str])


async def test_airtel_routes_install_onto_an_existing_app(aiohttp_client: AiohttpClient, receiver: Receiver) -> None:
    # A stand-in for the Daraja simulator's app: its own route under /sim and its own cleanup ctx.
    async def host_ctx(app: web.Application) -> Any:
        app[host_started_key].append("up")
        yield

    async def host_deliveries(request: web.Request) -> web.Response:
        return web.json_response(["host"])

    app = web.Application()
    app[host_started_key] = []
    app.router.add_get("/sim/deliveries", host_deliveries)
    app.cleanup_ctx.append(host_ctx)
    add_airtel_routes(app, AirtelSimConfig(clock=FixedClock(T0).now, processing_ms=10, callback_url=receiver.url))
    client = await aiohttp_client(app)

    sim = Sim(client, await fetch_token(client), receiver)
    await sim.accepted()
    await settle(sim)
    assert len(receiver.bodies) == 1  # the Airtel dispatcher runs on the shared app
    assert app[host_started_key] == ["up"]
    assert await (await client.get("/sim/deliveries")).json() == ["host"]
    assert len(await (await client.get("/sim/airtel/deliveries")).json()) == 1


async def test_airtel_routes_share_one_app_with_the_daraja_simulator(
    aiohttp_client: AiohttpClient, receiver: Receiver
) -> None:
    app = create_daraja_app(DarajaSimConfig(clock=FixedClock(T0).now, processing_ms=10))
    add_airtel_routes(app, AirtelSimConfig(clock=FixedClock(T0).now, processing_ms=10, callback_url=receiver.url))
    client = await aiohttp_client(app)
    daraja = await client.get(
        "/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        headers={"Authorization": basic("sim-consumer-key", "sim-consumer-secret")},
    )
    assert daraja.status == 200
    sim = Sim(client, await fetch_token(client), receiver)
    await sim.accepted()
    await settle(sim)
    assert len(receiver.bodies) == 1
    assert await (await client.get("/sim/deliveries")).json() == []  # Daraja's log is its own


async def scripted_run(sim: Sim) -> tuple[list[Any], list[Any]]:
    """A mixed run: every fault kind and reordering across collections."""
    await sim.accepted({"X-Sim-Faults": "dup=3;straggle=600"}, msisdn="733000010")
    await sim.accepted({"X-Sim-Faults": "contradict=400"}, msisdn="733000020")
    await sim.accepted(msisdn="733000030")
    await sim.accepted({"X-Sim-Faults": "drop"}, msisdn="733000040")
    await sim.accepted(msisdn=DECLINED)
    await sim.accepted({"X-Sim-Faults": "delay=50"}, msisdn="733000050")
    await sim.accepted(msisdn=SILENT)
    await settle(sim)
    deliveries = await (await sim.client.get("/sim/airtel/deliveries")).json()
    truth = await (await sim.client.get("/sim/airtel/transactions")).json()
    return deliveries, truth


async def test_the_same_seed_gives_the_same_run(make_sim: MakeSim) -> None:
    faults = DispatchFaults(reorder_window=2, hold_timeout_ms=5000)
    first = await scripted_run(await make_sim(seed=7, dispatch_faults=faults, callback_auth=True))
    second_sim = await make_sim(seed=7, dispatch_faults=faults, callback_auth=True)
    second = await scripted_run(second_sim)
    kinds = [d["kind"] for d in first[0]]
    assert len(first[0]) == 9 and kinds.count("duplicate") == 2 and kinds.count("contradiction") == 1
    assert first == second
    other = await scripted_run(await make_sim(seed=8, dispatch_faults=faults, callback_auth=True))
    assert [r["airtel_money_id"] for r in other[1]] != [r["airtel_money_id"] for r in first[1]]

    await second_sim.client.post("/sim/airtel/reset")
    second_sim.token = await fetch_token(second_sim.client)
    second_sim.counter = 0
    assert await scripted_run(second_sim) == first  # a reset replays the same run


def test_outcome_helpers() -> None:
    assert Outcome().succeeded and not failed("DP00800001002").succeeded
