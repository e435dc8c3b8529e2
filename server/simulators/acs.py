"""A loopback simulator of Azure Communication Services (ACS) SMS and Email, speaking the REST
shapes of the official SDKs' generated code (``azure-communication-sms`` 1.1, api-version
``2021-03-07``; ``azure-communication-email`` 1.1, api-version ``2025-09-01``), so the real
``SmsClient`` and ``EmailClient`` can be pointed at it.

Endpoints (paths as on ``https://<resource>.communication.azure.com``)::

    POST /sms?api-version=...                    send SMS: from, smsRecipients[], message, smsSendOptions
    POST /emails:send?api-version=...            queue an email: 202, Operation-Location, operation-id
    GET  /emails/operations/{id}?api-version=... the email operation: Running, Succeeded or Failed
    GET  /sim/acs/sms                            test-only: every SMS recipient of every valid request
    GET  /sim/acs/emails                         test-only: every valid email request
    POST /sim/acs/reset                          test-only: forget all state, reseed

Authentication is ACS's access-key HMAC, checked the way the SDKs' ``HMACCredentialsPolicy``
signs: ``x-ms-date`` (RFC 1123), ``x-ms-content-sha256`` (base64 SHA-256 of the body as sent)
and ``Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=S``
where ``S`` is the base64 HMAC-SHA256, keyed with the base64-decoded access key, of
``VERB\\nPATH_AND_QUERY\\n<value of each signed header, joined by ";">`` (``host`` is the
``Host`` header, port included). A missing header, a body that does not match its hash, a date
more than ``max_clock_skew_s`` (15 minutes, as Azure's HMAC schemes allow) from the simulator's
clock, or a wrong signature is HTTP 401 with ACS's error body ``{"error": {"code": "Denied",
"message": ...}}``. Authentication is checked before anything else, validation next (400), then
the scripted outcome. A request without ``api-version`` is 400 ``MissingApiVersionParameter``.

Scripted SMS outcomes per recipient, by the last digit of ``to`` (0-5 succeed, so the demo
phones ``+254700000001..3`` and the tests' phones work):

=====  ==============  ===========  ========================================================
digit  httpStatusCode  successful   behaviour
=====  ==============  ===========  ========================================================
0-5    202             true         accepted; a ``messageId`` is issued
6      400             false        invalid number: never worth retrying
7      429             false        throttled for this number: retryable
8      500             false        ACS failed for this number: retryable
9      --              --           the whole request is HTTP 503 ``ServiceUnavailable``
=====  ==============  ===========  ========================================================

A ``to`` that is not E.164 (``+`` and 8-15 digits) is 400 whatever its digit, and
``AcsSimConfig.number_outcomes`` overrides the table per number. The answer is HTTP 202 whatever
happened to the recipients (as ACS answers), one ``value`` item per recipient in request order.
A recipient whose ``repeatabilityRequestId`` was already accepted is not sent again: it gets the
first answer back with ``repeatabilityResult: "rejected"`` (the OASIS repeatability semantics the
ACS API documents: "rejected" means "a repeat, not executed").

Scripted email outcomes, by the local part of any recipient (to, cc or bcc), checked in this
order:

================  =========================================================================
local part        behaviour
================  =========================================================================
``down``          the send is HTTP 503 ``ServiceUnavailable``: no operation exists
``throttled``     the send is HTTP 429 ``TooManyRequests`` with ``Retry-After: 1``
``fail...``       202, then the operation ends ``Failed`` (error ``EmailDroppedAllRecipientsSuppressed``)
``slow...``       202, then the operation stays ``Running`` for ever
anything else     202, then ``Running`` for ``email_running_polls`` polls, then ``Succeeded``
================  =========================================================================

An email request is validated as ACS does before queueing: ``senderAddress`` (and, when
``AcsSimConfig.sender_addresses`` is set, one of them, else 404 ``DomainNotLinked``),
``recipients.to`` with at least one ``address``, ``content.subject``, and ``plainText`` or
``html``. A client-chosen ``Operation-Id`` header becomes the operation id; sending the same id
again queues nothing and answers the existing operation (idempotent, which is what the header is
for). Error codes other than ``Denied``, ``DomainNotLinked`` and ``MissingApiVersionParameter``,
and the exact error messages, are inferred: ACS documents the shape, not every word.

Ids (SMS ``messageId``s in ACS's ``Outgoing_<timestamp><guid>_noam`` form, operation ids) come
from an RNG seeded by ``AcsSimConfig.seed``, so a run is deterministic. Delivery reports, which
ACS publishes through Event Grid rather than a callback URL, are not simulated:
``enableDeliveryReport`` and ``tag`` are recorded for tests to assert on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp import web

from server.notifiers import SIMULATOR_ACS_KEY

SMS_PATH = "/sms"
EMAIL_SEND_PATH = "/emails:send"
EMAIL_OPERATION_PATH = "/emails/operations/{operation_id}"
SIGNED_HEADERS_REQUIRED = ("x-ms-date", "host", "x-ms-content-sha256")
# Any base64 value works as an access key; this one only has to look like ACS's (64 bytes).
DEFAULT_SKEW_S = 15 * 60
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class SmsOutcome:
    """What ACS answers for one recipient of an SMS send."""

    http_status_code: int = 202
    error_message: str | None = None

    @property
    def successful(self) -> bool:
        return self.http_status_code == 202


SMS_SUCCESS = SmsOutcome()
SMS_INVALID_NUMBER = SmsOutcome(400, "Invalid To phone number format.")
SMS_THROTTLED = SmsOutcome(429, "Too many messages to this number; try again later.")
SMS_SERVER_ERROR = SmsOutcome(500, "Internal server error while sending to this number.")
# Not a recipient's answer: the whole request fails with HTTP 503, every recipient recorded so.
SMS_UNAVAILABLE = SmsOutcome(503, "ServiceUnavailable")
DIGIT_OUTCOMES: dict[str, SmsOutcome] = {
    **dict.fromkeys("012345", SMS_SUCCESS),
    "6": SMS_INVALID_NUMBER,
    "7": SMS_THROTTLED,
    "8": SMS_SERVER_ERROR,
    "9": SMS_UNAVAILABLE,
}


def _system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AcsSimConfig:
    """Everything a simulator instance needs; all state lives on the ``AcsSimulator``."""

    # Base64, as in the resource's connection string; by default the development key a ``dev-``
    # SOMO_NOTIFICATIONS__ACS_CONNECTION_STRING stands for.
    access_key: str = SIMULATOR_ACS_KEY
    seed: int = 0
    clock: Callable[[], datetime] = _system_clock
    max_clock_skew_s: float = DEFAULT_SKEW_S
    from_numbers: tuple[str, ...] = ()  # the numbers (or sender ids) the resource owns; empty: any
    sender_addresses: tuple[str, ...] = ()  # the linked domains' sender addresses; empty: any
    email_running_polls: int = 0  # polls answered "Running" before an operation ends
    retry_after_s: int | None = None  # Retry-After on the email 202 and its polls (None: not sent)
    number_outcomes: Mapping[str, SmsOutcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            base64.b64decode(self.access_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("access_key must be base64, as ACS access keys are") from exc
        if self.email_running_polls < 0 or self.max_clock_skew_s < 0:
            raise ValueError("email_running_polls and max_clock_skew_s must be >= 0")


@dataclass(slots=True)
class SmsRecord:
    """One recipient of one SMS request, as the simulator remembers it."""

    to: str
    sender: str
    message: str
    message_id: str | None
    http_status_code: int
    successful: bool
    error_message: str | None
    repeatability_request_id: str | None
    repeatability_result: str | None
    enable_delivery_report: bool
    tag: str | None
    sent_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The form served by ``GET /sim/acs/sms``."""
        return {
            "to": self.to,
            "from": self.sender,
            "message": self.message,
            "messageId": self.message_id,
            "httpStatusCode": self.http_status_code,
            "successful": self.successful,
            "errorMessage": self.error_message,
            "repeatabilityRequestId": self.repeatability_request_id,
            "repeatabilityResult": self.repeatability_result,
            "enableDeliveryReport": self.enable_delivery_report,
            "tag": self.tag,
            "sentAt": self.sent_at.isoformat(),
        }


