"""The Africa's Talking messaging simulator over real HTTP on loopback: AT's wire format, the
digit table, InvalidSenderId, authentication, delivery reports and inbound SMS posted as forms
to real receivers (with duplicates), fetch_messages, the test-only endpoints, and
``somo simulate`` serving it all next to Daraja and Airtel."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from lms_domain.clock import FixedClock
from server.simulators.africastalking import (
    AUTH_FAILED_BODY,
    AtSimConfig,
    AtSimulator,
    RecipientOutcome,
    at_simulator_key,
    create_at_app,
)
from tests.conftest import T0
from tests.loopback import Receiver, start_receiver

USERNAME, API_KEY = "somo-test", "at-test-key"
JSON = {"Accept": "application/json", "apiKey": API_KEY}
DELIVERY_PATH, INBOUND_PATH = "/sms/africastalking/delivery", "/sms/africastalking/inbound"
SAFARICOM, AIRTEL = "+254700000001", "+254733000002"
MESSAGE_ID = re.compile(r"ATXid_[0-9a-f]{32}")


def form(body: bytes) -> dict[str, str]:
    """A form-encoded callback body as a flat dict (AT sends every field once)."""
    parsed = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {name: values[0] for name, values in parsed.items()}


@dataclass
class Sim:
    client: TestClient[web.Request, web.Application]
    reports: Receiver
    inbox: Receiver

    @property
    def state(self) -> AtSimulator:
        return self.client.app[at_simulator_key]

    async def send(
        self, to: str | list[str], message: str = "Habari! Somo inakukaribisha.", headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """POST a send exactly as the SDK does; the answer as JSON, or as text when it is not JSON."""
        fields: dict[str, str] = {
            "username": USERNAME,
            "to": to if isinstance(to, str) else ",".join(to),
            "message": message,
            "bulkSMSMode": "1",
        }
        response = await self.client.post("/version1/messaging", data=fields, headers=headers or JSON)
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()

    async def post(self, fields: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        response = await self.client.post("/version1/messaging", data=fields, headers=headers or JSON)
        return response.status, response.headers.get("Content-Type", ""), await response.text()

    async def settle(self) -> None:
        """Let every queued callback land ("Sent" at once, the final report 20 ms later)."""
        await asyncio.sleep(0.03)
        await self.state.dispatcher.drain()

    def delivery_forms(self) -> list[dict[str, str]]:
        return [form(body) for body in self.reports.bodies]

    async def test_json(self, path: str) -> Any:
        response = await self.client.get(path)
        assert response.status == 200
        return await response.json()


MakeSim = Callable[..., Awaitable[Sim]]


@pytest.fixture
def make_sim(aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer) -> MakeSim:
    async def make(**config: Any) -> Sim:
        reports = await start_receiver(aiohttp_server, DELIVERY_PATH)
        inbox = await start_receiver(aiohttp_server, INBOUND_PATH)
        config.setdefault("username", USERNAME)
        config.setdefault("api_key", API_KEY)
        config.setdefault("clock", FixedClock(T0).now)
        config.setdefault("delivery_report_url", reports.url)
        config.setdefault("inbound_url", inbox.url)
        client = await aiohttp_client(create_at_app(AtSimConfig(**config)))
        return Sim(client, reports, inbox)

    return make


# ---- sending ----


async def test_a_send_is_answered_201_in_ats_shape(make_sim: MakeSim) -> None:
    sim = await make_sim()
    response = await sim.client.post(
        "/version1/messaging",
        data={"username": USERNAME, "to": SAFARICOM, "message": "Karibu Somo", "bulkSMSMode": "1", "enqueue": "1"},
        headers=JSON,
    )
    # Exactly application/json: the SDK only parses JSON on an exact content-type match.
    assert response.status == 201 and response.headers["Content-Type"] == "application/json"
    answer = await response.json()
    assert answer == {
        "SMSMessageData": {
            "Message": "Sent to 1/1 Total Cost: KES 0.8000 Message parts: 1",
            "Recipients": [
                {
                    "cost": "KES 0.8000",
                    "messageId": answer["SMSMessageData"]["Recipients"][0]["messageId"],
                    "number": SAFARICOM,
                    "status": "Success",
                    "statusCode": 102,
                }
            ],
        }
    }
    assert MESSAGE_ID.fullmatch(answer["SMSMessageData"]["Recipients"][0]["messageId"])


async def test_a_long_message_is_charged_per_part_per_recipient(make_sim: MakeSim) -> None:
    sim = await make_sim()
    status, answer = await sim.send([SAFARICOM, AIRTEL], "a" * 161)
    data = answer["SMSMessageData"]
    assert status == 201 and data["Message"] == "Sent to 2/2 Total Cost: KES 3.2000 Message parts: 2"
    assert [r["cost"] for r in data["Recipients"]] == ["KES 1.6000", "KES 1.6000"]
    ids = [r["messageId"] for r in data["Recipients"]]
    assert len(set(ids)) == 2 and all(MESSAGE_ID.fullmatch(i) for i in ids)


async def test_a_smart_quote_makes_a_two_part_ucs2_message(make_sim: MakeSim) -> None:
    sim = await make_sim()
    _, answer = await sim.send(SAFARICOM, "Wanjiku’s " + "a" * 61)  # 71 UCS-2 units
    assert answer["SMSMessageData"]["Message"].endswith("Message parts: 2")


@pytest.mark.parametrize(
    ("number", "code", "status"),
    [
        ("+254700000000", 102, "Success"),
        ("+254700000005", 102, "Success"),
        ("+254700000006", 403, "InvalidPhoneNumber"),
        ("+254700000007", 406, "UserInBlacklist"),
        ("+254700000008", 500, "InternalServerError"),
        ("+254700000009", 405, "InsufficientBalance"),
        ("0700000001", 403, "InvalidPhoneNumber"),  # not E.164, whatever its last digit
        ("254700000001", 403, "InvalidPhoneNumber"),
    ],
)
async def test_the_last_digit_scripts_each_recipient(make_sim: MakeSim, number: str, code: int, status: str) -> None:
    sim = await make_sim()
    http_status, answer = await sim.send(number)
    (recipient,) = answer["SMSMessageData"]["Recipients"]
    assert http_status == 201 and recipient["statusCode"] == code and recipient["status"] == status
    if code == 102:
        assert recipient["cost"] == "KES 0.8000" and MESSAGE_ID.fullmatch(recipient["messageId"])
    else:
        # As AT answers a refused number, and nothing is charged: no parts in the summary either.
        assert recipient["cost"] == "0" and recipient["messageId"] == "None"
        assert answer["SMSMessageData"]["Message"] == "Sent to 0/1 Total Cost: 0"


async def test_a_mixed_send_counts_only_the_accepted(make_sim: MakeSim) -> None:
    sim = await make_sim()
    _, answer = await sim.send([SAFARICOM, "+254700000007", AIRTEL])
    data = answer["SMSMessageData"]
    assert data["Message"] == "Sent to 2/3 Total Cost: KES 1.6000 Message parts: 1"
    assert [r["statusCode"] for r in data["Recipients"]] == [102, 406, 102]


async def test_number_outcomes_override_the_digit_table(make_sim: MakeSim) -> None:
    sim = await make_sim(number_outcomes={SAFARICOM: RecipientOutcome(407, "CouldNotRoute")})
    _, answer = await sim.send(SAFARICOM)
    assert answer["SMSMessageData"]["Recipients"][0]["statusCode"] == 407


async def test_an_unknown_sender_id_is_a_201_with_no_recipients(make_sim: MakeSim) -> None:
    sim = await make_sim(sender_ids=("SOMO",))
    fields = {"username": USERNAME, "to": f"{SAFARICOM},{AIRTEL}", "message": "hi", "from": "SOMO_LTD"}
    status, content_type, text = await sim.post(fields)
    assert status == 201 and content_type == "application/json"
    assert text == '{"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}}'
    await sim.settle()
    assert sim.reports.bodies == []  # nothing was sent, so nothing is reported
    rows = await sim.test_json("/sim/at/messages")
    assert [(r["to"], r["status"], r["messageId"], r["from"]) for r in rows] == [
        (SAFARICOM, "InvalidSenderId", None, "SOMO_LTD"),
        (AIRTEL, "InvalidSenderId", None, "SOMO_LTD"),
    ]


async def test_an_approved_sender_id_is_sent(make_sim: MakeSim) -> None:
    sim = await make_sim(sender_ids=("SOMO", "20880"))
    status, _, text = await sim.post({"username": USERNAME, "to": SAFARICOM, "message": "hi", "from": "SOMO"})
    assert status == 201 and '"statusCode": 102' in text
    assert (await sim.test_json("/sim/at/messages"))[0]["from"] == "SOMO"


@pytest.mark.parametrize(
    ("username", "headers"),
    [
        (USERNAME, {"Accept": "application/json", "apiKey": "wrong"}),
        (USERNAME, {"Accept": "application/json"}),
        ("someone-else", JSON),
    ],
    ids=["wrong-key", "no-key", "wrong-username"],
)
async def test_bad_credentials_are_a_plain_text_401(make_sim: MakeSim, username: str, headers: dict[str, str]) -> None:
    sim = await make_sim()
    status, content_type, text = await sim.post({"username": username, "to": SAFARICOM, "message": "hi"}, headers)
    assert status == 401 and content_type.startswith("text/plain") and text == AUTH_FAILED_BODY
    assert await sim.test_json("/sim/at/messages") == []


async def test_a_client_that_does_not_ask_for_json_is_refused(make_sim: MakeSim) -> None:
    sim = await make_sim()
    status, _, text = await sim.post({"username": USERNAME, "to": SAFARICOM, "message": "hi"}, {"apiKey": API_KEY})
    assert status == 406 and "Accept: application/json" in text


@pytest.mark.parametrize("missing", ["to", "message"])
async def test_a_missing_field_is_a_400(make_sim: MakeSim, missing: str) -> None:
    sim = await make_sim()
    fields = {"username": USERNAME, "to": SAFARICOM, "message": "hi"}
    del fields[missing]
    status, _, text = await sim.post(fields)
    assert status == 400 and text == f"Request is missing required form field '{missing}'"


# ---- delivery reports ----


async def test_accepted_messages_are_reported_sent_then_success_as_forms(make_sim: MakeSim) -> None:
    sim = await make_sim()
    _, answer = await sim.send([SAFARICOM, "+254700000006", AIRTEL])
    ids = {r["number"]: r["messageId"] for r in answer["SMSMessageData"]["Recipients"]}
    await sim.settle()
    reports = sim.delivery_forms()
    assert len(reports) == 4  # the refused number has no message to report on
    for number, network in ((SAFARICOM, "63902"), (AIRTEL, "63903")):
        mine = [r for r in reports if r["id"] == ids[number]]
        assert mine == [
            {"id": ids[number], "phoneNumber": number, "networkCode": network, "status": status, "retryCount": "0"}
            for status in ("Sent", "Success")
        ]
    attempts = await sim.test_json("/sim/at/deliveries")
    assert [a["status"] for a in attempts] == [200] * 4 and {a["url"] for a in attempts} == {sim.reports.url}


async def test_a_delivery_failure_is_reported_with_its_reason(make_sim: MakeSim) -> None:
    sim = await make_sim(delivery_failures={SAFARICOM: "UserIsInactive"})
    _, answer = await sim.send(SAFARICOM)
    (recipient,) = answer["SMSMessageData"]["Recipients"]
    assert recipient["statusCode"] == 102  # accepted at send time: the failure comes later
    await sim.settle()
    sent, final = sim.delivery_forms()
    assert sent["status"] == "Sent" and "failureReason" not in sent
    assert final == {
        "id": recipient["messageId"],
        "phoneNumber": SAFARICOM,
        "networkCode": "63902",
        "status": "Failed",
        "failureReason": "UserIsInactive",
        "retryCount": "0",
    }


async def test_the_duplicate_knob_posts_every_report_twice(make_sim: MakeSim) -> None:
    sim = await make_sim(duplicate_reports=1.0)
    _, answer = await sim.send(SAFARICOM)
    message_id = answer["SMSMessageData"]["Recipients"][0]["messageId"]
    await sim.settle()
    assert [(r["id"], r["status"]) for r in sim.delivery_forms()] == [
        (message_id, "Sent"),
        (message_id, "Sent"),
        (message_id, "Success"),
        (message_id, "Success"),
    ]
    kinds = [a["kind"] for a in await sim.test_json("/sim/at/deliveries")]
    assert kinds == ["result", "duplicate", "result", "duplicate"]


async def schedule(sim: Sim) -> list[tuple[str, str]]:
    """Which reports were duplicated for ten sends, as (message id, kind), sorted: the reports
    go out in the background, so the order they land in is not part of what a seed fixes."""
    for _ in range(10):
        await sim.send(SAFARICOM)
    await sim.settle()
    return sorted((a["key"], a["kind"]) for a in await sim.test_json("/sim/at/deliveries"))


async def test_partial_duplicates_are_deterministic_per_seed(make_sim: MakeSim) -> None:
    first = await schedule(await make_sim(duplicate_reports=0.5, seed=7))
    again = await schedule(await make_sim(duplicate_reports=0.5, seed=7))
    other = await schedule(await make_sim(duplicate_reports=0.5, seed=8))
    kinds = [kind for _, kind in first]
    assert first == again and first != other
    assert 20 < len(first) < 40 and "duplicate" in kinds  # some, not all, of the 20 reports


async def test_reset_replays_the_same_ids_and_faults(make_sim: MakeSim) -> None:
    sim = await make_sim(duplicate_reports=0.5, seed=3)
    first = await schedule(sim)
    response = await sim.client.post("/sim/at/reset")
    assert response.status == 200
    assert await sim.test_json("/sim/at/messages") == [] and await sim.test_json("/sim/at/deliveries") == []
    assert await schedule(sim) == first


async def test_a_failing_receiver_is_recorded_and_never_stops_the_simulator(
    make_sim: MakeSim, aiohttp_server: AiohttpServer
) -> None:
    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app = web.Application()
    app.router.add_post(DELIVERY_PATH, broken)
    server = await aiohttp_server(app)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    sim = await make_sim(
        delivery_report_url=str(server.make_url(DELIVERY_PATH)), inbound_url=f"http://127.0.0.1:{dead_port}/in"
    )
    await sim.send(SAFARICOM)
    assert (await sim.client.post("/sim/at/inbound", json={"from": SAFARICOM, "text": "hi"})).status == 200
    await sim.settle()
    attempts = await sim.test_json("/sim/at/deliveries")
    assert sorted(a["status"] for a in attempts if a["status"] is not None) == [500, 500]
    (down,) = [a for a in attempts if a["status"] is None]
    assert down["error"].startswith("ClientConnectorError")
    status, answer = await sim.send(AIRTEL)  # still serving
    assert status == 201 and answer["SMSMessageData"]["Recipients"][0]["statusCode"] == 102


async def test_without_callback_urls_nothing_is_posted(make_sim: MakeSim) -> None:
    sim = await make_sim(delivery_report_url=None, inbound_url=None)
    await sim.send(SAFARICOM)
    await sim.client.post("/sim/at/inbound", json={"from": SAFARICOM, "text": "hi"})
    await sim.settle()
    assert await sim.test_json("/sim/at/deliveries") == []


# ---- inbound SMS and fetch_messages ----


async def test_an_inbound_sms_is_posted_as_ats_form(make_sim: MakeSim) -> None:
    sim = await make_sim()
    response = await sim.client.post("/sim/at/inbound", json={"from": AIRTEL, "text": "RENEW"})
    assert response.status == 200
    answer = await response.json()
    await sim.settle()
    (posted,) = [form(body) for body in sim.inbox.bodies]
    assert posted == {
        "from": AIRTEL,
        "to": "20880",
        "text": "RENEW",
        "date": "2026-11-27 07:00:00",  # T0, in UTC
        "id": "1",
        "linkId": answer["linkId"],
        "networkCode": "63903",
    }
    assert answer["id"] == 1 and re.fullmatch(r"[0-9a-f-]{36}", answer["linkId"])


async def test_inbound_to_another_number_and_duplicates(make_sim: MakeSim) -> None:
    sim = await make_sim(duplicate_inbound=1.0)
    await sim.client.post("/sim/at/inbound", json={"from": SAFARICOM, "text": "Habari, nimelipa.", "to": "22384"})
    await sim.settle()
    posted = [form(body) for body in sim.inbox.bodies]
    assert len(posted) == 2 and posted[0] == posted[1] and posted[0]["to"] == "22384"
    assert posted[0]["text"] == "Habari, nimelipa."


@pytest.mark.parametrize(
    "body", [{"text": "hi"}, {"from": "0700000001", "text": "hi"}, {"from": SAFARICOM}, ["not", "an", "object"]]
)
async def test_a_bad_inbound_request_is_refused(make_sim: MakeSim, body: Any) -> None:
    sim = await make_sim()
    response = await sim.client.post("/sim/at/inbound", json=body)
    assert response.status == 400 and "error" in await response.json()
    assert sim.state.inbound == []


async def test_fetch_messages_returns_what_came_after_the_last_id(make_sim: MakeSim) -> None:
    sim = await make_sim(inbound_url=None)
    for text in ("one", "two", "three"):
        await sim.client.post("/sim/at/inbound", json={"from": SAFARICOM, "text": text})

    async def fetch(**query: str) -> tuple[int, Any]:
        response = await sim.client.get("/version1/messaging", params={"username": USERNAME, **query}, headers=JSON)
        return response.status, await response.json() if response.status == 200 else await response.text()

    status, everything = await fetch()
    messages = everything["SMSMessageData"]["Messages"]
    assert status == 200 and [m["text"] for m in messages] == ["one", "two", "three"]
    assert set(messages[0]) == {"linkId", "text", "to", "id", "date", "from"}
    assert messages[0]["id"] == 1 and messages[0]["from"] == SAFARICOM and messages[0]["to"] == "20880"
    _, after = await fetch(lastReceivedId="2")
    assert [m["text"] for m in after["SMSMessageData"]["Messages"]] == ["three"]
    _, none = await fetch(lastReceivedId="3")
    assert none == {"SMSMessageData": {"Messages": []}}
    assert (await fetch(lastReceivedId="x"))[0] == 400
    refused = await sim.client.get("/version1/messaging", params={"username": USERNAME}, headers={"apiKey": "no"})
    assert refused.status == 401 and await refused.text() == AUTH_FAILED_BODY


# ---- `somo simulate` ----


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_somo_simulate_serves_africas_talking_with_the_settings_credentials(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SOMO_NOTIFICATIONS__AT_USERNAME": "somo-dev",
        "SOMO_NOTIFICATIONS__AT_API_KEY": "dev-at-key-1",
        "SOMO_NOTIFICATIONS__SMS_SENDER_ID": "SOMO",
        "SOMO_HTTP__PUBLIC_URL": f"http://127.0.0.1:{_free_port()}",  # nobody listens: callbacks fail
    }
    somo = Path(sys.executable).parent / "somo"
    proc = subprocess.Popen(
        [str(somo), "simulate", "--port", str(port), "--sms-duplicate-reports", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Accept": "application/json", "apiKey": "dev-at-key-1"}
    try:
        fields = {"username": "somo-dev", "to": SAFARICOM, "message": "hi", "from": "SOMO"}
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.post(f"{base}/version1/messaging", data=fields, headers=headers, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "simulator did not start"
                time.sleep(0.2)
        assert answer.status_code == 201
        assert answer.json()["SMSMessageData"]["Recipients"][0]["statusCode"] == 102
        shortcode = {**fields, "from": "20880"}  # the shortcode is an approved sender too
        url = f"{base}/version1/messaging"
        assert requests.post(url, data=shortcode, headers=headers, timeout=2).status_code == 201
        deadline = time.monotonic() + 10
        while len(attempts := requests.get(f"{base}/sim/at/deliveries", timeout=2).json()) < 8:
            assert time.monotonic() < deadline, attempts
            time.sleep(0.05)
        # Duplicated by the flag, aimed at the server's endpoint, and failed without harm.
        assert {a["url"] for a in attempts} == {f"{env['SOMO_HTTP__PUBLIC_URL']}/sms/africastalking/delivery"}
        assert all(a["status"] is None and a["error"] for a in attempts) and len(attempts) == 8
        refused = requests.post(url, data=fields, headers={**headers, "apiKey": "x"}, timeout=2)
        assert refused.status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
