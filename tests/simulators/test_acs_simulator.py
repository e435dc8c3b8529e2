"""The ACS SMS and Email simulator over raw HTTP on loopback: HMAC authentication accepted and
refused, request validation, the per-number and per-address outcome tables, email operation
polling, repeatability, and the test-only endpoints.

Requests are signed here by hand, from ACS's documented HMAC scheme, independently of both the
simulator and the SDK (``tests/providers/test_acs_adapters.py`` covers the SDK's signing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from lms_domain.clock import FixedClock
from server.simulators.acs import (
    AcsSimConfig,
    AcsSimulator,
    SmsOutcome,
    acs_simulator_key,
    add_acs_routes,
    create_acs_app,
)
from server.simulators.africastalking import AtSimConfig, add_at_routes
from tests.conftest import T0

ACCESS_KEY = base64.b64encode(b"acs-simulator-test-key-" * 2).decode()
SMS_VERSION, EMAIL_VERSION = "2021-03-07", "2025-09-01"
SMS_URL = f"/sms?api-version={SMS_VERSION}"
EMAIL_URL = f"/emails:send?api-version={EMAIL_VERSION}"
FROM = "+18005550100"
SENDER = "DoNotReply@somo.example"
MESSAGE_ID = re.compile(r"^Outgoing_\d{14}[0-9a-f-]{36}_noam$")
DENIED = "Denied"


def sign(
    method: str, path_and_query: str, host: str, body: bytes, *, key: str = ACCESS_KEY, date: datetime = T0
) -> dict[str, str]:
    """ACS access-key headers: HMAC-SHA256 over VERB, path and query, date;host;content hash."""
    x_ms_date = format_datetime(date, usegmt=True)
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    string_to_sign = f"{method}\n{path_and_query}\n{x_ms_date};{host};{content_hash}"
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), string_to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    return {
        "x-ms-date": x_ms_date,
        "x-ms-content-sha256": content_hash,
        "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
    }


def sms_body(*numbers: str, message: str = "Habari! Somo inakukaribisha.", **extra: Any) -> dict[str, Any]:
    """A send as ``SmsClient.send`` serialises it."""
    return {
        "from": FROM,
        "smsRecipients": [
            {
                "to": number,
                "repeatabilityRequestId": f"req-{number}-{index}",
                "repeatabilityFirstSent": "Fri, 27 Nov 2026 07:00:00 GMT",
            }
            for index, number in enumerate(numbers)
        ],
        "message": message,
        "smsSendOptions": {"enableDeliveryReport": True, "tag": "renewal"},
    } | extra


def email_body(*to: str, **extra: Any) -> dict[str, Any]:
    """A message as ``EmailClient.begin_send`` takes it."""
    return {
        "senderAddress": SENDER,
        "recipients": {"to": [{"address": address} for address in to]},
        "content": {"subject": "Your loan", "plainText": "Karibu", "html": "<p>Karibu</p>"},
    } | extra


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Sim:
    client: TestClient[web.Request, web.Application]
    clock: FixedClock

    @property
    def state(self) -> AcsSimulator:
        return self.client.app[acs_simulator_key]

    @property
    def host(self) -> str:
        return f"{self.client.host}:{self.client.port}"

    async def call(
        self,
        method: str,
        path_and_query: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        **signing: Any,
    ) -> Answer:
        """Send ``body`` as JSON, signed unless ``headers`` are given."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        sent = headers if headers is not None else sign(method, path_and_query, self.host, data, **signing)
        if data:
            sent = sent | {"Content-Type": "application/json"}
        response = await self.client.request(method, path_and_query, data=data, headers=sent)
        text = await response.text()
        return Answer(response.status, dict(response.headers), json.loads(text) if text else None)

    async def send_sms(self, *numbers: str, **extra: Any) -> Answer:
        return await self.call("POST", SMS_URL, sms_body(*numbers, **extra))

    async def send_email(self, *to: str, headers: dict[str, str] | None = None, **extra: Any) -> Answer:
        body = json.dumps(email_body(*to, **extra)).encode()
        signed = sign("POST", EMAIL_URL, self.host, body) | (headers or {})
        return await self.call("POST", EMAIL_URL, raw=body, headers=signed)

    async def poll(self, answer: Answer) -> Answer:
        location = answer.headers["Operation-Location"]
        path = location.removeprefix(f"http://{self.host}")
        assert path != location, location  # absolute, on the host that was called
        return await self.call("GET", path)

    async def test_json(self, path: str) -> Any:
        response = await self.client.get(path)
        assert response.status == 200
        return await response.json()


