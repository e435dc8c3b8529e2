"""The Africa's Talking SMS adapter, through the real ``africastalking`` SDK, against the
in-project simulator over real HTTP on loopback.

Transport faults are played by tiny hostile AT servers, also on loopback; "nothing was sent"
is read from the simulator's own record of messages (``GET /sim/at/messages``).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import africastalking
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from pytest_aiohttp import AiohttpServer

from lms_domain.notifications.ports import SmsRecipientResult, SmsSender, SmsSendError
from server.providers.sms import AfricasTalkingSms, at_sms_service, parse_cost_minor
from server.settings import NotificationsSettings, PaymentsSettings, Settings
from server.simulators.africastalking import (
    AtSimConfig,
    AtSimulator,
    RecipientOutcome,
    at_simulator_key,
    create_at_app,
)
from tests.loopback import Receiver, start_receiver

USERNAME, API_KEY = "somo-test", "at-test-key"
DELIVERY_PATH = "/sms/africastalking/delivery"
SAFARICOM, AIRTEL = "+254700000001", "+254733000002"


@dataclass
class Env:
    server: TestServer
    reports: Receiver

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/")).rstrip("/")

    @property
    def sim(self) -> AtSimulator:
        return self.server.app[at_simulator_key]

    def sms(self, **overrides: Any) -> AfricasTalkingSms:
        args: dict[str, Any] = {"username": USERNAME, "api_key": API_KEY, "base_url": self.base_url}
        return AfricasTalkingSms(**(args | overrides))

    def sent_to(self) -> list[str]:
        """Every number the simulator was asked to send to, in order."""
        return [message.to for message in self.sim.messages]


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
def make_env(aiohttp_server: AiohttpServer) -> MakeEnv:
    async def make(**config: Any) -> Env:
        reports = await start_receiver(aiohttp_server, DELIVERY_PATH)
        config.setdefault("username", USERNAME)
        config.setdefault("api_key", API_KEY)
        config.setdefault("delivery_report_url", reports.url)
        server = await aiohttp_server(create_at_app(AtSimConfig(**config)))
        return Env(server, reports)

    return make


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- the SDK's private hooks (fail loudly when a new SDK moves them) ----


def test_the_sdk_still_has_the_private_hooks_the_adapter_sets() -> None:
    fresh = africastalking.SMSService("somo", "key")
    # Every SMS URL is built from _baseUrl, set in the constructor; sandbox users get another host.
    assert fresh._baseUrl == "https://api.africastalking.com/version1"
    assert africastalking.SMSService("sandbox", "key")._baseUrl == "https://api.sandbox.africastalking.com/version1"
    assert fresh._make_url("/messaging") == fresh._baseUrl + "/messaging"
    # _make_request is what send() calls, with these arguments; our transport takes its place.
    parameters = list(inspect.signature(fresh._make_request).parameters)
    assert parameters == ["url", "method", "headers", "data", "params", "callback", "timeout"]
    assert "self._make_request(" in inspect.getsource(africastalking.SMSService.send)


def test_the_adapter_points_the_sdk_at_the_configured_host() -> None:
    service = at_sms_service("somo", "key", "http://127.0.0.1:8090/")
    assert service._baseUrl == "http://127.0.0.1:8090/version1"
    assert at_sms_service("somo", "key", "https://api.africastalking.com/version1")._baseUrl == (
        "https://api.africastalking.com/version1"
    )
    assert at_sms_service("somo", "key")._baseUrl == "https://api.africastalking.com/version1"


async def test_requests_reach_the_simulator_through_the_transport(make_env: MakeEnv) -> None:
    env = await make_env()
    result = await env.sms().send("Karibu", [SAFARICOM])
    assert env.sent_to() == [SAFARICOM] and result.all_accepted
    # Only our transport keeps the HTTP status: through the SDK's own, a 401 would be a bare body.
    with pytest.raises(SmsSendError, match="HTTP 401"):
        await env.sms(api_key="wrong").send("Karibu", [SAFARICOM])


# ---- answers ----


async def test_a_send_returns_the_message_id_cost_and_parts(make_env: MakeEnv) -> None:
    env = await make_env()
    sender: SmsSender = env.sms()
    result = await sender.send("Habari Achieng, karibu Somo.", [SAFARICOM])
    (recipient,) = result.recipients
    assert recipient == SmsRecipientResult(
        number=SAFARICOM,
        accepted=True,
        status="Success",
        status_code=102,
        message_id=env.sim.messages[0].message_id,
        cost_minor=80,
        retryable=False,
    )
    assert recipient.message_id is not None and recipient.message_id.startswith("ATXid_")
    assert result.parts == 1 and result.summary == "Sent to 1/1 Total Cost: KES 0.8000 Message parts: 1"
    assert result.all_accepted and result.retryable_numbers() == []


async def test_a_two_part_message_costs_two_parts(make_env: MakeEnv) -> None:
    env = await make_env()
    result = await env.sms().send("a" * 161, [SAFARICOM, AIRTEL])
    assert result.parts == 2 and [r.cost_minor for r in result.recipients] == [160, 160]


@pytest.mark.parametrize(
    ("number", "code", "status", "retryable"),
    [
        ("+254700000006", 403, "InvalidPhoneNumber", False),
        ("+254700000007", 406, "UserInBlacklist", False),
        ("+254700000008", 500, "InternalServerError", True),
        ("+254700000009", 405, "InsufficientBalance", False),
    ],
)
async def test_each_scripted_refusal_is_classified(
    make_env: MakeEnv, number: str, code: int, status: str, retryable: bool
) -> None:
    env = await make_env()
    result = await env.sms().send("Karibu", [SAFARICOM, number])
    ok, refused = result.recipients
    assert ok.accepted and not ok.retryable
    assert refused == SmsRecipientResult(number, False, status, code, None, None, retryable)
    assert result.summary == "Sent to 1/2 Total Cost: KES 0.8000 Message parts: 1"
    assert result.retryable_numbers() == ([number] if retryable else [])


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        (407, "CouldNotRoute", True),
        (501, "GatewayError", True),
        (502, "RejectedByGateway", True),
        (401, "RiskHold", False),
        (402, "InvalidSenderId", False),
        (404, "UnsupportedNumberType", False),
        (409, "DoNotDisturbRejection", False),
        (100, "Processed", False),
        (101, "Sent", False),
    ],
)
async def test_every_status_code_of_the_table(make_env: MakeEnv, code: int, status: str, retryable: bool) -> None:
    env = await make_env(number_outcomes={SAFARICOM: RecipientOutcome(code, status)})
    (recipient,) = (await env.sms().send("Karibu", [SAFARICOM])).recipients
    assert recipient.status_code == code and recipient.status == status
    assert recipient.accepted == (code in (100, 101, 102)) and recipient.retryable == retryable


async def test_an_unknown_sender_id_refuses_every_recipient(make_env: MakeEnv) -> None:
    env = await make_env(sender_ids=("SOMO",))
    result = await env.sms().send("Karibu", [SAFARICOM, AIRTEL], sender_id="NOT_OURS")
    assert result.summary == "InvalidSenderId" and result.parts is None
    assert result.recipients == tuple(
        SmsRecipientResult(number, False, "InvalidSenderId", None, None, None, False) for number in (SAFARICOM, AIRTEL)
    )
    assert not result.all_accepted and result.retryable_numbers() == []


async def test_the_configured_sender_id_is_the_default(make_env: MakeEnv) -> None:
    env = await make_env(sender_ids=("SOMO", "20880"))
    assert (await env.sms(sender_id="SOMO").send("a", [SAFARICOM])).all_accepted
    assert (await env.sms(sender_id="SOMO").send("b", [SAFARICOM], sender_id="20880")).all_accepted
    assert (await env.sms().send("c", [SAFARICOM])).all_accepted
    assert [m.sender for m in env.sim.messages] == ["SOMO", "20880", None]


async def test_local_numbers_are_sent_in_e164_once_and_non_numbers_never(make_env: MakeEnv) -> None:
    env = await make_env()
    result = await env.sms().send("Karibu", ["0700 000 001", "not a phone", "254733000002", "+254700000001"])
    assert env.sent_to() == [SAFARICOM, AIRTEL]  # "0700.." and "+254700.." are one phone: one SMS
    assert [(r.number, r.accepted, r.status, r.status_code) for r in result.recipients] == [
        (SAFARICOM, True, "Success", 102),
        ("not a phone", False, "InvalidPhoneNumber", None),
        (AIRTEL, True, "Success", 102),
    ]


async def test_no_valid_number_means_no_request(make_env: MakeEnv) -> None:
    env = await make_env()
    result = await env.sms().send("Karibu", ["12", ""])
    assert env.sent_to() == [] and [r.status for r in result.recipients] == ["InvalidPhoneNumber"] * 2
    assert (await env.sms().send("Karibu", [])).recipients == ()


# ---- whole-request failures ----


async def test_a_bad_api_key_is_not_retryable(make_env: MakeEnv) -> None:
    env = await make_env()
    with pytest.raises(SmsSendError) as caught:
        await env.sms(api_key="wrong").send("Karibu", [SAFARICOM])
    assert not caught.value.retryable
    assert "The supplied authentication is invalid" in caught.value.detail and env.sent_to() == []


async def test_a_simulator_that_is_down_is_retryable() -> None:
    sms = AfricasTalkingSms(USERNAME, API_KEY, base_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(SmsSendError) as caught:
        await sms.send("Karibu", [SAFARICOM])
    assert caught.value.retryable and "unreachable" in caught.value.detail


async def hostile_at(aiohttp_server: AiohttpServer, answer: web.Response, delay_s: float = 0.0) -> str:
    """An AT look-alike that answers every send with ``answer``; its base URL."""

    async def messaging(_: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return answer

    app = web.Application()
    app.router.add_post("/version1/messaging", messaging)
    server = await aiohttp_server(app)
    return str(server.make_url("/")).rstrip("/")


ONE_SENT = (
    '{"SMSMessageData":{"Message":"Sent to 1/1 Total Cost: KES 0.8000 Message parts: 1","Recipients":'
    '[{"cost":"KES 0.8000","messageId":"ATXid_1","number":"+254700000001","status":"Success","statusCode":102}]}}'
)


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [
        (web.Response(status=503, text="Service Unavailable"), True),
        (web.Response(status=500, text="<html>Internal Server Error</html>", content_type="text/html"), True),
        (web.Response(status=502), True),
        (web.Response(status=429, text="Too Many Requests"), True),
        (web.Response(status=400, text="Request is missing required form field 'to'"), False),
        (web.Response(status=403, text="Forbidden"), False),
        (web.Response(status=201, text="Sent"), False),  # a 2xx we cannot read may have been sent
        (web.json_response({"unexpected": True}, status=201), False),
        (web.json_response({"SMSMessageData": {"Message": "x", "Recipients": "?"}}, status=201), False),
    ],
    ids=["503", "500-html", "502-empty", "429", "400", "403", "201-text", "201-no-data", "201-bad-recipients"],
)
async def test_whole_request_failures_are_classified(
    aiohttp_server: AiohttpServer, answer: web.Response, retryable: bool
) -> None:
    base = await hostile_at(aiohttp_server, answer)
    with pytest.raises(SmsSendError) as caught:
        await AfricasTalkingSms(USERNAME, API_KEY, base_url=base).send("Karibu", [SAFARICOM])
    assert caught.value.retryable == retryable and caught.value.detail


async def test_json_with_a_charset_is_still_read(aiohttp_server: AiohttpServer) -> None:
    # The bare SDK returns such a body as a str (it wants the exact content type); we parse it.
    answer = web.Response(status=201, body=ONE_SENT.encode(), content_type="application/json", charset="utf-8")
    base = await hostile_at(aiohttp_server, answer)
    result = await AfricasTalkingSms(USERNAME, API_KEY, base_url=base).send("Karibu", ["0700000001"])
    assert result.all_accepted and result.recipients[0].message_id == "ATXid_1"


async def test_a_slow_answer_is_a_retryable_timeout(aiohttp_server: AiohttpServer) -> None:
    base = await hostile_at(aiohttp_server, web.Response(status=201, text=ONE_SENT), delay_s=1.0)
    sms = AfricasTalkingSms(USERNAME, API_KEY, base_url=base, timeout=(1.0, 0.1))
    with pytest.raises(SmsSendError) as caught:
        await sms.send("Karibu", [SAFARICOM])
    assert caught.value.retryable and "in time" in caught.value.detail


async def test_a_send_never_blocks_the_event_loop(aiohttp_server: AiohttpServer) -> None:
    # The look-alike runs on this same loop: a blocking adapter could not even get its answer.
    base = await hostile_at(
        aiohttp_server, web.Response(status=201, body=ONE_SENT.encode(), content_type="application/json"), 0.3
    )
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        result = await AfricasTalkingSms(USERNAME, API_KEY, base_url=base).send("Karibu", [SAFARICOM])
    finally:
        ticking.cancel()
    assert result.all_accepted and ticks >= 15


# ---- delivery reports and inbound, seen through the SDK ----


async def test_delivery_reports_carry_the_message_id_we_returned(make_env: MakeEnv) -> None:
    env = await make_env(duplicate_reports=1.0)
    result = await env.sms().send("Karibu", [SAFARICOM, "+254700000007"])
    await asyncio.sleep(0.03)
    await env.sim.dispatcher.drain()
    reports = [{k: v[0] for k, v in parse_qs(body.decode()).items()} for body in env.reports.bodies]
    message_id = result.recipients[0].message_id
    assert [(r["id"], r["status"]) for r in reports] == [(message_id, "Sent")] * 2 + [(message_id, "Success")] * 2


async def test_fetch_messages_through_the_sdk(make_env: MakeEnv) -> None:
    env = await make_env()
    for text in ("RENEW", "STOP"):
        env.sim.receive(SAFARICOM, text, None)
    # The bare SDK (no transport of ours) parses the answer: the content type is exactly JSON.
    bare = africastalking.SMSService(USERNAME, API_KEY)
    bare._baseUrl = env.base_url + "/version1"
    fetched = await asyncio.to_thread(bare.fetch_messages, 1)
    assert [m["text"] for m in fetched["SMSMessageData"]["Messages"]] == ["STOP"]
    ours = at_sms_service(USERNAME, API_KEY, env.base_url)
    response = await asyncio.to_thread(ours.fetch_messages)
    assert response.status_code == 200 and len(response.json()["SMSMessageData"]["Messages"]) == 2


# ---- settings ----


def settings(**notifications: Any) -> Settings:
    return Settings(
        payments=PaymentsSettings(simulator_url="http://127.0.0.1:8090"),
        notifications=NotificationsSettings(**notifications),
    )


def test_from_settings_defaults_to_the_simulator() -> None:
    assert AfricasTalkingSms.from_settings(settings()).base_url == "http://127.0.0.1:8090/version1"
    real = settings(at_base_url="https://api.africastalking.com/")
    assert AfricasTalkingSms.from_settings(real).base_url == "https://api.africastalking.com/version1"


def test_a_base_url_without_a_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        settings(at_base_url="api.africastalking.com")


async def test_from_settings_sends_with_the_configured_identity(make_env: MakeEnv) -> None:
    env = await make_env(sender_ids=("SOMO",))
    configured = Settings(
        payments=PaymentsSettings(simulator_url=env.base_url),
        notifications=NotificationsSettings(
            at_username=USERNAME, at_api_key=SecretStr(API_KEY), sms_sender_id="SOMO", at_base_url=""
        ),
    )
    result = await AfricasTalkingSms.from_settings(configured).send("Karibu", ["0700000001"])
    assert result.all_accepted and env.sim.messages[0].sender == "SOMO"


# ---- cost parsing ----


@pytest.mark.parametrize(
    ("cost", "minor"),
    [
        ("KES 0.8000", 80),
        ("KES 1.6000", 160),
        ("KES 0.0050", 1),  # half a cent rounds up
        ("KES 0.0049", 0),
        ("KES 12", 1200),
        ("USD 0.0079", None),
        ("0", None),
        ("KES abc", None),
        (None, None),
        (0.8, None),
    ],
)
def test_costs_are_read_in_kes_minor_units(cost: object, minor: int | None) -> None:
    assert parse_cost_minor(cost) == minor
