"""The Daraja simulator's C2B, Pull, Transaction Status, Reversal and statement over real HTTP.

Callbacks and validation requests land on a second, real aiohttp server whose validation reply
can be scripted; every delivered body is round-tripped through the domain's parsers.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from lms_domain.clock import FixedClock
from lms_domain.payments.mpesa import parse_async_result, parse_c2b_payload
from server.simulators.daraja import (
    SANDBOX_PASSKEY,
    SANDBOX_SHORTCODE,
    DarajaSimConfig,
    DarajaSimulator,
    create_daraja_app,
    daraja_simulator_key,
    stk_password,
)
from server.simulators.daraja_org import STATEMENT_COLUMNS
from tests.conftest import T0

TIMESTAMP = "20261127100000"
KEY, SECRET = "sim-consumer-key", "sim-consumer-secret"
PAYBILL = "600984"
PAYER = "254708374149"  # JOHN DOE
OTHER_PAYER = "254711000001"
PATHS = {
    "confirm": "/c2b/confirm/tok",
    "validate": "/c2b/validate/tok",
    "result": "/results/tok",
    "timeout": "/timeouts/tok",
    "stk": "/stk/tok",
}
C2B_KEYS = [
    "TransactionType",
    "TransID",
    "TransTime",
    "TransAmount",
    "BusinessShortCode",
    "BillRefNumber",
    "InvoiceNumber",
    "OrgAccountBalance",
    "ThirdPartyTransID",
    "MSISDN",
    "FirstName",
    "MiddleName",
    "LastName",
]
CONVERSATION_ID = re.compile(r"AG_20261127_[0-9a-f]{20}")


@dataclass
class Script:
    """What the receiver got, per path, and how it answers validation requests."""

    bodies: defaultdict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    validation_status: int = 200
    validation_reply: Any = field(default_factory=lambda: {"ResultCode": "0", "ResultDesc": "Accepted"})
    validation_delay_s: float = 0.0


script_key = web.AppKey("script", Script)


@dataclass
class Receiver:
    server: TestServer
    script: Script

    def url(self, name: str) -> str:
        return str(self.server.make_url(PATHS[name]))

    def raw(self, name: str) -> list[bytes]:
        return self.script.bodies[PATHS[name]]

    def json(self, name: str) -> list[Any]:
        return [json.loads(body) for body in self.raw(name)]


@dataclass
class Sim:
    client: TestClient[web.Request, web.Application]
    token: str
    receiver: Receiver
    clock: FixedClock

    @property
    def state(self) -> DarajaSimulator:
        return self.client.app[daraja_simulator_key]

    async def login(self) -> None:
        response = await self.client.get(
            "/oauth/v1/generate",
            params={"grant_type": "client_credentials"},
            headers={"Authorization": basic(KEY, SECRET)},
        )
        assert response.status == 200
        self.token = (await response.json())["access_token"]

    async def call(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        all_headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        response = await self.client.post(path, json=body, headers=all_headers)
        return response.status, await response.json()

    async def register(self, version: str = "v2", **overrides: Any) -> tuple[int, Any]:
        body = {
            "ShortCode": PAYBILL,
            "ResponseType": "Completed",
            "ConfirmationURL": self.receiver.url("confirm"),
            "ValidationURL": self.receiver.url("validate"),
        }
        return await self.call(f"/mpesa/c2b/{version}/registerurl", body | overrides)

    async def pay(self, headers: dict[str, str] | None = None, **overrides: Any) -> tuple[int, Any]:
        body = {
            "ShortCode": int(PAYBILL),
            "CommandID": "CustomerPayBillOnline",
            "Amount": 10,
            "Msisdn": int(PAYER),
            "BillRefNumber": "INV-0001",
        }
        return await self.call("/mpesa/c2b/v2/simulate", body | overrides, headers)

    async def paid(self, headers: dict[str, str] | None = None, **overrides: Any) -> str:
        """Pay, wait for validation and confirmation, and return the TransID."""
        status, answer = await self.pay(headers, **overrides)
        assert status == 200, answer
        await self.state.drain()
        [record] = [p for p in self.state.c2b_payments.values() if p.originator_id == answer["OriginatorCoversationID"]]
        return record.trans_id

    async def stk(self, phone: str = PAYER, amount: int = 10) -> tuple[str, str, str | None]:
        """An STK push; (CheckoutRequestID, MerchantRequestID, receipt) once processed."""
        body = {
            "BusinessShortCode": SANDBOX_SHORTCODE,
            "Password": stk_password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, TIMESTAMP),
            "Timestamp": TIMESTAMP,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": amount,
            "PartyA": phone,
            "PartyB": SANDBOX_SHORTCODE,
            "PhoneNumber": phone,
            "CallBackURL": self.receiver.url("stk"),
            "AccountReference": "INV-0001",
            "TransactionDesc": "Somo fees",
        }
        status, answer = await self.call("/mpesa/stkpush/v1/processrequest", body)
        assert status == 200, answer
        await self.state.drain()
        transaction = self.state.transactions[answer["CheckoutRequestID"]]
        return transaction.checkout_request_id, transaction.merchant_request_id, transaction.receipt

    async def status(self, headers: dict[str, str] | None = None, **overrides: Any) -> tuple[int, Any]:
        body = {
            "Initiator": "testapi",
            "SecurityCredential": "c2VjcmV0",
            "CommandID": "TransactionStatusQuery",
            "TransactionID": "UKNOTKNOWN",
            "PartyA": PAYBILL,
            "IdentifierType": "4",
            "ResultURL": self.receiver.url("result"),
            "QueueTimeOutURL": self.receiver.url("timeout"),
            "Remarks": "OK",
            "Occasion": "OK",
        }
        body = {k: v for k, v in (body | overrides).items() if v is not None}
        return await self.call("/mpesa/transactionstatus/v1/query", body, headers)

    async def reverse(self, headers: dict[str, str] | None = None, **overrides: Any) -> tuple[int, Any]:
        body = {
            "Initiator": "testapi",
            "SecurityCredential": "c2VjcmV0",
            "CommandID": "TransactionReversal",
            "TransactionID": "UKNOTKNOWN",
            "Amount": "10",
            "ReceiverParty": PAYBILL,
            "RecieverIdentifierType": "11",
            "ResultURL": self.receiver.url("result"),
            "QueueTimeOutURL": self.receiver.url("timeout"),
            "Remarks": "Payment reversal",
        }
        body = {k: v for k, v in (body | overrides).items() if v is not None}
        return await self.call("/mpesa/reversal/v1/request", body, headers)

    async def results(self) -> list[dict[str, Any]]:
        await self.state.drain()
        return [body["Result"] for body in self.receiver.json("result")]

    async def statement(self, day: str, **query: str) -> list[dict[str, str]]:
        response = await self.client.get("/sim/statement", params={"date": day, **query})
        assert response.status == 200 and response.content_type == "text/csv"
        return list(csv.DictReader(io.StringIO(await response.text())))


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    async def receive(request: web.Request) -> web.Response:
        script = request.app[script_key]
        script.bodies[request.path].append(await request.read())
        if request.path == PATHS["validate"]:
            await asyncio.sleep(script.validation_delay_s)
            return web.json_response(script.validation_reply, status=script.validation_status)
        return web.json_response({"ResultCode": 0, "ResultDesc": "Success"})

    app = web.Application()
    app[script_key] = Script()
    for path in PATHS.values():
        app.router.add_post(path, receive)
    return Receiver(await aiohttp_server(app), app[script_key])


MakeSim = Callable[..., Awaitable[Sim]]


@pytest.fixture
def make_sim(aiohttp_client: AiohttpClient, receiver: Receiver) -> MakeSim:
    async def make(**config: Any) -> Sim:
        clock = FixedClock(T0)
        config.setdefault("clock", clock.now)
        config.setdefault("processing_ms", 10)
        config.setdefault("enforce_rule_17", False)
        client = await aiohttp_client(create_daraja_app(DarajaSimConfig(**config)))
        sim = Sim(client, "", receiver, clock)
        await sim.login()
        return sim

    return make


# ---- C2B: register URLs ----


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_register_urls_answers_with_the_misspelled_originator_key(make_sim: MakeSim, version: str) -> None:
    sim = await make_sim()
    status, body = await sim.register(version)
    assert status == 200
    assert list(body) == ["OriginatorCoversationID", "ResponseCode", "ResponseDescription"]
    assert body["ResponseCode"] == "0" and body["ResponseDescription"] == "Success"
    assert re.fullmatch(r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\d{7}", body["OriginatorCoversationID"])
    assert sim.state.c2b_urls[PAYBILL].confirmation_url == sim.receiver.url("confirm")


async def test_the_sandbox_overwrites_urls_but_production_refuses_a_second_registration(make_sim: MakeSim) -> None:
    sim = await make_sim()
    assert (await sim.register())[0] == 200
    assert (await sim.register(ResponseType="Cancelled"))[0] == 200
    assert sim.state.c2b_urls[PAYBILL].response_type == "Cancelled"

    production = await make_sim(c2b_allow_overwrite=False)
    assert (await production.register())[0] == 200
    status, body = await production.register(ResponseType="Cancelled")
    assert (status, body["errorCode"], body["errorMessage"]) == (500, "500.003.1001", "Urls are already registered")
    assert production.state.c2b_urls[PAYBILL].response_type == "Completed"


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("ShortCode", "1234"),
        ("ResponseType", "completed"),  # sentence case, exactly
        ("ResponseType", "Accepted"),
        ("ConfirmationURL", "http://127.0.0.1:1/mpesa/confirm"),
        ("ConfirmationURL", "http://127.0.0.1:1/M-PESA/confirm"),
        ("ConfirmationURL", "http://127.0.0.1:1/SafariCom/confirm"),
        ("ConfirmationURL", "http://127.0.0.1:1/c2b/EXEC"),
        ("ConfirmationURL", "http://127.0.0.1:1/c2b/cmd"),
        ("ConfirmationURL", "http://127.0.0.1:1/c2b/Sql"),
        ("ConfirmationURL", "http://127.0.0.1:1/c2b/confirm?query=1"),
        ("ConfirmationURL", "https://abc.ngrok.io/c2b/confirm"),
        ("ValidationURL", "not a url"),
        ("ValidationURL", "http://mockbin.org/bin/1"),
    ],
)
async def test_register_refuses_bad_fields_and_banned_url_keywords(
    make_sim: MakeSim, field_name: str, value: str
) -> None:
    sim = await make_sim()
    status, body = await sim.register(**{field_name: value})
    assert (status, body["errorCode"], body["errorMessage"]) == (
        400,
        "400.002.02",
        f"Bad Request - Invalid {field_name}",
    )
    assert sim.state.c2b_urls == {}


async def test_c2b_and_org_apis_answer_a_bad_token_with_400_003_01(make_sim: MakeSim) -> None:
    sim = await make_sim()
    sim.token = "not-a-token"
    for call in (sim.register, sim.pay, sim.status, sim.reverse):
        status, body = await call()
        assert (status, body["errorCode"], body["errorMessage"]) == (400, "400.003.01", "Invalid Access Token")
    pull = await sim.call("/pulltransactions/v1/query", {})
    assert pull[0] == 400 and pull[1]["errorCode"] == "400.003.01"


# ---- C2B: simulate, validation, confirmation ----


async def test_a_payment_without_validation_is_confirmed_with_the_real_body(make_sim: MakeSim) -> None:
    sim = await make_sim()
    await sim.register()
    status, answer = await sim.pay()
    assert status == 200
    assert answer == {
        "OriginatorCoversationID": answer["OriginatorCoversationID"],
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully.",
    }
    await sim.state.drain()
    assert sim.receiver.raw("validate") == []  # external validation is off by default
    [raw] = sim.receiver.raw("confirm")
    confirmation = json.loads(raw)
    assert list(confirmation) == C2B_KEYS
    trans_id = confirmation["TransID"]
    assert re.fullmatch(r"UK[A-Z0-9]{8}", trans_id)
    assert confirmation == {
        "TransactionType": "Pay Bill",
        "TransID": trans_id,
        "TransTime": "20261127100000",
        "TransAmount": "10.00",
        "BusinessShortCode": PAYBILL,
        "BillRefNumber": "INV-0001",
        "InvoiceNumber": "",
        "OrgAccountBalance": "10.00",
        "ThirdPartyTransID": "",
        "MSISDN": PAYER,
        "FirstName": "JOHN",
        "MiddleName": "",
        "LastName": "DOE",
    }
    payment = parse_c2b_payload(raw)
    assert (payment.trans_id, payment.amount_minor, payment.shortcode) == (trans_id, 1000, PAYBILL)
    assert payment.payer_name == "JOHN DOE" and payment.trans_time == T0
    [attempt] = sim.state.log.attempts
    assert (attempt.key, attempt.kind, attempt.status) == (trans_id, "result", 200)

    await sim.paid(Amount="25", Msisdn=str(OTHER_PAYER))
    second = parse_c2b_payload(sim.receiver.raw("confirm")[1])
    assert second.org_balance == "35.00" and second.amount_minor == 2500


@pytest.mark.parametrize(
    ("overrides", "invalid"),
    [
        ({"ShortCode": "abc"}, "ShortCode"),
        ({"CommandID": "CustomerPayBill"}, "CommandID"),
        ({"Amount": 1.5}, "Amount"),
        ({"Amount": "0"}, "Amount"),
        ({"Msisdn": "0708374149"}, "Msisdn"),
        ({"BillRefNumber": "A" * 21}, "BillRefNumber"),
        ({"BillRefNumber": None}, "BillRefNumber"),  # a paybill needs an account number
    ],
)
async def test_simulate_validates_fields(make_sim: MakeSim, overrides: dict[str, Any], invalid: str) -> None:
    sim = await make_sim()
    status, body = await sim.pay(**overrides)
    assert (status, body["errorMessage"]) == (400, f"Bad Request - Invalid {invalid}")
    assert sim.state.c2b_payments == {} and sim.state.ledger == []


async def test_a_till_payment_needs_no_account_number(make_sim: MakeSim) -> None:
    sim = await make_sim()
    await sim.register()
    trans_id = await sim.paid(CommandID="CustomerBuyGoodsOnline", BillRefNumber=None, Amount=20)
    [confirmation] = sim.receiver.json("confirm")
    assert confirmation["TransactionType"] == "Buy Goods" and confirmation["BillRefNumber"] == ""
    assert sim.state.receipts[trans_id].amount == 20


async def test_external_validation_accepts_then_confirms_echoing_the_third_party_id(make_sim: MakeSim) -> None:
    sim = await make_sim(c2b_external_validation=frozenset({PAYBILL}))
    sim.receiver.script.validation_reply = {"ResultCode": "0", "ResultDesc": "Accepted", "ThirdPartyTransID": "SOMO-1"}
    await sim.register()
    trans_id = await sim.paid()

    [validation_raw] = sim.receiver.raw("validate")
    [confirmation_raw] = sim.receiver.raw("confirm")
    validation, confirmation = parse_c2b_payload(validation_raw), parse_c2b_payload(confirmation_raw)
    assert validation.trans_id == confirmation.trans_id == trans_id
    assert json.loads(validation_raw)["OrgAccountBalance"] == "" and validation.third_party_trans_id == ""
    assert confirmation.org_balance == "10.00" and confirmation.third_party_trans_id == "SOMO-1"
    assert [(a.key, a.url) for a in sim.state.log.attempts] == [
        (f"{trans_id}:validation", sim.receiver.url("validate")),
        (trans_id, sim.receiver.url("confirm")),
    ]
    assert sim.state.c2b_payments[trans_id].decided_by == "validation:0"


@pytest.mark.parametrize("code", ["C2B00012", "C2B00016"])
async def test_a_rejected_payment_is_never_confirmed_nor_booked(make_sim: MakeSim, code: str) -> None:
    sim = await make_sim(c2b_external_validation=frozenset({PAYBILL}))
    sim.receiver.script.validation_reply = {"ResultCode": code, "ResultDesc": "Rejected"}
    await sim.register()
    trans_id = await sim.paid()

    assert len(sim.receiver.raw("validate")) == 1 and sim.receiver.raw("confirm") == []
    record = sim.state.c2b_payments[trans_id]
    assert (record.status, record.decided_by) == ("rejected", f"validation:{code}")
    assert trans_id not in sim.state.receipts and await sim.statement("2026-11-27") == []


@pytest.mark.parametrize(
    ("response_type", "confirmed"), [("Completed", True), ("Cancelled", False)], ids=["completed", "cancelled"]
)
@pytest.mark.parametrize("failure", ["slow", "http-500", "dropped"])
async def test_an_unanswered_validation_falls_back_to_the_response_type(
    make_sim: MakeSim, response_type: str, confirmed: bool, failure: str
) -> None:
    sim = await make_sim(c2b_external_validation=frozenset({PAYBILL}), c2b_validation_timeout_ms=100)
    script = sim.receiver.script
    headers: dict[str, str] = {}
    if failure == "slow":
        script.validation_delay_s = 0.3
    elif failure == "http-500":
        script.validation_status = 500
    else:
        headers = {"X-Sim-Validation-Faults": "drop"}
    await sim.register(ResponseType=response_type)
    trans_id = await sim.paid(headers)

    record = sim.state.c2b_payments[trans_id]
    assert record.decided_by == f"fallback:{response_type}"
    assert (record.status == "completed") is confirmed and (trans_id in sim.state.receipts) is confirmed
    assert len(sim.receiver.raw("confirm")) == (1 if confirmed else 0)
    [validation] = [a for a in sim.state.log.attempts if a.key.endswith(":validation")]
    assert validation.dropped is (failure == "dropped")
    assert (validation.error is not None) is (failure == "slow")
    assert validation.status == {"slow": None, "http-500": 500, "dropped": None}[failure]


async def test_confirmation_faults_apply_and_a_dropped_confirmation_still_books_the_payment(
    make_sim: MakeSim,
) -> None:
    sim = await make_sim()
    await sim.register()
    await sim.paid({"X-Sim-Faults": "dup=2"})
    assert len(sim.receiver.raw("confirm")) == 2 and len(set(sim.receiver.raw("confirm"))) == 1
    dropped = await sim.paid({"X-Sim-Faults": "drop"}, Msisdn=OTHER_PAYER)
    assert len(sim.receiver.raw("confirm")) == 2
    assert sim.state.receipts[dropped].amount == 10 and sim.state.log.attempts[-1].dropped

    status, body = await sim.pay({"X-Sim-Validation-Faults": "dup=2"})
    assert (status, body["errorCode"]) == (400, "sim.faults")


async def test_masked_msisdns_still_parse(make_sim: MakeSim) -> None:
    sim = await make_sim(mask_msisdn=True)
    await sim.register()
    await sim.paid()
    [raw] = sim.receiver.raw("confirm")
    assert json.loads(raw)["MSISDN"] == "2547 ***** 149"
    assert parse_c2b_payload(raw).msisdn == "2547 ***** 149"


async def test_a_payment_to_a_shortcode_without_urls_completes_silently(make_sim: MakeSim) -> None:
    sim = await make_sim()
    trans_id = await sim.paid()
    assert sim.state.c2b_payments[trans_id].status == "completed"
    assert sim.state.log.attempts == [] and sim.state.balance(PAYBILL) == 10


# ---- Pull ----


async def pull(sim: Sim, offset: int | str = 0, **overrides: Any) -> tuple[int, Any]:
    body = {
        "ShortCode": PAYBILL,
        "StartDate": "2026-11-27 0:00:00",
        "EndDate": "2026-11-28 23:59:59",
        "OffSetValue": str(offset),
    }
    return await sim.call("/pulltransactions/v1/query", body | overrides)


async def test_pull_registers_once_then_pages_through_c2b_payments(make_sim: MakeSim) -> None:
    sim = await make_sim(pull_page_size=2)
    register = {
        "ShortCode": PAYBILL,
        "RequestType": "Pull",
        "NominatedNumber": "0722000000",
        "CallBackURL": sim.receiver.url("result"),
    }
    assert (await pull(sim))[1]["errorMessage"] == "Bad Request - Invalid ShortCode"  # not registered yet
    status, first = await sim.call("/pulltransactions/v1/register", register)
    assert status == 200 and first["ResponseStatus"] == "1000" and first["ResponseRefID"]
    assert (await sim.call("/pulltransactions/v1/register", register))[1]["ResponseStatus"] == "1001"

    receipts = []
    for amount in (10, 20, 30):
        receipts.append(await sim.paid(Amount=amount, Msisdn=f"25471100000{amount // 10}"))
        sim.clock.advance(timedelta(minutes=1))
    await sim.stk()  # an STK payment to another shortcode: never a Pull row
    status, page = await pull(sim)
    assert status == 200 and page["ResponseCode"] == "1000"
    [rows] = page["Response"]
    assert [row["transactionId"] for row in rows] == receipts[:2]
    assert rows[0] == {
        "transactionId": receipts[0],
        "trxDate": "2026-11-27T07:00:00Z",
        "msisdn": 254711000001,
        "transactiontype": "c2b-pay-bill-debit",
        "billreference": "INV-0001",
        "amount": 10.0,
        "organizationname": "Safaricom Daraja 984",
    }
    assert [row["transactionId"] for row in (await pull(sim, 2))[1]["Response"][0]] == receipts[2:]
    empty = (await pull(sim, 3))[1]
    assert (empty["ResponseCode"], empty["Transaction"]) == ("1001", "[[]]") and "Response" not in empty

    sim.clock.advance(timedelta(hours=48, minutes=-2))  # the first payment leaves the 48-hour window
    await sim.login()  # the token died 47 hours ago
    assert [row["transactionId"] for row in (await pull(sim))[1]["Response"][0]] == receipts[1:]
    assert (await pull(sim, StartDate="2026-11-27 8:36"))[1]["errorMessage"] == "Bad Request - Invalid StartDate"


# ---- Transaction Status ----


async def test_status_of_a_c2b_receipt_posts_the_documented_result(make_sim: MakeSim) -> None:
    sim = await make_sim()
    trans_id = await sim.paid()
    status, ack = await sim.status(TransactionID=trans_id)
    assert status == 200 and list(ack) == [
        "OriginatorConversationID",
        "ConversationID",
        "ResponseCode",
        "ResponseDescription",
    ]
    assert ack["ResponseCode"] == "0" and ack["ResponseDescription"] == "Accept the service request successfully."
    assert CONVERSATION_ID.fullmatch(ack["ConversationID"])

    await sim.state.drain()
    [raw] = sim.receiver.raw("result")
    result = json.loads(raw)["Result"]
    assert list(result) == [
        "ConversationID",
        "OriginatorConversationID",
        "ReferenceData",
        "ResultCode",
        "ResultDesc",
        "ResultParameters",
        "ResultType",
        "TransactionID",
    ]
    assert result["ResultCode"] == 0 and result["ResultType"] == 0
    assert result["ReferenceData"] == {"ReferenceItem": {"Key": "Occasion", "Value": "OK"}}
    parameters = result["ResultParameters"]["ResultParameter"]
    assert [p["Key"] for p in parameters].count("DebitPartyName") == 2
    assert {"Key": "TransactionReason"} in parameters and {"Key": "Amount", "Value": "10"} in parameters
    parsed = parse_async_result(raw)
    assert (parsed.conversation_id, parsed.originator_conversation_id) == (
        ack["ConversationID"],
        ack["OriginatorConversationID"],
    )
    assert parsed.succeeded and parsed.first("ReceiptNo") == trans_id and parsed.amount_minor() == 1000
    assert parsed.parameters["DebitPartyName"] == ["600984 - Safaricom Daraja 984", f"{PAYER} - JOHN DOE"]
    assert parsed.first("TransactionStatus") == "Completed" and "TransactionReason" not in parsed.parameters
    assert parsed.time("FinalisedTime") == T0 and parsed.first("ReasonType") == "Pay Bill"
    assert [a.key for a in sim.state.log.attempts][-1] == ack["ConversationID"]


async def test_status_finds_an_stk_receipt_and_back_fills_a_query_only_success(make_sim: MakeSim) -> None:
    sim = await make_sim()
    _, _, receipt = await sim.stk()
    await sim.status(TransactionID=receipt, PartyA=SANDBOX_SHORTCODE, Occasion=None)
    _, merchant_request_id, silent_receipt = await sim.stk(phone="254711000006")  # success, callback lost
    await sim.status(TransactionID=None, OriginalConversationID=merchant_request_id, PartyA=SANDBOX_SHORTCODE)

    first, second = await sim.results()
    assert first["ReferenceData"] == {"ReferenceItem": {"Key": "Occasion"}}
    items = {p["Key"]: p.get("Value") for p in first["ResultParameters"]["ResultParameter"]}
    assert items["ReceiptNo"] == receipt and items["ReasonType"] == "Pay Bill Online"
    assert items["OriginatorConversationID"] == sim.state.receipts[str(receipt)].originator_id
    found = {p["Key"]: p.get("Value") for p in second["ResultParameters"]["ResultParameter"]}
    assert found["ReceiptNo"] == silent_receipt and found["TransactionStatus"] == "Completed"


@pytest.mark.parametrize(
    "overrides",
    [
        {"TransactionID": "UKNOTKNOWN"},
        {"TransactionID": None, "OriginalConversationID": "7071-4170-a0e5-8345632bad442144258"},
        {"PartyA": "600000"},  # a real receipt, but of another shortcode
    ],
)
async def test_status_of_an_unknown_transaction_is_r000002(make_sim: MakeSim, overrides: dict[str, Any]) -> None:
    sim = await make_sim()
    trans_id = await sim.paid()
    status, ack = await sim.status(**({"TransactionID": trans_id} | overrides))
    assert status == 200
    [result] = await sim.results()
    assert list(result) == [
        "ResultType",
        "ResultCode",
        "ResultDesc",
        "OriginatorConversationID",
        "ConversationID",
        "TransactionID",
        "ReferenceData",
    ]
    assert (result["ResultCode"], result["ResultDesc"]) == ("R000002", "The OriginalTransactionID is invalid.")
    assert re.fullmatch(r"UK[A-Z0-9]0000000", result["TransactionID"])
    parsed = parse_async_result(sim.receiver.raw("result")[0])
    assert parsed.result_code == "R000002" and parsed.parameters == {} and not parsed.succeeded


@pytest.mark.parametrize(
    ("overrides", "invalid"),
    [
        ({"Initiator": ""}, "Initiator"),
        ({"SecurityCredential": None}, "SecurityCredential"),
        ({"CommandID": "TransactionStatus"}, "CommandID"),
        ({"TransactionID": None}, "TransactionID"),
        ({"PartyA": "60"}, "PartyA"),
        ({"IdentifierType": "9"}, "IdentifierType"),
        ({"ResultURL": "junk"}, "ResultURL"),
        ({"QueueTimeOutURL": None}, "QueueTimeOutURL"),
        ({"Remarks": ""}, "Remarks"),
        ({"Occasion": "O" * 101}, "Occasion"),
    ],
)
async def test_status_validates_fields(make_sim: MakeSim, overrides: dict[str, Any], invalid: str) -> None:
    sim = await make_sim()
    status, body = await sim.status(**overrides)
    assert (status, body["errorCode"], body["errorMessage"]) == (400, "400.002.02", f"Bad Request - Invalid {invalid}")
    await sim.state.drain()
    assert sim.state.log.attempts == []


async def test_a_wrong_initiator_is_2001_as_an_integer(make_sim: MakeSim) -> None:
    sim = await make_sim(initiators={"testapi": "the-right-credential"})
    trans_id = await sim.paid()
    await sim.status(TransactionID=trans_id)
    await sim.status(TransactionID=trans_id, SecurityCredential="the-right-credential")
    wrong, right = await sim.results()
    assert (wrong["ResultCode"], wrong["ResultDesc"]) == (2001, "The initiator information is invalid.")
    assert right["ResultCode"] == 0


async def test_org_outcomes_timeout_none_and_faults(make_sim: MakeSim) -> None:
    sim = await make_sim()
    trans_id = await sim.paid()
    _, timed_out = await sim.status({"X-Sim-Outcome": "timeout"}, TransactionID=trans_id)
    await sim.status({"X-Sim-Outcome": "none"}, TransactionID=trans_id)
    _, duplicated = await sim.status({"X-Sim-Faults": "dup=2"}, TransactionID=trans_id)
    _, forced = await sim.status({"X-Sim-Outcome": "8006"}, TransactionID=trans_id)
    await sim.state.drain()

    [placeholder] = [parse_async_result(raw) for raw in sim.receiver.raw("timeout")]
    assert placeholder.conversation_id == timed_out["ConversationID"] and placeholder.result_code == "SIM_QUEUE_TIMEOUT"
    results = [parse_async_result(raw) for raw in sim.receiver.raw("result")]
    assert [r.conversation_id for r in results] == [duplicated["ConversationID"]] * 2 + [forced["ConversationID"]]
    assert results[2].result_code == "8006"
    status, body = await sim.status({"X-Sim-Outcome": "1032"})
    assert (status, body["errorCode"]) == (400, "sim.outcome")


# ---- Reversal ----


async def test_a_reversal_posts_numbers_and_turns_the_receipt_reversed(make_sim: MakeSim) -> None:
    sim = await make_sim()
    trans_id = await sim.paid()
    status, ack = await sim.reverse(TransactionID=trans_id)
    assert status == 200 and ack["ResponseCode"] == "0" and CONVERSATION_ID.fullmatch(ack["ConversationID"])
    await sim.state.drain()
    [raw] = sim.receiver.raw("result")
    assert b'{"Key": "Amount", "Value": 10.0}' in raw and b'{"Key": "Charge", "Value": 0.0}' in raw
    result = json.loads(raw)["Result"]
    assert list(result) == [
        "ResultType",
        "ResultCode",
        "ResultDesc",
        "OriginatorConversationID",
        "ConversationID",
        "TransactionID",
        "ResultParameters",
        "ReferenceData",
    ]
    assert result["ReferenceData"]["ReferenceItem"] == {
        "Key": "QueueTimeoutURL",
        "Value": "https://internalsandbox.safaricom.co.ke/mpesa/reversalresults/v1/submit",
    }
    parsed = parse_async_result(raw)
    reversal_receipt = parsed.transaction_id
    assert parsed.succeeded and re.fullmatch(r"UK[A-Z0-9]{8}", reversal_receipt) and reversal_receipt != trans_id
    assert parsed.first("OriginalTransactionID") == trans_id and parsed.amount_minor() == 1000
    assert parsed.first("TransCompletedTime") == 20261127100000 and parsed.time("TransCompletedTime") == T0
    assert parsed.first("DebitAccountBalance") == "Utility Account|KES|0.00|0.00|0.00|0.00"
    assert parsed.first("CreditPartyPublicName") == f"{PAYER} - JOHN DOE"
    assert sim.state.balance(PAYBILL) == 0

    await sim.reverse(TransactionID=trans_id)
    await sim.status(TransactionID=trans_id)
    _, again, status_result = await sim.results()
    assert (again["ResultCode"], again["ResultDesc"]) == ("R000001", "The transaction has already been reversed.")
    items = {p["Key"]: p.get("Value") for p in status_result["ResultParameters"]["ResultParameter"]}
    assert items["TransactionStatus"] == "Reversed"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"TransactionID": "UKNOTKNOWN"}, "R000002"),
        ({"ReceiverParty": "600000"}, "R000002"),
        ({"Amount": "9"}, 2006),
    ],
)
async def test_reversal_failures_change_nothing(make_sim: MakeSim, overrides: dict[str, Any], code: int | str) -> None:
    sim = await make_sim()
    trans_id = await sim.paid()
    await sim.reverse(**({"TransactionID": trans_id} | overrides))
    await sim.reverse({"X-Sim-Outcome": "R000001"}, TransactionID=trans_id)
    failure, forced = await sim.results()
    assert failure["ResultCode"] == code and "ResultParameters" not in failure
    assert forced["ResultCode"] == "R000001"
    assert sim.state.receipts[trans_id].reversed_by is None and sim.state.balance(PAYBILL) == 10
    assert parse_async_result(sim.receiver.raw("result")[0]).result_code == str(code)


async def test_a_reversal_of_a_reversal_and_an_overdrawn_account_fail(make_sim: MakeSim) -> None:
    sim = await make_sim()
    _, _, receipt = await sim.stk()
    await sim.reverse(TransactionID=receipt, ReceiverParty=SANDBOX_SHORTCODE)
    [first] = await sim.results()
    reversal_receipt = first["TransactionID"]
    await sim.reverse(TransactionID=reversal_receipt, ReceiverParty=SANDBOX_SHORTCODE)
    assert [r["ResultCode"] for r in await sim.results()] == [0, "R000002"]

    overdrawn = await make_sim(opening_balance=-5)
    trans_id = await overdrawn.paid()
    await overdrawn.reverse(TransactionID=trans_id)
    last = (await overdrawn.results())[-1]
    assert (last["ResultCode"], last["ResultDesc"]) == (1, "The balance is insufficient for the transaction.")
    assert overdrawn.state.receipts[trans_id].reversed_by is None


@pytest.mark.parametrize(
    ("overrides", "invalid"),
    [
        ({"RecieverIdentifierType": None, "ReceiverIdentifierType": "11"}, "RecieverIdentifierType"),
        ({"RecieverIdentifierType": "4"}, "RecieverIdentifierType"),
        ({"CommandID": "Reversal"}, "CommandID"),
        ({"Amount": "10.50"}, "Amount"),
        ({"ReceiverParty": "abc"}, "ReceiverParty"),
        ({"Remarks": "x"}, "Remarks"),
        ({"Remarks": "x" * 101}, "Remarks"),
        ({"TransactionID": ""}, "TransactionID"),
    ],
)
async def test_reversal_validates_fields_and_wants_the_misspelled_key(
    make_sim: MakeSim, overrides: dict[str, Any], invalid: str
) -> None:
    sim = await make_sim()
    status, body = await sim.reverse(**overrides)
    assert (status, body["errorCode"], body["errorMessage"]) == (400, "400.002.02", f"Bad Request - Invalid {invalid}")


async def test_boundary_remarks_and_numeric_identifier_type_are_accepted(make_sim: MakeSim) -> None:
    sim = await make_sim()
    for remarks in ("ok", "x" * 100):
        assert (await sim.reverse(Remarks=remarks, RecieverIdentifierType=11))[0] == 200


# ---- the statement ----


async def test_the_statement_lists_the_days_completed_lines_in_the_agreed_format(make_sim: MakeSim) -> None:
    sim = await make_sim(payer_names={PAYER: ("JOHN", "", "DOE"), OTHER_PAYER: ("AMINA", "", "HASSAN")})
    checkout_id, _, stk_receipt = await sim.stk()
    await sim.stk(phone="254711000002")  # cancelled: not on the statement
    sim.clock.advance(timedelta(minutes=1))
    c2b_receipt = await sim.paid(ShortCode=SANDBOX_SHORTCODE, Amount=1200, Msisdn=OTHER_PAYER, BillRefNumber="ADM-42")
    sim.clock.advance(timedelta(minutes=1))
    await sim.reverse(TransactionID=stk_receipt, ReceiverParty=SANDBOX_SHORTCODE)
    [reversal] = await sim.results()
    sim.clock.advance(timedelta(days=1))
    await sim.login()
    tomorrow = await sim.paid(ShortCode=SANDBOX_SHORTCODE, Amount=5)
    injected = {
        "Receipt No.": "UKX0000001",
        "Completion Time": "2026-11-27 12:00:00",
        "Paid In": "50.00",
        "Other Party Info": "254799999999 - GHOST PAYER",
        "ShortCode": SANDBOX_SHORTCODE,
    }
    response = await sim.client.post("/sim/statement/inject", json=[injected])
    assert response.status == 200 and (await response.json()) == {"injected": 1}

    response = await sim.client.get("/sim/statement", params={"date": "2026-11-27"})
    text = await response.text()
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert text.split("\r\n")[0] == (
        "Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,Withdrawn,Balance,"
        "Balance Confirmed,Reason Type,Other Party Info,Linked Transaction ID,A/C No."
    )
    assert '"1,200.00"' in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == STATEMENT_COLUMNS
    assert rows == [
        {
            "Receipt No.": stk_receipt,
            "Completion Time": "2026-11-27 10:00:00",
            "Initiation Time": "2026-11-27 10:00:00",
            "Details": f"Pay Bill Online from {PAYER} - JOHN DOE Acc. INV-0001",
            "Transaction Status": "Completed",
            "Paid In": "10.00",
            "Withdrawn": "",
            "Balance": "10.00",
            "Balance Confirmed": "true",
            "Reason Type": "Pay Bill Online",
            "Other Party Info": f"{PAYER} - JOHN DOE",
            "Linked Transaction ID": checkout_id,
            "A/C No.": "INV-0001",
        },
        {
            "Receipt No.": c2b_receipt,
            "Completion Time": "2026-11-27 10:01:00",
            "Initiation Time": "2026-11-27 10:01:00",
            "Details": f"Pay Bill from {OTHER_PAYER} - AMINA HASSAN Acc. ADM-42",
            "Transaction Status": "Completed",
            "Paid In": "1,200.00",
            "Withdrawn": "",
            "Balance": "1,210.00",
            "Balance Confirmed": "true",
            "Reason Type": "Pay Bill",
            "Other Party Info": f"{OTHER_PAYER} - AMINA HASSAN",
            "Linked Transaction ID": "",
            "A/C No.": "ADM-42",
        },
        {
            "Receipt No.": reversal["TransactionID"],
            "Completion Time": "2026-11-27 10:02:00",
            "Initiation Time": "2026-11-27 10:02:00",
            "Details": f"Reversal of {stk_receipt} to {PAYER} - JOHN DOE",
            "Transaction Status": "Completed",
            "Paid In": "",
            "Withdrawn": "10.00",
            "Balance": "1,200.00",
            "Balance Confirmed": "true",
            "Reason Type": "Reversal",
            "Other Party Info": f"{PAYER} - JOHN DOE",
            "Linked Transaction ID": stk_receipt,
            "A/C No.": "INV-0001",
        },
        {
            "Receipt No.": "UKX0000001",
            "Completion Time": "2026-11-27 12:00:00",
            "Initiation Time": "2026-11-27 12:00:00",
            "Details": "",
            "Transaction Status": "Completed",
            "Paid In": "50.00",
            "Withdrawn": "",
            "Balance": "",
            "Balance Confirmed": "true",
            "Reason Type": "",
            "Other Party Info": "254799999999 - GHOST PAYER",
            "Linked Transaction ID": "",
            "A/C No.": "",
        },
    ]
    [next_day] = await sim.statement("2026-11-28")
    assert next_day["Receipt No."] == tomorrow and next_day["Balance"] == "1,205.00"
    assert [r["Receipt No."] for r in await sim.statement("2026-11-27", shortcode=PAYBILL)] == []


async def test_a_payment_late_in_the_utc_day_is_on_the_next_nairobi_day(make_sim: MakeSim) -> None:
    sim = await make_sim()
    sim.clock.advance(timedelta(hours=14))  # 21:00 UTC on the 27th is 00:00 on the 28th in Nairobi
    await sim.login()
    trans_id = await sim.paid()
    assert await sim.statement("2026-11-27") == []
    [row] = await sim.statement("2026-11-28")
    assert (row["Receipt No."], row["Completion Time"]) == (trans_id, "2026-11-28 00:00:00")


@pytest.mark.parametrize(
    "payload",
    [
        {"Receipt No.": "X1", "Completion Time": "2026-11-27T12:00:00"},
        {"Receipt No.": "X1", "Completion Time": "2026-11-27 12:00:00", "Amount": "5"},
        {"Completion Time": "2026-11-27 12:00:00"},
        {"Receipt No.": "X1", "Completion Time": "2026-11-27 12:00:00", "Paid In": 5},
    ],
)
async def test_inject_refuses_malformed_lines(make_sim: MakeSim, payload: dict[str, Any]) -> None:
    sim = await make_sim()
    response = await sim.client.post("/sim/statement/inject", json=payload)
    assert response.status == 400 and "error" in await response.json()
    assert sim.state.injected == []
    assert (await sim.client.get("/sim/statement", params={"date": "27-11-2026"})).status == 400


# ---- reset and determinism ----


async def test_reset_forgets_c2b_pull_ledger_and_statement_state(make_sim: MakeSim) -> None:
    sim = await make_sim()
    await sim.register()
    await sim.paid()
    await sim.call(
        "/pulltransactions/v1/register",
        {"ShortCode": PAYBILL, "RequestType": "Pull", "NominatedNumber": "0722000000", "CallBackURL": "http://x.y/z"},
    )
    await sim.client.post("/sim/statement/inject", json={"Receipt No.": "X1", "Completion Time": "2026-11-27 12:00:00"})
    await sim.client.post("/sim/reset")
    state = sim.state
    assert (state.c2b_urls, state.c2b_payments, state.pull_registrations, state.receipts) == ({}, {}, {}, {})
    assert state.ledger == [] and state.injected == [] and state.balance(PAYBILL) == 0


async def org_run(sim: Sim) -> list[Any]:
    await sim.register()
    trans_id = await sim.paid({"X-Sim-Faults": "dup=2"})
    await sim.status(TransactionID=trans_id)
    await sim.reverse(TransactionID=trans_id)
    await sim.reverse({"X-Sim-Faults": "drop"}, TransactionID=trans_id)
    await sim.state.drain()
    return list(await (await sim.client.get("/sim/deliveries")).json())


async def test_the_same_seed_gives_the_same_org_deliveries(make_sim: MakeSim) -> None:
    first = await org_run(await make_sim(seed=3))
    second = await org_run(await make_sim(seed=3))
    assert len(first) == 5 and first == second
    assert await org_run(await make_sim(seed=4)) != first