MakeSim = Callable[..., Awaitable[Sim]]


@pytest.fixture
def make_sim(aiohttp_client: AiohttpClient) -> MakeSim:
    async def make(**config: Any) -> Sim:
        clock = FixedClock(T0)
        config.setdefault("access_key", ACCESS_KEY)
        config.setdefault("clock", clock.now)
        client = await aiohttp_client(create_acs_app(AcsSimConfig(**config)))
        return Sim(client, clock)

    return make


# ---- authentication ----


async def test_a_signed_sms_send_is_answered_202_in_acs_shape(make_sim: MakeSim) -> None:
    sim = await make_sim()
    answer = await sim.send_sms("+254700000001")
    assert answer.status == 202
    (item,) = answer.body["value"]
    assert set(item) == {"to", "messageId", "httpStatusCode", "repeatabilityResult", "successful", "errorMessage"}
    assert item["to"] == "+254700000001" and item["httpStatusCode"] == 202 and item["successful"] is True
    assert item["errorMessage"] is None and item["repeatabilityResult"] == "accepted"
    assert MESSAGE_ID.match(item["messageId"]), item["messageId"]
    (record,) = await sim.test_json("/sim/acs/sms")
    assert record["messageId"] == item["messageId"] and record["from"] == FROM
    assert record["enableDeliveryReport"] is True and record["tag"] == "renewal"


def _tampered(headers: dict[str, str]) -> dict[str, str]:
    return headers | {"x-ms-content-sha256": base64.b64encode(hashlib.sha256(b"other").digest()).decode()}


def _without_host(headers: dict[str, str]) -> dict[str, str]:
    authorization = headers["Authorization"].replace("x-ms-date;host;", "x-ms-date;")
    return headers | {"Authorization": authorization}


def _bearer(headers: dict[str, str]) -> dict[str, str]:
    return headers | {"Authorization": "Bearer something"}


@pytest.mark.parametrize(
    ("signing", "edit", "message"),
    [
        ({"key": base64.b64encode(b"not-the-key").decode()}, None, "Denied by the resource provider."),
        ({}, _tampered, "Request 'x-ms-content-sha256' differs from generated content hash."),
        ({"date": T0 - timedelta(minutes=16)}, None, "too far from the current time"),
        ({"date": T0 + timedelta(minutes=16)}, None, "too far from the current time"),
        ({}, _without_host, "SignedHeaders must include"),
        ({}, _bearer, "Denied by the resource provider."),
    ],
    ids=["wrong-key", "body-not-hashed", "stale-date", "future-date", "host-not-signed", "not-hmac"],
)
async def test_a_request_that_is_not_signed_as_acs_signs_is_refused_401(
    make_sim: MakeSim,
    signing: dict[str, Any],
    edit: Callable[[dict[str, str]], dict[str, str]] | None,
    message: str,
) -> None:
    sim = await make_sim()
    body = json.dumps(sms_body("+254700000001")).encode()
    headers = sign("POST", SMS_URL, sim.host, body, **signing)
    answer = await sim.call("POST", SMS_URL, raw=body, headers=edit(headers) if edit else headers)
    assert answer.status == 401
    assert answer.body["error"]["code"] == DENIED and message in answer.body["error"]["message"]
    assert sim.state.sms == []


async def test_the_signature_covers_the_path_the_query_and_the_host(make_sim: MakeSim) -> None:
    sim = await make_sim()
    body = json.dumps(sms_body("+254700000001")).encode()
    for path, host in (
        ("/sms?api-version=2020-01-01", sim.host),
        ("/emails:send?api-version=2021-03-07", sim.host),
        (SMS_URL, "x.communication.azure.com"),
        (SMS_URL, sim.host + "/"),  # what SmsClient signs for an endpoint given with a trailing "/"
    ):
        answer = await sim.call("POST", SMS_URL, raw=body, headers=sign("POST", path, host, body))
        assert answer.status == 401, (path, host)
    assert (await sim.call("POST", SMS_URL, raw=body, headers=sign("POST", SMS_URL, sim.host, body))).status == 202