@dataclass(slots=True)
class EmailRecord:
    """One valid email request and, when it was queued, its operation."""

    id: str | None
    sender: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    plain_text: str | None
    html: str | None
    http_status_code: int
    status: str | None  # the operation's status; None when the send was refused
    error: dict[str, Any] | None
    running_polls_left: int
    created_at: datetime

    def operation(self) -> dict[str, Any]:
        """The operation body ACS answers on the send and on every poll."""
        return {"id": self.id, "status": self.status, "error": self.error}

    def as_json(self) -> dict[str, Any]:
        """The form served by ``GET /sim/acs/emails``."""
        return {
            "id": self.id,
            "senderAddress": self.sender,
            "to": self.to,
            "cc": self.cc,
            "bcc": self.bcc,
            "subject": self.subject,
            "plainText": self.plain_text,
            "html": self.html,
            "httpStatusCode": self.http_status_code,
            "status": self.status,
            "error": self.error,
            "createdAt": self.created_at.isoformat(),
        }


class AcsError(Exception):
    """An answer other than success, in ACS's error shape."""

    def __init__(self, status: int, code: str, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    def response(self) -> web.Response:
        headers = {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else None
        return _json({"error": {"code": self.code, "message": self.message}}, status=self.status, headers=headers)


def _denied(message: str) -> AcsError:
    return AcsError(401, "Denied", message)


def _bad_request(message: str) -> AcsError:
    return AcsError(400, "BadRequest", message)


def content_hash(body: bytes) -> str:
    """``x-ms-content-sha256``: the base64 SHA-256 of the body as sent (of b"" when empty)."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


class AcsSimulator:
    """The simulator's state: SMS and email records, operations and the seeded id source."""

    def __init__(self, config: AcsSimConfig) -> None:
        self.config = config
        self._secret = base64.b64decode(config.access_key)
        self.sms: list[SmsRecord] = []
        self.emails: list[EmailRecord] = []
        self._operations: dict[str, EmailRecord] = {}
        self._repeatability: dict[str, dict[str, Any]] = {}
        self._ids = random.Random()  # noqa: S311 - ids only need to look like ACS's, reproducibly
        self.reset()

    def reset(self) -> None:
        """Back to the state of a fresh instance: same seed, so the same ids again."""
        self._ids.seed(f"acs:{self.config.seed}:ids")
        self.sms.clear()
        self.emails.clear()
        self._operations.clear()
        self._repeatability.clear()

    # ---- auth ----

    def check_auth(self, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes) -> None:
        """Raise ACS's 401 unless the request carries a valid, fresh HMAC-SHA256 signature."""
        authorization = headers.get("Authorization", "")
        scheme, _, parameters = authorization.partition(" ")
        if scheme != "HMAC-SHA256":
            raise _denied("Denied by the resource provider.")
        fields = dict(part.partition("=")[::2] for part in parameters.split("&"))
        signed = [name.strip().lower() for name in fields.get("SignedHeaders", "").split(";") if name.strip()]
        signature = fields.get("Signature", "")
        if any(name not in signed for name in SIGNED_HEADERS_REQUIRED) or not signature:
            raise _denied(f"SignedHeaders must include {';'.join(SIGNED_HEADERS_REQUIRED)}, and a Signature.")
        values = []
        for name in signed:
            value = headers.get(name)
            if value is None:
                raise _denied(f"Signed header '{name}' is missing from the request.")
            values.append(value)
        if headers["x-ms-content-sha256"] != content_hash(body):
            raise _denied("Request 'x-ms-content-sha256' differs from generated content hash.")
        try:
            sent_at = parsedate_to_datetime(headers["x-ms-date"])
        except (TypeError, ValueError):
            raise _denied("Request 'x-ms-date' is not an RFC 1123 date.") from None
        if (
            sent_at.tzinfo is None
            or abs((self.config.clock() - sent_at).total_seconds()) > self.config.max_clock_skew_s
        ):
            raise _denied("Request 'x-ms-date' is too far from the current time.")
        string_to_sign = f"{method.upper()}\n{path_and_query}\n{';'.join(values)}"
        expected = base64.b64encode(hmac.new(self._secret, string_to_sign.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature.encode()):
            raise _denied("Denied by the resource provider.")

    # ---- SMS ----

    def _message_id(self, now: datetime) -> str:
        guid = uuid.UUID(int=self._ids.getrandbits(128), version=4)
        return f"Outgoing_{now:%Y%m%d%H%M%S}{guid}_noam"

    def _sms_outcome(self, number: str) -> SmsOutcome:
        """The scripted answer for ``number`` (``SMS_UNAVAILABLE`` fails the whole request)."""
        if number in self.config.number_outcomes:
            return self.config.number_outcomes[number]
        if not _E164.match(number):
            return SMS_INVALID_NUMBER
        return DIGIT_OUTCOMES[number[-1]]

    def send_sms(self, body: Any) -> dict[str, Any]:
        """Handle one SMS request: 202 with one item per recipient, or raise ``AcsError``."""
        sender, recipients, message, options = _sms_request(body)
        if self.config.from_numbers and sender not in self.config.from_numbers:
            raise _bad_request(f"The from number {sender} is not provisioned on this resource.")
        outcomes = [self._sms_outcome(recipient["to"]) for recipient in recipients]
        now = self.config.clock()
        delivery_report = bool(options.get("enableDeliveryReport", False))
        tag = options.get("tag") if isinstance(options.get("tag"), str) else None
        unavailable = SMS_UNAVAILABLE in outcomes
        items = []
        for recipient, scripted in zip(recipients, outcomes, strict=True):
            outcome = SMS_UNAVAILABLE if unavailable else scripted
            request_id = recipient.get("repeatabilityRequestId")
            if not unavailable and request_id is not None and request_id in self._repeatability:
                items.append(self._repeatability[request_id] | {"repeatabilityResult": "rejected"})
                continue
            message_id = self._message_id(now) if outcome.successful else None
            item = {
                "to": recipient["to"],
                "messageId": message_id,
                "httpStatusCode": outcome.http_status_code,
                "repeatabilityResult": "accepted" if request_id is not None and not unavailable else None,
                "successful": outcome.successful,
                "errorMessage": outcome.error_message,
            }
            if request_id is not None and not unavailable:
                self._repeatability[request_id] = item
            items.append(item)
            self.sms.append(
                SmsRecord(
                    to=recipient["to"],
                    sender=sender,
                    message=message,
                    message_id=message_id,
                    http_status_code=outcome.http_status_code,
                    successful=outcome.successful,
                    error_message=outcome.error_message,
                    repeatability_request_id=request_id,
                    repeatability_result=item["repeatabilityResult"],
                    enable_delivery_report=delivery_report,
                    tag=tag,
                    sent_at=now,
                )
            )
        if unavailable:
            raise AcsError(503, "ServiceUnavailable", "The service is temporarily unavailable.", retry_after_s=1)
        return {"value": items}

    # ---- email ----

    def _operation_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def send_email(self, body: Any, operation_id: str | None) -> EmailRecord:
        """Queue one email (or answer the operation an ``Operation-Id`` already names)."""
        if operation_id is not None and operation_id in self._operations:
            return self._operations[operation_id]
        sender, to, cc, bcc, subject, plain_text, html = _email_request(body)
        if self.config.sender_addresses and sender not in self.config.sender_addresses:
            raise AcsError(404, "DomainNotLinked", "The specified sender domain has not been linked.")
        record = EmailRecord(
            id=None,
            sender=sender,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=subject,
            plain_text=plain_text,
            html=html,
            http_status_code=202,
            status=None,
            error=None,
            running_polls_left=self.config.email_running_polls,
            created_at=self.config.clock(),
        )
        self.emails.append(record)
        local_parts = [address.partition("@")[0].lower() for address in (*to, *cc, *bcc)]
        if "down" in local_parts:
            record.http_status_code = 503
            raise AcsError(503, "ServiceUnavailable", "The service is temporarily unavailable.", retry_after_s=1)
        if "throttled" in local_parts:
            record.http_status_code = 429
            raise AcsError(429, "TooManyRequests", "Too many requests; try again later.", retry_after_s=1)
        record.id = operation_id or self._operation_id()
        record.status = "Running"
        if any(part.startswith("fail") for part in local_parts):
            record.error = {
                "code": "EmailDroppedAllRecipientsSuppressed",
                "message": "Message was dropped because all recipients were suppressed.",
            }
        elif any(part.startswith("slow") for part in local_parts):
            record.running_polls_left = -1  # never ends
        self._operations[record.id] = record
        return record

    def poll_email(self, operation_id: str) -> EmailRecord:
        """One GET of the operation: it moves on by one poll."""
        record = self._operations.get(operation_id)
        if record is None:
            raise AcsError(404, "NotFound", f"Operation {operation_id} was not found.")
        if record.status == "Running" and record.running_polls_left >= 0:
            if record.running_polls_left == 0:
                record.status = "Failed" if record.error is not None else "Succeeded"
            else:
                record.running_polls_left -= 1
        return record


def _sms_request(body: Any) -> tuple[str, list[dict[str, Any]], str, dict[str, Any]]:
    """``from``, ``smsRecipients``, ``message`` and ``smsSendOptions`` of a valid request."""
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object.")
    sender, recipients, message = body.get("from"), body.get("smsRecipients"), body.get("message")
    options = body.get("smsSendOptions") or {}
    if not isinstance(sender, str) or not sender:
        raise _bad_request("The 'from' field is required.")
    if not isinstance(message, str):
        raise _bad_request("The 'message' field is required.")
    if not isinstance(recipients, list) or not recipients:
        raise _bad_request("The 'smsRecipients' field must list at least one recipient.")
    for recipient in recipients:
        if not isinstance(recipient, dict) or not isinstance(recipient.get("to"), str):
            raise _bad_request("Every recipient needs a 'to' phone number.")
        if recipient.get("repeatabilityRequestId") is not None and not recipient.get("repeatabilityFirstSent"):
            raise _bad_request("'repeatabilityFirstSent' is required with 'repeatabilityRequestId'.")
    if not isinstance(options, dict):
        raise _bad_request("'smsSendOptions' must be an object.")
    return sender, recipients, message, options


def _addresses(recipients: Mapping[str, Any], kind: str) -> list[str]:
    entries = recipients.get(kind) or []
    if not isinstance(entries, list):
        raise _bad_request(f"'recipients.{kind}' must be a list.")
    addresses = []
    for entry in entries:
        address = entry.get("address") if isinstance(entry, dict) else None
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise _bad_request(f"Every entry of 'recipients.{kind}' needs a valid 'address'.")
        addresses.append(address)
    return addresses


def _email_request(body: Any) -> tuple[str, list[str], list[str], list[str], str, str | None, str | None]:
    """Sender, to, cc, bcc, subject, plain text and html of a valid email request."""
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object.")
    sender = body.get("senderAddress")
    if not isinstance(sender, str) or not _ADDRESS.match(sender):
        raise _bad_request("'senderAddress' must be a valid email address.")
    recipients = body.get("recipients")
    if not isinstance(recipients, dict):
        raise _bad_request("'recipients' is required.")
    to = _addresses(recipients, "to")
    if not to:
        raise _bad_request("'recipients.to' must list at least one address.")
    cc, bcc = _addresses(recipients, "cc"), _addresses(recipients, "bcc")
    content = body.get("content")
    if not isinstance(content, dict):
        raise _bad_request("'content' is required.")
    subject, plain_text, html = content.get("subject"), content.get("plainText"), content.get("html")
    if not isinstance(subject, str) or not subject:
        raise _bad_request("'content.subject' is required.")
    plain_text = plain_text if isinstance(plain_text, str) and plain_text else None
    html = html if isinstance(html, str) and html else None
    if plain_text is None and html is None:
        raise _bad_request("'content' needs 'plainText' or 'html'.")
    return sender, to, cc, bcc, subject, plain_text, html


# ---- HTTP ----

acs_simulator_key = web.AppKey("acs_simulator", AcsSimulator)


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json", headers=headers)


async def _authenticated(request: web.Request) -> tuple[AcsSimulator, bytes]:
    """The simulator and the raw body, once the request's signature and api-version check out."""
    sim = request.app[acs_simulator_key]
    body = await request.read()
    # The SDKs sign the path and query as sent (unquoted), so compare with the raw request line.
    sim.check_auth(request.method, request.raw_path, request.headers, body)
    if not request.query.get("api-version"):
        raise AcsError(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
    return sim, body


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _bad_request("The request body is not valid JSON.") from None


async def _send_sms(request: web.Request) -> web.Response:
    try:
        sim, body = await _authenticated(request)
        return _json(sim.send_sms(_parse(body)), status=202)
    except AcsError as error:
        return error.response()


def _operation_headers(request: web.Request, record: EmailRecord) -> dict[str, str]:
    version = request.query["api-version"]
    # Absolute, on the host the client called: the SDK polls this URL through the same signed pipeline.
    location = f"{request.scheme}://{request.host}/emails/operations/{record.id}?api-version={version}"
    headers = {"Operation-Location": location, "operation-id": str(record.id)}
    if request.app[acs_simulator_key].config.retry_after_s is not None:
        headers["Retry-After"] = str(request.app[acs_simulator_key].config.retry_after_s)
    return headers


async def _send_email(request: web.Request) -> web.Response:
    try:
        sim, body = await _authenticated(request)
        record = sim.send_email(_parse(body), request.headers.get("Operation-Id") or None)
    except AcsError as error:
        return error.response()
    return _json(record.operation(), status=202, headers=_operation_headers(request, record))


async def _email_operation(request: web.Request) -> web.Response:
    try:
        sim, _ = await _authenticated(request)
        record = sim.poll_email(request.match_info["operation_id"])
    except AcsError as error:
        return error.response()
    headers = _operation_headers(request, record) if record.status == "Running" else None
    return _json(record.operation(), headers=headers)


async def _sms_log(request: web.Request) -> web.Response:
    return _json([record.as_json() for record in request.app[acs_simulator_key].sms])


async def _email_log(request: web.Request) -> web.Response:
    return _json([record.as_json() for record in request.app[acs_simulator_key].emails])


async def _reset(request: web.Request) -> web.Response:
    request.app[acs_simulator_key].reset()
    return _json({"reset": True})


def add_acs_routes(app: web.Application, config: AcsSimConfig) -> None:
    """Install the ACS SMS and Email simulator on ``app`` (its paths collide with no other simulator)."""
    app[acs_simulator_key] = AcsSimulator(config)
    app.router.add_post(SMS_PATH, _send_sms)
    app.router.add_post(EMAIL_SEND_PATH, _send_email)
    app.router.add_get(EMAIL_OPERATION_PATH, _email_operation)
    app.router.add_get("/sim/acs/sms", _sms_log)
    app.router.add_get("/sim/acs/emails", _email_log)
    app.router.add_post("/sim/acs/reset", _reset)


def create_acs_app(config: AcsSimConfig) -> web.Application:
    """Build a stand-alone ACS simulator app; no I/O until it starts."""
    app = web.Application()
    add_acs_routes(app, config)
    return app
