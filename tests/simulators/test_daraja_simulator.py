"""The Daraja simulator over real HTTP on loopback: OAuth, STK Push validation, callbacks with
their faults, STK Query and determinism. Callbacks land on a second, real aiohttp server."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from lms_domain.clock import FixedClock
from server.simulators.daraja import (
    SANDBOX_PASSKEY,
    SANDBOX_SHORTCODE,
    DarajaSimConfig,
    DarajaSimulator,
    Outcome,
    create_daraja_app,
    daraja_simulator_key,
    stk_password,
)
from server.simulators.faults import CallbackFaults, DispatchFaults
from tests.conftest import T0
from tests.loopback import Receiver, start_receiver

TIMESTAMP = "20261127100000"
KEY, SECRET = "sim-consumer-key", "sim-consumer-secret"
SUCCESS_PHONE = "254708374149"  # ends in 9: success
CANCEL_PHONE = "254711000002"  # ends in 2: 1032
SILENT_PHONE = "254711000006"  # ends in 6: success, no callback


@dataclass
class Sim:
    client: TestClient[web.Request, web.Application]
    token: str
    receiver: Receiver

    @property
    def state(self) -> DarajaSimulator:
        return self.client.app[daraja_simulator_key]

    async def call(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        all_headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        response = await self.client.post(path, json=body, headers=all_headers)
        return response.status, await response.json()

    async def push(self, headers: dict[str, str] | None = None, **fields: Any) -> tuple[int, Any]:
        body = push_body(self.receiver.url, **fields)
        return await self.call("/mpesa/stkpush/v1/processrequest", body, headers)

    async def accepted(self, headers: dict[str, str] | None = None, **fields: Any) -> str:
        status, body = await self.push(headers, **fields)
        assert status == 200, body
        return str(body["CheckoutRequestID"])

    async def query(self, checkout_id: str) -> tuple[int, Any]:
        body = {
            "BusinessShortCode": SANDBOX_SHORTCODE,
            "Password": stk_password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, TIMESTAMP),
            "Timestamp": TIMESTAMP,
            "CheckoutRequestID": checkout_id,
        }
        return await self.call("/mpesa/stkpushquery/v1/query", body)


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def push_body(callback_url: str, **overrides: Any) -> dict[str, Any]:
    phone = overrides.pop("phone", SUCCESS_PHONE)
    body: dict[str, Any] = {
        "BusinessShortCode": 174379,
        "Password": stk_password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, TIMESTAMP),
        "Timestamp": TIMESTAMP,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": "10",
        "PartyA": phone,
        "PartyB": "174379",
        "PhoneNumber": phone,
        "CallBackURL": callback_url,
        "AccountReference": "INV-0001",
        "TransactionDesc": "Somo fees",
    }
    body.update(overrides)
    return body


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    return await start_receiver(
        aiohttp_server, "/mpesa/stk/secret-token", answer={"ResultCode": 0, "ResultDesc": "Accepted"}
    )


MakeSim = Callable[..., Awaitable[Sim]]


@pytest.fixture
def make_sim(aiohttp_client: AiohttpClient, receiver: Receiver) -> MakeSim:
    async def make(**config: Any) -> Sim:
        config.setdefault("clock", FixedClock(T0).now)
        config.setdefault("processing_ms", 10)
        client = await aiohttp_client(create_daraja_app(DarajaSimConfig(**config)))
        response = await client.get(
            "/oauth/v1/generate",
            params={"grant_type": "client_credentials"},
            headers={"Authorization": basic(KEY, SECRET)},
        )
        assert response.status == 200
        return Sim(client, (await response.json())["access_token"], receiver)

    return make


def stk(body: Any) -> dict[str, Any]:
    return dict(body["Body"]["stkCallback"])


# ---- OAuth ----


async def test_oauth_returns_the_string_expires_in_and_a_new_token_kills_the_old(make_sim: MakeSim) -> None:
    sim = await make_sim()
    response = await sim.client.get(
        "/oauth/v1/generate?grant_type=client_credentials", headers={"Authorization": basic(KEY, SECRET)}
    )
    body = await response.json()
    assert response.status == 200
    assert set(body) == {"access_token", "expires_in"} and body["expires_in"] == "3599"
    assert re.fullmatch(r"[A-Za-z0-9]{28}", body["access_token"])

    old_status, old_body = await sim.push(Amount=11)
    assert old_status == 404 and old_body["errorCode"] == "404.001.03"
    assert old_body["errorMessage"] == "Invalid Access Token"
    sim.token = body["access_token"]
    assert (await sim.push())[0] == 200


async def test_expires_in_can_be_a_number(make_sim: MakeSim) -> None:
    sim = await make_sim(expires_in_as_number=True)
    response = await sim.client.get(
        "/oauth/v1/generate?grant_type=client_credentials", headers={"Authorization": basic(KEY, SECRET)}
    )
    assert (await response.json())["expires_in"] == 3599


@pytest.mark.parametrize(
    ("query", "authorization", "code", "message"),
    [
        ("grant_type=password", basic(KEY, SECRET), "400.008.02", "Invalid grant type passed"),
        ("", basic(KEY, SECRET), "400.008.02", "Invalid grant type passed"),
        ("grant_type=client_credentials", None, "400.008.01", "Invalid authentication type passed"),
        ("grant_type=client_credentials", "Bearer abc", "400.008.01", "Invalid authentication type passed"),
        ("grant_type=client_credentials", basic(KEY, "wrong"), "400.008.01", "Invalid authentication type passed"),
        ("grant_type=client_credentials", "Basic !!!", "400.008.01", "Invalid authentication type passed"),
    ],
)
async def test_oauth_errors(make_sim: MakeSim, query: str, authorization: str | None, code: str, message: str) -> None:
    sim = await make_sim()
    headers = {"Authorization": authorization} if authorization else {}
    response = await sim.client.get(f"/oauth/v1/generate?{query}", headers=headers)
    body = await response.json()
    assert response.status == 400
    assert body["errorCode"] == code and body["errorMessage"] == message and body["requestId"]


async def test_tokens_expire_after_an_hour(make_sim: MakeSim) -> None:
    clock = FixedClock(T0)
    sim = await make_sim(clock=clock.now)
    clock.advance(timedelta(seconds=3599))
    assert (await sim.push())[0] == 200
    clock.advance(timedelta(seconds=1))
    status, body = await sim.push(Amount=12)
    assert (status, body["errorCode"]) == (404, "404.001.03")


@pytest.mark.parametrize(
    ("authorization", "code", "message"),
    [
        (None, "404.001.04", "Invalid Authentication Header"),
        ("Bearer not-a-token", "404.001.03", "Invalid Access Token"),
        ("TOKEN", "404.001.03", "Invalid Access Token"),  # the missing "Bearer " prefix
    ],
)
async def test_business_apis_check_the_bearer_token(
    make_sim: MakeSim, authorization: str | None, code: str, message: str
) -> None:
    sim = await make_sim()
    headers = {"Authorization": authorization.replace("TOKEN", sim.token)} if authorization else {}
    for path in ("/mpesa/stkpush/v1/processrequest", "/mpesa/stkpushquery/v1/query"):
        response = await sim.client.post(path, json=push_body(sim.receiver.url), headers=headers)
        body = await response.json()
        assert response.status == 404
        assert (body["errorCode"], body["errorMessage"]) == (code, message)


async def test_the_wrong_method_is_an_authentication_header_error(make_sim: MakeSim) -> None:
    sim = await make_sim()
    response = await sim.client.get(
        "/mpesa/stkpush/v1/processrequest", headers={"Authorization": f"Bearer {sim.token}"}
    )
    assert response.status == 404
    assert (await response.json())["errorCode"] == "404.001.04"


# ---- STK Push validation ----


@pytest.mark.parametrize(
    ("field", "value", "invalid"),
    [
        ("BusinessShortCode", "abc", "BusinessShortCode"),
        ("BusinessShortCode", "1743", "BusinessShortCode"),
        ("BusinessShortCode", None, "BusinessShortCode"),
        ("Password", "", "Password"),
        ("Timestamp", "2026-11-27 10:00", "Timestamp"),
        ("Timestamp", "20261327100000", "Timestamp"),
        ("TransactionType", "CustomerPayBill", "TransactionType"),
        ("Amount", 1.5, "Amount"),
        ("Amount", "1.5", "Amount"),
        ("Amount", 10.0, "Amount"),
        ("Amount", 0, "Amount"),
        ("Amount", 250_001, "Amount"),
        ("Amount", True, "Amount"),
        ("PartyA", "0712345678", "PartyA"),
        ("PartyB", "12", "PartyB"),
        ("PhoneNumber", "0712345678", "PhoneNumber"),
        ("PhoneNumber", "+254712345678", "PhoneNumber"),
        ("PhoneNumber", "25471234567", "PhoneNumber"),
        ("PhoneNumber", "254212345678", "PhoneNumber"),
        ("CallBackURL", "not a url", "CallBackURL"),
        ("CallBackURL", " https://example.com/cb", "CallBackURL"),
        ("CallBackURL", "ftp://example.com/cb", "CallBackURL"),
        ("AccountReference", "ABCDEFGHIJKLM", "AccountReference"),
        ("AccountReference", "", "AccountReference"),
        ("TransactionDesc", "Fourteen chars", "TransactionDesc"),
    ],
)
async def test_invalid_fields_get_the_real_400_body(make_sim: MakeSim, field: str, value: Any, invalid: str) -> None:
    sim = await make_sim()
    status, body = await sim.push(**{field: value})
    assert status == 400
    assert set(body) == {"requestId", "errorCode", "errorMessage"}
    assert (body["errorCode"], body["errorMessage"]) == ("400.002.02", f"Bad Request - Invalid {invalid}")
    assert sim.state.log.attempts == [] and sim.state.transactions == {}


async def test_a_form_encoded_body_is_blamed_on_the_first_field(make_sim: MakeSim) -> None:
    sim = await make_sim()
    response = await sim.client.post(
        "/mpesa/stkpush/v1/processrequest",
        data={k: str(v) for k, v in push_body(sim.receiver.url).items()},
        headers={"Authorization": f"Bearer {sim.token}"},
    )
    body = await response.json()
    assert (response.status, body["errorMessage"]) == (400, "Bad Request - Invalid BusinessShortCode")


async def test_http_callback_urls_are_refused_when_https_is_required(make_sim: MakeSim) -> None:
    sim = await make_sim(require_https_callback=True)
    status, body = await sim.push()
    assert (status, body["errorMessage"]) == (400, "Bad Request - Invalid CallBackURL")


async def test_boundary_values_and_type_drift_are_accepted(make_sim: MakeSim) -> None:
    sim = await make_sim()
    cases: list[dict[str, Any]] = [
        {"Amount": 1, "phone": "254110000001"},
        {"Amount": "250000", "phone": "254710000001", "BusinessShortCode": "174379", "PartyB": 174379},
        {"AccountReference": "ABCDEFGHIJKL", "TransactionDesc": "Thirteen char", "phone": "254720000001"},
        {"TransactionDesc": None, "phone": "254730000001"},
        {"Timestamp": int(TIMESTAMP), "phone": "254740000001"},
    ]
    for case in cases:
        assert (await sim.push(**case))[0] == 200, case


@pytest.mark.parametrize(
    ("timestamp", "password"),
    [
        (
            "20210628092408",
            "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjEwNjI4MDkyNDA4",
        ),
        (
            "20160216165627",
            "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTYwMjE2MTY1NjI3",
        ),
    ],
)
async def test_the_reference_password_vectors_are_accepted(make_sim: MakeSim, timestamp: str, password: str) -> None:
    assert stk_password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, timestamp) == password
    sim = await make_sim()
    status, body = await sim.push(Timestamp=timestamp, Password=password, PartyA="254722000000", phone="254722111111")
    assert status == 200, body


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"Password": base64.b64encode(b"174379wrongpasskey20261127100000").decode()},
            "[MerchantValidate] - Wrong credentials",
        ),
        ({"Timestamp": "20261127100001"}, "[MerchantValidate] - Wrong credentials"),
        ({"BusinessShortCode": "600000", "PartyB": "600000"}, "Merchant does not exist"),
    ],
)
async def test_credential_errors_are_500_merchant_validate(
    make_sim: MakeSim, overrides: dict[str, Any], message: str
) -> None:
    sim = await make_sim()
    status, body = await sim.push(**overrides)
    assert (status, body["errorCode"], body["errorMessage"]) == (500, "500.001.1001", message)


# ---- STK Push: answers and callbacks ----


async def test_a_successful_push_delivers_one_success_callback_with_metadata(make_sim: MakeSim) -> None:
    sim = await make_sim()
    status, answer = await sim.push()
    assert status == 200
    assert set(answer) == {
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResponseCode",
        "ResponseDescription",
        "CustomerMessage",
    }
    assert answer["ResponseCode"] == "0"
    assert answer["ResponseDescription"] == answer["CustomerMessage"] == "Success. Request accepted for processing"
    assert answer["CheckoutRequestID"] == "ws_CO_27112026100000000708374149"
    assert re.fullmatch(r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\d{7}", answer["MerchantRequestID"])

    await sim.state.dispatcher.drain()
    assert len(sim.receiver.bodies) == 1
    assert b'"ResultCode": 0,' in sim.receiver.bodies[0]
    callback = stk(sim.receiver.json()[0])
    items = callback.pop("CallbackMetadata")["Item"]
    assert callback == {
        "MerchantRequestID": answer["MerchantRequestID"],
        "CheckoutRequestID": answer["CheckoutRequestID"],
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
    }
    receipt = items[1]["Value"]
    assert re.fullmatch(r"UK[A-Z0-9]{8}", receipt)  # U = 2026, K = November
    assert items == [
        {"Name": "Amount", "Value": 10},
        {"Name": "MpesaReceiptNumber", "Value": receipt},
        {"Name": "Balance"},
        {"Name": "TransactionDate", "Value": 20261127100000},
        {"Name": "PhoneNumber", "Value": 254708374149},
    ]
    [attempt] = sim.state.log.attempts
    assert (attempt.status, attempt.url, attempt.kind, attempt.at) == (200, sim.receiver.url, "result", T0)

    status, final = await sim.query(answer["CheckoutRequestID"])
    assert status == 200
    assert final == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": answer["MerchantRequestID"],
        "CheckoutRequestID": answer["CheckoutRequestID"],
        "ResultCode": "0",
        "ResultDesc": "The service request is processed successfully.",
    }


async def test_a_cancelling_phone_delivers_a_1032_callback_without_metadata(make_sim: MakeSim) -> None:
    sim = await make_sim()
    checkout_id = await sim.accepted(phone=CANCEL_PHONE)
    await sim.state.dispatcher.drain()
    [body] = sim.receiver.json()
    assert "CallbackMetadata" not in stk(body)
    assert stk(body)["ResultCode"] == 1032 and stk(body)["ResultDesc"] == "Request cancelled by user"
    assert stk(body)["CheckoutRequestID"] == checkout_id
    status, final = await sim.query(checkout_id)
    assert (status, final["ResultCode"], final["ResultDesc"]) == (200, "1032", "Request cancelled by user")


@pytest.mark.parametrize(
    ("phone", "code"),
    [("254711000003", 1037), ("254711000004", 1), ("254711000005", 2001), ("254711000007", 1019)],
)
async def test_the_last_digit_scripts_the_result(make_sim: MakeSim, phone: str, code: int) -> None:
    sim = await make_sim()
    await sim.accepted(phone=phone)
    await sim.state.dispatcher.drain()
    [body] = sim.receiver.json()
    assert stk(body)["ResultCode"] == code and "CallbackMetadata" not in stk(body)


async def test_the_silent_digit_sends_nothing_while_query_answers_pending_then_final(make_sim: MakeSim) -> None:
    sim = await make_sim(processing_ms=300)
    checkout_id = await sim.accepted(phone=SILENT_PHONE)
    status, pending = await sim.query(checkout_id)
    assert status == 500
    assert pending == {
        "requestId": checkout_id,
        "errorCode": "500.001.1001",
        "errorMessage": "The transaction is being processed",
    }
    await asyncio.sleep(0.35)
    status, final = await sim.query(checkout_id)
    assert (status, final["ResultCode"], final["ResultDesc"]) == (
        200,
        "0",
        "The service request is processed successfully.",
    )
    assert "MpesaReceiptNumber" not in json.dumps(final)
    await sim.state.dispatcher.drain()
    assert sim.receiver.bodies == [] and sim.state.log.attempts == []


async def test_query_of_an_unknown_checkout_request_id(make_sim: MakeSim) -> None:
    sim = await make_sim()
    status, body = await sim.query("ws_CO_01012026000000000700000000")
    assert (status, body["errorCode"], body["errorMessage"]) == (
        400,
        "400.002.02",
        "Bad Request - Invalid CheckoutRequestID",
    )


async def test_the_outcome_header_overrides_the_digit(make_sim: MakeSim) -> None:
    sim = await make_sim()
    await sim.accepted({"X-Sim-Outcome": "1032"})
    await sim.accepted({"X-Sim-Outcome": "SFC_IC0003"}, phone="254711000000")
    await sim.state.dispatcher.drain()
    assert [stk(b)["ResultCode"] for b in sim.receiver.json()] == [1032, "SFC_IC0003"]
    status, body = await sim.push({"X-Sim-Outcome": "12345"}, phone="254711000010")
    assert (status, body["errorCode"]) == (400, "sim.outcome")


async def test_config_scripts_outcomes_and_faults_per_msisdn(make_sim: MakeSim) -> None:
    sim = await make_sim(
        msisdn_outcomes={SUCCESS_PHONE: Outcome(1)}, msisdn_faults={SUCCESS_PHONE: CallbackFaults(copies=2)}
    )
    await sim.accepted()
    await sim.state.dispatcher.drain()
    assert [stk(b)["ResultCode"] for b in sim.receiver.json()] == [1, 1]


async def test_a_paybill_push_to_another_party_b_fails_2028(make_sim: MakeSim) -> None:
    sim = await make_sim()
    await sim.accepted(PartyB="600000")
    await sim.accepted(TransactionType="CustomerBuyGoodsOnline", PartyB="600000", phone="254711000000")
    await sim.state.dispatcher.drain()
    assert [stk(b)["ResultCode"] for b in sim.receiver.json()] == [2028, 0]


async def test_a_push_while_the_phone_is_busy_cannot_lock_the_subscriber(make_sim: MakeSim) -> None:
    sim = await make_sim(processing_ms=200)
    await sim.accepted()
    status, body = await sim.push(Amount=11)
    assert (status, body["errorCode"]) == (500, "500.001.1001")
    assert body["errorMessage"].startswith("Unable to lock subscriber")


async def test_the_same_amount_within_two_minutes_is_rule_17(make_sim: MakeSim) -> None:
    clock = FixedClock(T0)
    sim = await make_sim(clock=clock.now)
    await sim.accepted()
    await sim.state.dispatcher.drain()
    clock.advance(timedelta(seconds=119))
    await sim.accepted()
    await sim.state.dispatcher.drain()
    clock.advance(timedelta(seconds=121))
    await sim.accepted()
    await sim.state.dispatcher.drain()
    assert [stk(b)["ResultCode"] for b in sim.receiver.json()] == [0, 17, 0]
    assert stk(sim.receiver.json()[1])["ResultDesc"] == "Rule limited."


# ---- callback faults ----


async def test_duplicate_x3_delivers_three_identical_bodies(make_sim: MakeSim) -> None:
    sim = await make_sim()
    await sim.accepted({"X-Sim-Faults": "dup=3"})
    await sim.state.dispatcher.drain()
    assert len(sim.receiver.bodies) == 3 and len(set(sim.receiver.bodies)) == 1
    assert [a.kind for a in sim.state.log.attempts] == ["result", "duplicate", "duplicate"]


async def test_a_straggling_duplicate_lands_after_a_later_intent(make_sim: MakeSim) -> None:
    sim = await make_sim()
    first = await sim.accepted({"X-Sim-Faults": "dup=2;straggle=150"})
    second = await sim.accepted(phone="254711000000")
    await sim.state.dispatcher.drain()
    order = [(stk(b)["CheckoutRequestID"]) for b in sim.receiver.json()]
    assert order == [first, second, first]


async def test_a_contradicting_result_arrives_after_the_first(make_sim: MakeSim) -> None:
    sim = await make_sim()
    checkout_id = await sim.accepted({"X-Sim-Faults": "contradict=50"})
    await sim.state.dispatcher.drain()
    first, late = (stk(b) for b in sim.receiver.json())
    assert first["CheckoutRequestID"] == late["CheckoutRequestID"] == checkout_id
    assert (first["ResultCode"], late["ResultCode"]) == (0, 1032)
    assert "CallbackMetadata" in first and "CallbackMetadata" not in late
    assert [a.kind for a in sim.state.log.attempts] == ["result", "contradiction"]
    status, final = await sim.query(checkout_id)
    assert final["ResultCode"] == "0"  # the simulator's truth is the first result


async def test_a_failure_is_contradicted_by_a_late_success(make_sim: MakeSim) -> None:
    sim = await make_sim()
    await sim.accepted({"X-Sim-Faults": "contradict=20"}, phone="254711000003")
    await sim.state.dispatcher.drain()
    first, late = (stk(b) for b in sim.receiver.json())
    assert (first["ResultCode"], late["ResultCode"]) == (1037, 0)
    assert "CallbackMetadata" in late


async def test_a_dropped_callback_is_logged_but_never_sent(make_sim: MakeSim) -> None:
    sim = await make_sim()
    checkout_id = await sim.accepted({"X-Sim-Faults": "drop"})
    await sim.state.dispatcher.drain()
    assert sim.receiver.bodies == []
    [attempt] = sim.state.log.attempts
    assert attempt.dropped and attempt.status is None and attempt.key == checkout_id
    assert (await sim.query(checkout_id))[1]["ResultCode"] == "0"


async def test_a_delayed_callback_waits(make_sim: MakeSim) -> None:
    sim = await make_sim()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sim.accepted({"X-Sim-Faults": "delay=200"})
    await asyncio.sleep(0.1)
    assert sim.receiver.bodies == []
    await sim.state.dispatcher.drain()
    assert len(sim.receiver.bodies) == 1 and loop.time() - started >= 0.2


async def test_a_bad_fault_header_is_refused(make_sim: MakeSim) -> None:
    sim = await make_sim()
    status, body = await sim.push({"X-Sim-Faults": "explode"})
    assert (status, body["errorCode"]) == (400, "sim.faults")


async def test_global_faults_apply_to_every_push(make_sim: MakeSim) -> None:
    sim = await make_sim(callback_faults=CallbackFaults(copies=2))
    await sim.accepted()
    await sim.state.dispatcher.drain()
    assert len(sim.receiver.bodies) == 2


PHONES = ("254711000000", "254711000001", "254711000009", "254711000010")


async def test_a_reorder_window_shuffles_callbacks_across_intents(make_sim: MakeSim) -> None:
    sim = await make_sim(dispatch_faults=DispatchFaults(reorder_window=4))
    pushed = [await sim.accepted(phone=phone) for phone in PHONES]
    await sim.state.dispatcher.drain()
    delivered = [stk(b)["CheckoutRequestID"] for b in sim.receiver.json()]
    assert sorted(delivered) == sorted(pushed)
    assert delivered != pushed  # seed 0 gives a real permutation


async def test_held_callbacks_are_released_after_the_hold_timeout(make_sim: MakeSim) -> None:
    sim = await make_sim(dispatch_faults=DispatchFaults(reorder_window=3, hold_timeout_ms=100))
    await sim.accepted()
    await sim.state.dispatcher.drain()
    assert len(sim.receiver.bodies) == 1


async def test_a_burst_holds_callbacks_then_fires_them_together(make_sim: MakeSim) -> None:
    sim = await make_sim(dispatch_faults=DispatchFaults(burst_size=3, hold_timeout_ms=5000))
    for phone in PHONES[:2]:
        await sim.accepted(phone=phone)
    await asyncio.sleep(0.1)
    assert sim.receiver.bodies == []
    await sim.accepted(phone=PHONES[2])
    await sim.state.dispatcher.drain()
    assert len(sim.receiver.bodies) == 3


# ---- the test-only endpoints and determinism ----


async def test_deliveries_endpoint_and_reset(make_sim: MakeSim) -> None:
    sim = await make_sim()
    checkout_id = await sim.accepted({"X-Sim-Faults": "dup=2"})
    await sim.state.dispatcher.drain()
    deliveries = await (await sim.client.get("/sim/deliveries")).json()
    assert [(d["seq"], d["key"], d["kind"], d["status"]) for d in deliveries] == [
        (0, checkout_id, "result", 200),
        (1, checkout_id, "duplicate", 200),
    ]
    assert deliveries[0]["body"] == sim.receiver.json()[0] and deliveries[0]["at"] == T0.isoformat()

    assert (await sim.client.post("/sim/reset")).status == 200
    assert await (await sim.client.get("/sim/deliveries")).json() == []
    assert (await sim.push())[1]["errorCode"] == "404.001.03"  # tokens are state too


async def scripted_run(sim: Sim) -> list[Any]:
    """A mixed run: faults of every kind, reordering across intents, two pushes per phone."""
    # Gaps between scripted times are wide (hundreds of ms) so a slow machine cannot reorder them;
    # six callback groups fill a window of two exactly, so nothing waits for the hold timeout.
    await sim.accepted({"X-Sim-Faults": "dup=3;straggle=600"}, phone=PHONES[0])
    await sim.accepted({"X-Sim-Faults": "contradict=400"}, phone=PHONES[1])
    await sim.accepted(phone=PHONES[2])
    await sim.accepted({"X-Sim-Faults": "drop"}, phone=PHONES[3])
    await sim.accepted(phone=CANCEL_PHONE)
    await sim.accepted({"X-Sim-Faults": "delay=50"}, phone="254711000020")
    await sim.accepted(phone=SILENT_PHONE)
    await sim.state.dispatcher.drain()
    return list(await (await sim.client.get("/sim/deliveries")).json())


async def test_the_same_seed_gives_the_same_delivery_sequence(make_sim: MakeSim) -> None:
    faults = DispatchFaults(reorder_window=2, hold_timeout_ms=5000)
    first = await scripted_run(await make_sim(seed=7, dispatch_faults=faults))
    second_sim = await make_sim(seed=7, dispatch_faults=faults)
    second = await scripted_run(second_sim)
    kinds = [d["kind"] for d in first]
    assert len(first) == 9 and kinds.count("duplicate") == 2 and kinds.count("contradiction") == 1
    assert [d["dropped"] for d in first].count(True) == 1 and first == second
    other = await scripted_run(await make_sim(seed=8, dispatch_faults=faults))
    assert other != first

    await second_sim.client.post("/sim/reset")
    sim_token = await second_sim.client.get(
        "/oauth/v1/generate?grant_type=client_credentials", headers={"Authorization": basic(KEY, SECRET)}
    )
    second_sim = replace(second_sim, token=(await sim_token.json())["access_token"])
    assert await scripted_run(second_sim) == first  # a reset replays the same run