async def test_a_date_within_the_allowed_skew_is_accepted(make_sim: MakeSim) -> None:
    sim = await make_sim()
    for minutes in (-14, 14):
        answer = await sim.call(
            "POST", SMS_URL, sms_body(f"+25470000000{minutes % 6}"), date=T0 + timedelta(minutes=minutes)
        )
        assert answer.status == 202


async def test_authentication_is_checked_before_validation(make_sim: MakeSim) -> None:
    sim = await make_sim()
    answer = await sim.call("POST", SMS_URL, raw=b"{}", headers={"Authorization": "HMAC-SHA256 nothing"})
    assert answer.status == 401 and answer.body["error"]["code"] == DENIED


# ---- SMS: validation and outcomes ----


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (sms_body("+254700000001", **{"from": ""}), "'from'"),
        (sms_body(), "'smsRecipients'"),
        ({k: v for k, v in sms_body("+254700000001").items() if k != "message"}, "'message'"),
        (
            sms_body() | {"smsRecipients": [{"to": "+254700000001", "repeatabilityRequestId": "r1"}]},
            "repeatabilityFirstSent",
        ),
        (sms_body() | {"smsRecipients": [{"number": "+254700000001"}]}, "'to'"),
        ([], "JSON object"),
    ],
    ids=["no-from", "no-recipients", "no-message", "repeatability-without-first-sent", "no-to", "not-an-object"],
)
async def test_an_invalid_sms_request_is_400_in_acs_error_shape(make_sim: MakeSim, body: Any, fragment: str) -> None:
    sim = await make_sim()
    answer = await sim.call("POST", SMS_URL, body)
    assert answer.status == 400 and set(answer.body) == {"error"}
    assert answer.body["error"]["code"] == "BadRequest" and fragment in answer.body["error"]["message"]
    assert sim.state.sms == []


async def test_a_request_without_api_version_is_400(make_sim: MakeSim) -> None:
    sim = await make_sim()
    answer = await sim.call("POST", "/sms", sms_body("+254700000001"))
    assert answer.status == 400 and answer.body["error"]["code"] == "MissingApiVersionParameter"


@pytest.mark.parametrize(
    ("number", "status", "successful", "error"),
    [
        *((f"+25470000000{digit}", 202, True, None) for digit in "012345"),
        ("+254700000006", 400, False, "Invalid To phone number format."),
        ("+254700000007", 429, False, "Too many messages"),
        ("+254700000008", 500, False, "Internal server error"),
        ("0700000001", 400, False, "Invalid To phone number format."),  # not E.164
    ],
)
async def test_each_recipient_gets_the_outcome_of_its_last_digit(
    make_sim: MakeSim, number: str, status: int, successful: bool, error: str | None
) -> None:
    sim = await make_sim()
    answer = await sim.send_sms(number)
    assert answer.status == 202
    (item,) = answer.body["value"]
    assert (item["httpStatusCode"], item["successful"]) == (status, successful)
    assert (item["messageId"] is not None) == successful
    assert item["errorMessage"] == error if error is None else error in item["errorMessage"]


async def test_a_mixed_send_answers_every_recipient_in_request_order(make_sim: MakeSim) -> None:
    sim = await make_sim()
    numbers = ["+254700000001", "+254700000006", "+254700000008", "+254733000002"]
    answer = await sim.send_sms(*numbers)
    assert [item["to"] for item in answer.body["value"]] == numbers
    assert [item["successful"] for item in answer.body["value"]] == [True, False, False, True]
    assert [record.to for record in sim.state.sms] == numbers


async def test_a_number_ending_in_9_fails_the_whole_request_with_503(make_sim: MakeSim) -> None:
    sim = await make_sim()
    answer = await sim.send_sms("+254700000001", "+254700000009")
    assert answer.status == 503 and answer.headers["Retry-After"] == "1"
    assert answer.body == {
        "error": {"code": "ServiceUnavailable", "message": "The service is temporarily unavailable."}
    }
    # Recorded as attempts, none taken: nothing went out.
    assert [(r.to, r.http_status_code, r.successful, r.message_id) for r in sim.state.sms] == [
        ("+254700000001", 503, False, None),
        ("+254700000009", 503, False, None),
    ]


