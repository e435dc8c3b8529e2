"""The ACS SMS and Email adapters, through the real ``azure-communication-*`` SDKs, against the
in-project simulator over real HTTP on loopback (plain ``http://``, HMAC-signed by the SDKs and
checked by the simulator).

Transport faults are played by tiny hostile servers, also on loopback; "nothing was sent" is
read from the simulator's own records.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from azure.communication.email.aio import EmailClient
from azure.communication.sms.aio import SmsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from pytest_aiohttp import AiohttpServer

from lms_domain.notifications.ports import (
    EmailSender,
    EmailSendError,
    EmailSendResult,
    SmsRecipientResult,
    SmsSender,
    SmsSendError,
)
from server.providers.acs import AcsEmail, AcsSms, normalise_endpoint, parse_connection_string
from server.simulators.acs import AcsSimConfig, AcsSimulator, acs_simulator_key, create_acs_app

ACCESS_KEY = base64.b64encode(b"acs-adapter-test-key-" * 3).decode()
FROM = "+18005550100"
SENDER = "DoNotReply@somo.example"
SAFARICOM, AIRTEL = "+254700000001", "+254733000002"


@dataclass
class Env:
    server: TestServer

    @property
    def endpoint(self) -> str:
        """As the portal writes it: with a trailing slash."""
        return str(self.server.make_url("/"))

    @property
    def sim(self) -> AcsSimulator:
        return self.server.app[acs_simulator_key]

    def sms(self, **overrides: Any) -> AcsSms:
        args: dict[str, Any] = {"endpoint": self.endpoint, "access_key": ACCESS_KEY, "from_number": FROM}
        return AcsSms(**(args | overrides))

    def email(self, **overrides: Any) -> AcsEmail:
        args: dict[str, Any] = {
            "endpoint": self.endpoint,
            "access_key": ACCESS_KEY,
            "sender_address": SENDER,
            "poll_interval_s": 0.01,
        }
        return AcsEmail(**(args | overrides))

    def taken(self) -> list[str]:
        """Every number the simulator accepted a message for, in order."""
        return [record.to for record in self.sim.sms if record.successful]


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
def make_env(aiohttp_server: AiohttpServer) -> MakeEnv:
    async def make(**config: Any) -> Env:
        config.setdefault("access_key", ACCESS_KEY)
        return Env(await aiohttp_server(create_acs_app(AcsSimConfig(**config))))

    return make


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and reads, but never answers; yields its endpoint."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()
        # Close every accepted connection here: one left to the garbage collector warns later,
        # in whichever test runs then.
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()


# ---- SDK quirks the adapters work around (fail loudly when a new SDK changes them) ----


async def test_the_sdk_signs_a_trailing_slash_into_the_host_and_acs_refuses_it(make_env: MakeEnv) -> None:
    env = await make_env()
    async with SmsClient(env.endpoint, AzureKeyCredential(ACCESS_KEY), retry_total=0) as client:
        with pytest.raises(ClientAuthenticationError):
            await client.send(FROM, [SAFARICOM], "Karibu")
    assert env.sim.sms == []
    # The adapter strips it, so the portal's form of the endpoint works.
    assert normalise_endpoint(env.endpoint) == env.endpoint.rstrip("/")
    assert (await env.sms().send("Karibu", [SAFARICOM])).all_accepted


async def test_the_sdks_connection_string_parser_turns_http_into_https(make_env: MakeEnv) -> None:
    env = await make_env()
    conn_str = f"endpoint={env.endpoint};accesskey={ACCESS_KEY}"
    async with SmsClient.from_connection_string(conn_str, retry_total=0) as client:
        with pytest.raises(ServiceRequestError):  # a TLS handshake with a plain-http server
            await client.send(FROM, [SAFARICOM], "Karibu")
    # Ours keeps the scheme, so a simulator connection string reaches the simulator.
    assert (await AcsSms.from_connection_string(conn_str, FROM).send("Karibu", [SAFARICOM])).all_accepted
    sent = await AcsEmail.from_connection_string(conn_str, SENDER, poll_interval_s=0.01).send(
        to=["achieng@example.com"], subject="Karibu", text="Karibu Somo"
    )
    assert sent.status == "Succeeded"


def test_connection_strings_are_parsed_keeping_the_scheme_and_the_keys_padding() -> None:
    key = base64.b64encode(b"x" * 31).decode()
    assert key.endswith("=")
    assert parse_connection_string(f"endpoint=https://x.communication.azure.com/;accesskey={key}") == (
        "https://x.communication.azure.com/",
        key,
    )
    assert parse_connection_string(f"AccessKey={key}; Endpoint=http://127.0.0.1:8090/") == (
        "http://127.0.0.1:8090/",
        key,
    )
    with pytest.raises(ValueError, match="endpoint="):
        parse_connection_string("endpoint=https://x.communication.azure.com/")
    assert normalise_endpoint("x.communication.azure.com/") == "https://x.communication.azure.com"


def test_an_access_key_that_is_not_base64_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="base64"):
        AcsSms("https://x.communication.azure.com", "not base64!", FROM)
    with pytest.raises(ValueError, match="base64"):
        AcsEmail("https://x.communication.azure.com", "not base64!", SENDER)


# ---- SMS ----


async def test_a_send_returns_the_message_id_and_parts_with_delivery_reports_on(make_env: MakeEnv) -> None:
    env = await make_env()
    sender: SmsSender = env.sms()
    result = await sender.send("Habari Achieng, karibu Somo.", [SAFARICOM])
    (record,) = env.sim.sms
    assert result.recipients == (
        SmsRecipientResult(
            number=SAFARICOM,
            accepted=True,
            status="Success",
            status_code=202,
            message_id=record.message_id,
            cost_minor=None,
            retryable=False,
        ),
    )
    assert record.message_id is not None and record.message_id.startswith("Outgoing_")
    assert record.sender == FROM and record.enable_delivery_report is True
    # The SDK sent a repeatability id, so ACS can drop an in-pipeline retry of the same request.
    assert record.repeatability_request_id and record.repeatability_result == "accepted"
    assert result.parts == 1 and result.summary == "Sent to 1/1" and result.all_accepted


async def test_parts_are_counted_as_gsm7_or_ucs2(make_env: MakeEnv) -> None:
    env = await make_env()
    assert (await env.sms().send("a" * 161, [SAFARICOM])).parts == 2
    assert (await env.sms().send("Habari 😀", [SAFARICOM])).parts == 1
    assert (await env.sms().send("😀" * 40, [SAFARICOM])).parts == 2


async def test_numbers_are_normalised_to_e164_and_sent_once(make_env: MakeEnv) -> None:
    env = await make_env()
    result = await env.sms().send("Karibu", ["0700000001", " +254700000001 ", "254733000002", "not-a-phone"])
    assert [r.number for r in result.recipients] == [SAFARICOM, AIRTEL, "not-a-phone"]
    assert [r.accepted for r in result.recipients] == [True, True, False]
    assert result.recipients[2].status == "InvalidPhoneNumber" and result.recipients[2].status_code is None
    assert env.taken() == [SAFARICOM, AIRTEL]


async def test_nothing_to_send_makes_no_request(make_env: MakeEnv) -> None:
    env = await make_env()
    result = await env.sms().send("Karibu", ["12", ""])
    assert not result.all_accepted and result.parts is None and env.sim.sms == []


async def test_sender_id_overrides_the_from_number(make_env: MakeEnv) -> None:
    env = await make_env(from_numbers=("SOMO",))
    assert (await env.sms().send("Karibu", [SAFARICOM], sender_id="SOMO")).all_accepted
    assert env.sim.sms[0].sender == "SOMO"


@pytest.mark.parametrize(
    ("number", "code", "status", "retryable"),
    [
        ("+254700000006", 400, "Invalid To phone number format.", False),
        ("+254700000007", 429, "Too many messages to this number; try again later.", True),
        ("+254700000008", 500, "Internal server error while sending to this number.", True),
    ],
)
async def test_a_refused_recipient_is_reported_with_its_status_and_retryability(
    make_env: MakeEnv, number: str, code: int, status: str, retryable: bool
) -> None:
    env = await make_env()
    result = await env.sms().send("Karibu", [SAFARICOM, number])
    taken, refused = result.recipients
    assert taken.accepted and taken.number == SAFARICOM
    assert refused == SmsRecipientResult(
        number=number,
        accepted=False,
        status=status,
        status_code=code,
        message_id=None,
        cost_minor=None,
        retryable=retryable,
    )
    assert result.retryable_numbers() == ([number] if retryable else [])
    assert result.summary == "Sent to 1/2"


async def test_a_whole_request_503_is_a_retryable_send_error_and_is_tried_once(make_env: MakeEnv) -> None:
    env = await make_env()
    with pytest.raises(SmsSendError, match="HTTP 503 ServiceUnavailable") as caught:
        await env.sms().send("Karibu", [SAFARICOM, "+254700000009"])
    assert caught.value.retryable is True
    assert env.taken() == []
    # One attempt per recipient recorded: the SDK's own retry policy (10 retries) is off.
    assert len(env.sim.sms) == 2


async def test_a_wrong_key_is_a_send_error_that_is_not_retryable(make_env: MakeEnv) -> None:
    env = await make_env()
    with pytest.raises(SmsSendError, match="HTTP 401 Denied") as caught:
        await env.sms(access_key=base64.b64encode(b"wrong key").decode()).send("Karibu", [SAFARICOM])
    assert caught.value.retryable is False and env.sim.sms == []


async def test_a_refused_request_is_a_send_error_that_is_not_retryable(make_env: MakeEnv) -> None:
    env = await make_env(from_numbers=("+18005550199",))
    with pytest.raises(SmsSendError, match="HTTP 400") as caught:
        await env.sms().send("Karibu", [SAFARICOM])
    assert caught.value.retryable is False


async def test_a_server_that_is_down_is_a_retryable_send_error() -> None:
    sms = AcsSms(f"http://127.0.0.1:{unused_port()}/", ACCESS_KEY, FROM)
    with pytest.raises(SmsSendError, match="unreachable") as caught:
        await sms.send("Karibu", [SAFARICOM])
    assert caught.value.retryable is True


async def test_a_server_that_never_answers_is_a_retryable_send_error_within_the_timeout() -> None:
    async with silent_server() as endpoint:
        sms = AcsSms(endpoint, ACCESS_KEY, FROM, timeout_s=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(SmsSendError) as caught:
            await sms.send("Karibu", [SAFARICOM])
        assert caught.value.retryable is True
        assert loop.time() - started < 2.0


# ---- email ----


async def test_an_email_is_sent_and_reported_succeeded(make_env: MakeEnv) -> None:
    env = await make_env(email_running_polls=1)
    sender: EmailSender = env.email()
    result = await sender.send(
        to=["achieng@example.com", " achieng@example.com", "otieno@example.com"],
        subject="Your renewal",
        text="Karibu Somo",
        html="<p>Karibu Somo</p>",
    )
    (record,) = env.sim.emails
    assert result == EmailSendResult(message_id=str(record.id), status="Succeeded")
    assert record.sender == SENDER and record.to == ["achieng@example.com", "otieno@example.com"]
    assert (record.subject, record.plain_text, record.html) == ("Your renewal", "Karibu Somo", "<p>Karibu Somo</p>")
    assert record.status == "Succeeded"


async def test_an_email_without_html_is_sent_as_plain_text(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.email().send(to=["achieng@example.com"], subject="Karibu", text="Karibu Somo")
    assert env.sim.emails[0].html is None and env.sim.emails[0].plain_text == "Karibu Somo"


async def test_an_email_still_running_after_the_settle_bound_is_accepted_as_running(make_env: MakeEnv) -> None:
    env = await make_env()
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await env.email(settle_s=0.2).send(to=["slow@example.com"], subject="Karibu", text="Karibu")
    assert result == EmailSendResult(message_id=str(env.sim.emails[0].id), status="Running")
    assert loop.time() - started < 1.5
    # settle_s=0: accepted on the 202, no poll at all.
    result = await env.email(settle_s=0).send(to=["achieng@example.com"], subject="Karibu", text="Karibu")
    assert result.status == "Running" and env.sim.emails[1].status == "Running"


async def test_an_operation_that_fails_is_a_send_error_that_is_not_retryable(make_env: MakeEnv) -> None:
    env = await make_env()
    with pytest.raises(EmailSendError, match="EmailDroppedAllRecipientsSuppressed") as caught:
        await env.email().send(to=["fail@example.com"], subject="Karibu", text="Karibu")
    assert caught.value.retryable is False
    assert env.sim.emails[0].status == "Failed"


@pytest.mark.parametrize(("address", "fragment"), [("down", "HTTP 503"), ("throttled", "HTTP 429")])
async def test_a_refused_send_that_may_pass_later_is_retryable(make_env: MakeEnv, address: str, fragment: str) -> None:
    env = await make_env()
    with pytest.raises(EmailSendError, match=fragment) as caught:
        await env.email().send(to=[f"{address}@example.com"], subject="Karibu", text="Karibu")
    assert caught.value.retryable is True
    assert len(env.sim.emails) == 1  # tried once, not by the SDK's retry policy


async def test_a_wrong_key_or_an_unlinked_sender_is_not_retryable(make_env: MakeEnv) -> None:
    env = await make_env(sender_addresses=("noreply@other.example",))
    with pytest.raises(EmailSendError, match="HTTP 401 Denied") as caught:
        await env.email(access_key=base64.b64encode(b"wrong key").decode()).send(
            to=["achieng@example.com"], subject="Karibu", text="Karibu"
        )
    assert caught.value.retryable is False
    with pytest.raises(EmailSendError, match="HTTP 404 DomainNotLinked") as caught:
        await env.email().send(to=["achieng@example.com"], subject="Karibu", text="Karibu")
    assert caught.value.retryable is False


async def test_an_email_without_recipients_is_refused_without_a_request(make_env: MakeEnv) -> None:
    env = await make_env()
    with pytest.raises(EmailSendError) as caught:
        await env.email().send(to=[" "], subject="Karibu", text="Karibu")
    assert caught.value.retryable is False and env.sim.emails == []


async def test_an_email_server_that_is_down_is_a_retryable_send_error() -> None:
    email = AcsEmail(f"http://127.0.0.1:{unused_port()}", ACCESS_KEY, SENDER)
    with pytest.raises(EmailSendError, match="unreachable") as caught:
        await email.send(to=["achieng@example.com"], subject="Karibu", text="Karibu")
    assert caught.value.retryable is True


async def test_an_email_server_that_never_answers_is_a_retryable_send_error() -> None:
    async with silent_server() as endpoint:
        email = AcsEmail(endpoint, ACCESS_KEY, SENDER, timeout_s=0.3)
        with pytest.raises(EmailSendError) as caught:
            await email.send(to=["achieng@example.com"], subject="Karibu", text="Karibu")
        assert caught.value.retryable is True


async def test_a_poll_that_fails_after_the_202_does_not_ask_for_a_resend(
    aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Once ACS has the email, a broken status poll must not make the caller send it again."""
    polls: list[str] = []

    async def accept(request: web.Request) -> web.Response:
        location = f"http://{request.host}/emails/operations/op-1?api-version=2025-09-01"
        body = {"id": "op-1", "status": "Running", "error": None}
        return web.json_response(body, status=202, headers={"Operation-Location": location})

    async def broken(request: web.Request) -> web.Response:
        polls.append(request.path)
        return web.json_response({"error": {"code": "InternalError", "message": "boom"}}, status=500)

    app = web.Application()
    app.router.add_post("/emails:send", accept)
    app.router.add_get("/emails/operations/{id}", broken)
    server = await aiohttp_server(app)
    email = AcsEmail(str(server.make_url("/")), ACCESS_KEY, SENDER, poll_interval_s=0.01)
    with caplog.at_level(logging.WARNING, logger="somo.providers.acs"):
        result = await email.send(to=["achieng@example.com"], subject="Karibu", text="Karibu")
    assert result.status == "Running" and polls == ["/emails/operations/op-1"]
    assert "accepted, status unknown" in caplog.text


async def test_each_email_carries_its_own_operation_id(make_env: MakeEnv) -> None:
    env = await make_env()
    first = await env.email().send(to=["achieng@example.com"], subject="Karibu", text="Karibu")
    second = await env.email().send(to=["achieng@example.com"], subject="Karibu", text="Karibu")
    assert first.message_id != second.message_id
    assert [record.id for record in env.sim.emails] == [first.message_id, second.message_id]


async def test_the_sdk_email_client_polls_the_simulator_to_the_end(make_env: MakeEnv) -> None:
    """The simulator's operation protocol is the one the SDK's poller follows, unaided."""
    env = await make_env(email_running_polls=2)
    async with EmailClient(env.endpoint, AzureKeyCredential(ACCESS_KEY), retry_total=0) as client:
        message = {
            "senderAddress": SENDER,
            "recipients": {"to": [{"address": "achieng@example.com"}]},
            "content": {"subject": "Karibu", "plainText": "Karibu"},
        }
        poller = await client.begin_send(message, polling_interval=0.01)
        final = await poller.result()
    assert final["status"] == "Succeeded" and final["id"] == env.sim.emails[0].id