async def test_number_outcomes_override_the_digit_table(make_sim: MakeSim) -> None:
    sim = await make_sim(number_outcomes={"+254700000001": SmsOutcome(400, "Opted out")})
    (item,) = (await sim.send_sms("+254700000001")).body["value"]
    assert (item["httpStatusCode"], item["successful"], item["errorMessage"]) == (400, False, "Opted out")


async def test_a_from_number_the_resource_does_not_own_is_refused(make_sim: MakeSim) -> None:
    sim = await make_sim(from_numbers=("+18005550199",))
    answer = await sim.send_sms("+254700000001")
    assert answer.status == 400 and FROM in answer.body["error"]["message"]
    assert (await sim.send_sms("+254700000001", **{"from": "+18005550199"})).status == 202


async def test_a_repeated_request_id_is_answered_but_not_sent_again(make_sim: MakeSim) -> None:
    sim = await make_sim()
    first = (await sim.send_sms("+254700000001")).body["value"][0]
    again = (await sim.send_sms("+254700000001")).body["value"][0]
    assert first["repeatabilityResult"] == "accepted" and again["repeatabilityResult"] == "rejected"
    assert again["messageId"] == first["messageId"] and again["successful"] is True
    assert len(sim.state.sms) == 1


# ---- email ----


async def test_an_email_is_queued_202_with_an_operation_to_poll(make_sim: MakeSim) -> None:
    sim = await make_sim(email_running_polls=2)
    answer = await sim.send_email("achieng@example.com")
    assert answer.status == 202
    operation_id = answer.headers["operation-id"]
    assert answer.body == {"id": operation_id, "status": "Running", "error": None}
    assert answer.headers["Operation-Location"] == (
        f"http://{sim.host}/emails/operations/{operation_id}?api-version={EMAIL_VERSION}"
    )
    assert "Retry-After" not in answer.headers
    statuses = [(await sim.poll(answer)).body["status"] for _ in range(4)]
    assert statuses == ["Running", "Running", "Succeeded", "Succeeded"]
    (record,) = await sim.test_json("/sim/acs/emails")
    assert record["id"] == operation_id and record["to"] == ["achieng@example.com"]
    assert (record["subject"], record["plainText"], record["html"]) == ("Your loan", "Karibu", "<p>Karibu</p>")
    assert record["status"] == "Succeeded"


async def test_retry_after_is_sent_when_configured(make_sim: MakeSim) -> None:
    sim = await make_sim(retry_after_s=30, email_running_polls=1)
    answer = await sim.send_email("achieng@example.com")
    assert answer.headers["Retry-After"] == "30"
    assert (await sim.poll(answer)).headers["Retry-After"] == "30"


async def test_an_operation_poll_must_be_signed(make_sim: MakeSim) -> None:
    sim = await make_sim()
    answer = await sim.send_email("achieng@example.com")
    path = answer.headers["Operation-Location"].removeprefix(f"http://{sim.host}")
    refused = await sim.call("GET", path, key=base64.b64encode(b"wrong").decode())
    assert refused.status == 401 and refused.body["error"]["code"] == DENIED
    missing = await sim.call("GET", f"/emails/operations/nope?api-version={EMAIL_VERSION}")
    assert missing.status == 404


@pytest.mark.parametrize(
    ("address", "final"),
    [
        ("fail@example.com", "Failed"),
        ("failing.learner@example.com", "Failed"),
        ("slow@example.com", "Running"),
        ("achieng@example.com", "Succeeded"),
    ],
)
async def test_each_address_ends_its_operation_as_scripted(make_sim: MakeSim, address: str, final: str) -> None:
    sim = await make_sim()
    answer = await sim.send_email(address)
    assert answer.status == 202
    polls = [(await sim.poll(answer)).body for _ in range(3)]
    assert {poll["status"] for poll in polls} == {final}
    if final == "Failed":
        assert polls[0]["error"]["code"] == "EmailDroppedAllRecipientsSuppressed"
    else:
        assert polls[0]["error"] is None


@pytest.mark.parametrize(
    ("address", "status", "code"), [("down", 503, "ServiceUnavailable"), ("throttled", 429, "TooManyRequests")]
)
async def test_down_and_throttled_addresses_refuse_the_whole_send(
    make_sim: MakeSim, address: str, status: int, code: str
) -> None:
    sim = await make_sim()
    answer = await sim.send_email("achieng@example.com", f"{address}@example.com")
    assert answer.status == status and answer.body["error"]["code"] == code
    assert answer.headers["Retry-After"] == "1" and "Operation-Location" not in answer.headers
    (record,) = sim.state.emails
    assert record.id is None and record.status is None and record.http_status_code == status


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        ({"senderAddress": "not-an-address"}, "senderAddress"),
        ({"recipients": {"to": []}}, "recipients.to"),
        ({"recipients": {"to": [{"displayName": "Achieng"}]}}, "recipients.to"),
        ({"recipients": {"to": [{"address": "a@example.com"}], "cc": [{"address": "nope"}]}}, "recipients.cc"),
        ({"content": {"plainText": "Karibu"}}, "content.subject"),
        ({"content": {"subject": "Your loan"}}, "plainText"),
        ({"recipients": None}, "recipients"),
    ],
    ids=["bad-sender", "no-to", "to-without-address", "bad-cc", "no-subject", "no-body", "no-recipients"],
)
async def test_an_invalid_email_is_400_in_acs_error_shape(
    make_sim: MakeSim, edit: dict[str, Any], fragment: str
) -> None:
    sim = await make_sim()
    answer = await sim.send_email("achieng@example.com", **edit)
    assert answer.status == 400 and answer.body["error"]["code"] == "BadRequest"
    assert fragment in answer.body["error"]["message"]
    assert sim.state.emails == []


async def test_a_sender_of_an_unlinked_domain_is_404_domain_not_linked(make_sim: MakeSim) -> None:
    sim = await make_sim(sender_addresses=("noreply@other.example",))
    answer = await sim.send_email("achieng@example.com")
    assert answer.status == 404 and answer.body["error"]["code"] == "DomainNotLinked"


async def test_a_client_operation_id_names_the_operation_and_is_idempotent(make_sim: MakeSim) -> None:
    sim = await make_sim()
    first = await sim.send_email("achieng@example.com", headers={"Operation-Id": "op-1"})
    again = await sim.send_email("achieng@example.com", headers={"Operation-Id": "op-1"})
    assert first.body["id"] == again.body["id"] == first.headers["operation-id"] == "op-1"
    assert len(sim.state.emails) == 1


# ---- test-only endpoints, determinism, composition ----


async def test_reset_forgets_everything_and_replays_the_same_ids(make_sim: MakeSim) -> None:
    sim = await make_sim()
    first_sms = (await sim.send_sms("+254700000001")).body["value"][0]["messageId"]
    first_email = (await sim.send_email("achieng@example.com")).body["id"]
    response = await sim.client.post("/sim/acs/reset")
    assert response.status == 200
    assert await sim.test_json("/sim/acs/sms") == [] and await sim.test_json("/sim/acs/emails") == []
    assert (await sim.send_sms("+254700000001")).body["value"][0]["messageId"] == first_sms
    assert (await sim.send_email("achieng@example.com")).body["id"] == first_email


async def test_another_seed_gives_other_ids(make_sim: MakeSim) -> None:
    one, two = await make_sim(seed=1), await make_sim(seed=2)
    ids = [(await sim.send_sms("+254700000001")).body["value"][0]["messageId"] for sim in (one, two)]
    assert ids[0] != ids[1]


def test_the_access_key_must_be_base64() -> None:
    with pytest.raises(ValueError, match="base64"):
        AcsSimConfig(access_key="not base64!")


async def test_the_routes_install_next_to_another_simulator(aiohttp_client: AiohttpClient) -> None:
    app = web.Application()
    add_at_routes(app, AtSimConfig())
    add_acs_routes(app, AcsSimConfig(access_key=ACCESS_KEY, clock=FixedClock(T0).now))
    client = await aiohttp_client(app)
    sim = Sim(client, FixedClock(T0))
    assert (await sim.send_sms("+254700000001")).status == 202
    assert (await client.get("/sim/at/messages")).status == 200
