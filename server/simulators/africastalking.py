"""A loopback simulator of Africa's Talking messaging, speaking the wire format of
``shared/reference/africastalking.md`` (§4, §5): form-encoded requests with an ``apiKey``
header, HTTP 201 whatever happened to the recipients, a per-recipient ``statusCode``,
``"messageId": "None"`` and ``"cost": "0"`` for a refused number, ``InvalidSenderId`` as a
201 with an empty ``Recipients``, and form-encoded delivery reports and inbound SMS.

Endpoints (paths as on ``api.africastalking.com``)::

    POST /version1/messaging      send (the SDK's ``SMS.send``): username, to, message, from, ...
    GET  /version1/messaging      fetch inbound (``SMS.fetch_messages``): username, lastReceivedId
    POST /sim/at/inbound          test-only: a learner texts us, JSON {"from", "text", "to"?}
    GET  /sim/at/messages         test-only: every outbound message, one row per recipient
    GET  /sim/at/deliveries       test-only: every callback attempt (reports and inbound)
    POST /sim/at/reset            test-only: forget all state, reseed

A wrong or missing ``apiKey`` or ``username`` is HTTP 401 with AT's plain-text body. A request
without ``Accept: application/json`` is refused with 406: real AT would answer XML, which a
client forgetting the header could not parse in production, so the simulator makes it fail here.

Scripted per-recipient outcomes, by the last digit of the number (0-5 succeed, so the demo
phones ``+254700000001..3`` and the tests' phones work):

=====  ==========  ====================  =====================================================
digit  statusCode  status                behaviour
=====  ==========  ====================  =====================================================
0-5    102         Success               charged; delivery reports "Sent", then "Success"
6      403         InvalidPhoneNumber    refused, never worth retrying
7      406         UserInBlacklist       the learner opted out; never retry
8      500         InternalServerError   refused; retryable
9      405         InsufficientBalance   refused; an operator must top up
=====  ==========  ====================  =====================================================

A number that is not E.164 (``+`` and 8-15 digits) is ``403 InvalidPhoneNumber`` whatever its
digit; ``AtSimConfig.number_outcomes`` overrides the table per number. Refused recipients get
no delivery report: AT has no message to report on. A number in
``AtSimConfig.delivery_failures`` is accepted, then reported ``Failed`` with that
``failureReason`` (e.g. ``UserIsInactive``, ``DeliveryFailure``): the way a valid-looking send
still fails.

Cost is ``KES 0.8000`` per part per accepted recipient (the reference's 2023 anchor); parts come
from ``lms_domain.notifications.gsm``. The summary is ``Sent to N/M Total Cost: KES X Message
parts: P``, or ``Sent to 0/M Total Cost: 0`` when nothing was accepted (as AT answers it).

Callbacks (form-encoded, as AT posts them) go out in the background through the shared
``CallbackDispatcher``, each attempt logged with the HTTP status the receiver answered; a
receiver that is down or answers non-2xx is logged and recorded, never retried. Fault knob:
``duplicate_reports`` (and ``duplicate_inbound``) is the probability that a callback is posted
twice; 1.0 duplicates every one, and the choice is drawn from an RNG seeded by ``seed``.

Dates in the inbound form and in fetched messages are ``YYYY-MM-DD HH:MM:SS`` in UTC from the
config clock (inferred: the reference does not give AT's format or time zone). Inbound ids are
increasing integers, which is what ``lastReceivedId`` compares.
"""

from __future__ import annotations

import json
import logging
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from lms_domain.notifications.gsm import sms_segments
from lms_domain.phones import Network, network_of
from server.simulators.faults import CallbackDispatcher, CallbackFaults, DeliveryLog, DispatchFaults, _Job

log = logging.getLogger("somo.simulators.africastalking")

MESSAGING_PATH = "/version1/messaging"
AUTH_FAILED_BODY = "The supplied authentication is invalid"
COST_PER_PART = Decimal("0.8000")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
# AT's MCC+MNC network codes (reference §1.2); 99999 is AT's own sandbox network "Athena".
NETWORK_CODES: dict[Network, str] = {
    Network.SAFARICOM: "63902",
    Network.AIRTEL: "63903",
    Network.TELKOM: "63907",
    Network.OTHER: "99999",
}


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    """What AT answers for one recipient of a send."""

    status_code: int = 102
    status: str = "Success"

    @property
    def accepted(self) -> bool:
        return self.status_code in (100, 101, 102)


SUCCESS = RecipientOutcome()
INVALID_PHONE = RecipientOutcome(403, "InvalidPhoneNumber")
DIGIT_OUTCOMES: dict[str, RecipientOutcome] = {
    **dict.fromkeys("012345", SUCCESS),
    "6": INVALID_PHONE,
    "7": RecipientOutcome(406, "UserInBlacklist"),
    "8": RecipientOutcome(500, "InternalServerError"),
    "9": RecipientOutcome(405, "InsufficientBalance"),
}


def _system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AtSimConfig:
    """Everything a simulator instance needs; all state lives on the ``AtSimulator``."""

    username: str = "sandbox"
    api_key: str = "sim-at-api-key"
    sender_ids: tuple[str, ...] = ()  # the alphanumeric sender ids / shortcodes AT approved
    delivery_report_url: str | None = None  # the app's delivery-report callback (a dashboard setting)
    inbound_url: str | None = None  # the shortcode's inbound-SMS callback (a dashboard setting)
    duplicate_reports: float = 0.0  # chance each delivery report is posted twice
    duplicate_inbound: float = 0.0  # chance each inbound SMS is posted twice
    seed: int = 0
    shortcode: str = "20880"  # the "to" of inbound SMS when the test does not say
    clock: Callable[[], datetime] = _system_clock
    sent_report_ms: int = 0  # "Sent" this long after the send
    final_report_ms: int = 20  # "Success"/"Failed" this long after the send
    number_outcomes: Mapping[str, RecipientOutcome] = field(default_factory=dict)
    delivery_failures: Mapping[str, str] = field(default_factory=dict)  # number -> failureReason
    dispatch_faults: DispatchFaults = field(default_factory=DispatchFaults)
    callback_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for chance in (self.duplicate_reports, self.duplicate_inbound):
            if not 0.0 <= chance <= 1.0:
                raise ValueError("duplicate_reports and duplicate_inbound are probabilities in [0, 1]")


@dataclass(slots=True)
class OutboundMessage:
    """One recipient of one send, as the simulator remembers it."""

    to: str
    message: str
    sender: str | None
    parts: int
    message_id: str | None
    status_code: int
    status: str
    cost: str
    sent_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The form served by ``GET /sim/at/messages``."""
        return {
            "to": self.to,
            "message": self.message,
            "from": self.sender,
            "parts": self.parts,
            "messageId": self.message_id,
            "status": self.status,
            "statusCode": self.status_code,
            "cost": self.cost,
            "sentAt": self.sent_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """An SMS a learner sent to our shortcode."""

    id: int
    link_id: str
    sender: str
    to: str
    text: str
    date: str
    network_code: str

    def form(self) -> dict[str, str]:
        """The form AT posts to the inbound callback."""
        return {
            "from": self.sender,
            "to": self.to,
            "text": self.text,
            "date": self.date,
            "id": str(self.id),
            "linkId": self.link_id,
            "networkCode": self.network_code,
        }

    def fetched(self) -> dict[str, Any]:
        """The entry ``fetch_messages`` returns (the docs' sample shows ``id`` as a number)."""
        return {
            "linkId": self.link_id,
            "text": self.text,
            "to": self.to,
            "id": self.id,
            "date": self.date,
            "from": self.sender,
        }


class SimRequestError(Exception):
    """A request AT would refuse as a whole: an HTTP status with a plain-text body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class FormCallbackDispatcher(CallbackDispatcher):
    """The shared dispatcher (faults, ordering, drain, log), posting form-encoded bodies as AT does.

    ``CallbackDispatcher`` posts JSON (Daraja, Airtel); only the sending step differs here.
    """

    async def _send(self, session: aiohttp.ClientSession, job: _Job) -> None:
        attempt = self.log.record(self._clock(), job.url, job.key, job.kind, job.body)
        if job.drop:
            attempt.dropped = True
            self._in_flight -= 1
            return
        try:
            form = {name: str(value) for name, value in job.body.items()}
            async with session.post(job.url, data=form, timeout=self._timeout) as response:
                await response.read()
                attempt.status = response.status
            if not 200 <= response.status < 300:
                # AT would keep retrying for ~10 minutes (reference §4.3); the simulator records it.
                log.warning("callback %s answered HTTP %s", job.url, response.status, extra={"key": job.key})
        except (aiohttp.ClientError, TimeoutError) as exc:
            attempt.error = f"{type(exc).__name__}: {exc}"
            log.warning("callback %s failed: %s", job.url, attempt.error, extra={"key": job.key})
        finally:
            self._in_flight -= 1


class AtSimulator:
    """The simulator's state: sent messages, inbound messages, seeded RNGs and the dispatcher."""

    def __init__(self, config: AtSimConfig) -> None:
        self.config = config
        self.log = DeliveryLog()
        self.dispatcher = FormCallbackDispatcher(
            rng=random.Random(),  # noqa: S311 - seeded for determinism; nothing here is secret
            clock=config.clock,
            faults=config.dispatch_faults,
            log=self.log,
            timeout_s=config.callback_timeout_s,
        )
        self.messages: list[OutboundMessage] = []
        self.inbound: list[InboundMessage] = []
        self._ids = random.Random()  # noqa: S311 - message ids only need to look like AT's
        self._duplicates = random.Random()  # noqa: S311 - a seeded fault schedule
        self.reset()

    def reset(self) -> None:
        """Back to the state of a fresh instance: same seed, so the same ids and faults again."""
        seed = self.config.seed
        self._ids.seed(f"at:{seed}:ids")
        self._duplicates.seed(f"at:{seed}:duplicates")
        self.dispatcher.reset(f"at:{seed}:faults")
        self.log.clear()
        self.messages.clear()
        self.inbound.clear()

    # ---- auth ----

    def check_auth(self, api_key: str | None, username: str | None) -> None:
        """Raise AT's 401 unless both the header key and the username are ours."""
        if api_key != self.config.api_key or username != self.config.username:
            raise SimRequestError(401, AUTH_FAILED_BODY)

    # ---- send ----

    def _message_id(self) -> str:
        return f"ATXid_{self._ids.getrandbits(128):032x}"

    def _outcome(self, number: str) -> RecipientOutcome:
        if number in self.config.number_outcomes:
            return self.config.number_outcomes[number]
        if not _E164.match(number):
            return INVALID_PHONE
        return DIGIT_OUTCOMES[number[-1]]

    def send(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Handle one bulk send; the answer is always 201 once the request itself is valid."""
        to, message = form.get("to", ""), form.get("message", "")
        if not to or not message:
            missing = "to" if not to else "message"
            raise SimRequestError(400, f"Request is missing required form field '{missing}'")
        numbers = [number.strip() for number in to.split(",") if number.strip()]
        sender = form.get("from") or None
        parts = sms_segments(message).parts
        now = self.config.clock()
        if sender is not None and sender not in self.config.sender_ids:
            for number in numbers:
                self.messages.append(
                    OutboundMessage(number, message, sender, parts, None, 402, "InvalidSenderId", "0", now)
                )
            return {"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}}
        recipients: list[dict[str, Any]] = []
        total = Decimal(0)
        for number in numbers:
            outcome = self._outcome(number)
            if outcome.accepted:
                cost = COST_PER_PART * parts
                total += cost
                message_id: str | None = self._message_id()
                cost_text = f"KES {cost:.4f}"
            else:
                message_id, cost_text = None, "0"
            self.messages.append(
                OutboundMessage(
                    number, message, sender, parts, message_id, outcome.status_code, outcome.status, cost_text, now
                )
            )
            recipients.append(
                {
                    "cost": cost_text,
                    "messageId": message_id or "None",
                    "number": number,
                    "status": outcome.status,
                    "statusCode": outcome.status_code,
                }
            )
            if message_id is not None:
                self._report(message_id, number)
        accepted = sum(1 for r in recipients if r["messageId"] != "None")
        if accepted:
            summary = f"Sent to {accepted}/{len(numbers)} Total Cost: KES {total:.4f} Message parts: {parts}"
        else:
            summary = f"Sent to 0/{len(numbers)} Total Cost: 0"
        return {"SMSMessageData": {"Message": summary, "Recipients": recipients}}

    def _faults(self, chance: float) -> CallbackFaults:
        # Drawn even at 0.0 or 1.0, so changing the knob never shifts the rest of the schedule.
        return CallbackFaults(copies=2 if self._duplicates.random() < chance else 1)

    def _report(self, message_id: str, number: str) -> None:
        """Queue the delivery reports of an accepted message: "Sent", then the final status."""
        url = self.config.delivery_report_url
        if url is None:
            return
        base = {"id": message_id, "phoneNumber": number, "networkCode": NETWORK_CODES[network_of(number)]}
        failure = self.config.delivery_failures.get(number)
        final = {"status": "Failed", "failureReason": failure} if failure else {"status": "Success"}
        for after_ms, fields in (
            (self.config.sent_report_ms, {"status": "Sent"}),
            (self.config.final_report_ms, final),
        ):
            self.dispatcher.submit(
                url=url,
                key=message_id,
                body={**base, **fields, "retryCount": "0"},
                faults=self._faults(self.config.duplicate_reports),
                after_ms=after_ms,
            )

    # ---- inbound ----

    def receive(self, sender: str, text: str, to: str | None) -> InboundMessage:
        """A learner's SMS reaches AT: remember it for fetch and post it to the inbound callback."""
        if not _E164.match(sender):
            raise SimRequestError(400, "from must be an E.164 number such as +254700000001")
        message = InboundMessage(
            id=len(self.inbound) + 1,
            link_id=str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
            sender=sender,
            to=to or self.config.shortcode,
            text=text,
            date=self.config.clock().astimezone(UTC).strftime(DATE_FORMAT),
            network_code=NETWORK_CODES[network_of(sender)],
        )
        self.inbound.append(message)
        if self.config.inbound_url is not None:
            self.dispatcher.submit(
                url=self.config.inbound_url,
                key=str(message.id),
                body=message.form(),
                faults=self._faults(self.config.duplicate_inbound),
            )
        return message

    def fetch(self, last_received_id: str | None) -> dict[str, Any]:
        """``fetch_messages``: every inbound message after ``last_received_id`` (0 or none: all)."""
        text = (last_received_id or "0").strip()
        if not text.isdigit():
            raise SimRequestError(400, "lastReceivedId must be a number")
        after = int(text)
        return {"SMSMessageData": {"Messages": [m.fetched() for m in self.inbound if m.id > after]}}


# ---- HTTP ----

at_simulator_key = web.AppKey("at_simulator", AtSimulator)


def _json(body: Any, status: int = 200) -> web.Response:
    # Exactly "application/json", no charset: the SDK parses the body only on an exact match.
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def _check_accept(request: web.Request) -> None:
    if "application/json" not in request.headers.get("Accept", ""):
        raise SimRequestError(406, "send Accept: application/json (Africa's Talking answers XML otherwise)")


async def _send(request: web.Request) -> web.Response:
    sim = request.app[at_simulator_key]
    form = await request.post()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    try:
        sim.check_auth(request.headers.get("apiKey"), fields.get("username"))
        _check_accept(request)
        return _json(sim.send(fields), status=201)
    except SimRequestError as error:
        return web.Response(status=error.status, text=error.text)


async def _fetch(request: web.Request) -> web.Response:
    sim = request.app[at_simulator_key]
    try:
        sim.check_auth(request.headers.get("apiKey"), request.query.get("username"))
        _check_accept(request)
        return _json(sim.fetch(request.query.get("lastReceivedId")))
    except SimRequestError as error:
        return web.Response(status=error.status, text=error.text)


async def _inbound(request: web.Request) -> web.Response:
    sim = request.app[at_simulator_key]
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("from"), str) or not isinstance(body.get("text"), str):
        return _json({"error": 'send JSON {"from": "+2547...", "text": "...", "to": optional}'}, status=400)
    to = body.get("to")
    try:
        message = sim.receive(body["from"], body["text"], to if isinstance(to, str) and to else None)
    except SimRequestError as error:
        return _json({"error": error.text}, status=error.status)
    return _json({"id": message.id, "linkId": message.link_id, "date": message.date})


async def _messages(request: web.Request) -> web.Response:
    return _json([message.as_json() for message in request.app[at_simulator_key].messages])


async def _deliveries(request: web.Request) -> web.Response:
    return _json([attempt.as_json() for attempt in request.app[at_simulator_key].log.attempts])


async def _reset(request: web.Request) -> web.Response:
    request.app[at_simulator_key].reset()
    return _json({"reset": True})


async def _dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    """Own the outbound HTTP session and the callback worker for the app's lifetime."""
    dispatcher = app[at_simulator_key].dispatcher
    async with aiohttp.ClientSession() as session, dispatcher.running(session, name="at-callbacks"):
        yield


def add_at_routes(app: web.Application, config: AtSimConfig) -> None:
    """Install the Africa's Talking simulator on ``app`` (its paths collide with no other simulator)."""
    app[at_simulator_key] = AtSimulator(config)
    app.router.add_post(MESSAGING_PATH, _send)
    app.router.add_get(MESSAGING_PATH, _fetch)
    app.router.add_post("/sim/at/inbound", _inbound)
    app.router.add_get("/sim/at/messages", _messages)
    app.router.add_get("/sim/at/deliveries", _deliveries)
    app.router.add_post("/sim/at/reset", _reset)
    app.cleanup_ctx.append(_dispatcher_ctx)


def create_at_app(config: AtSimConfig) -> web.Application:
    """Build the Africa's Talking simulator app; no I/O until it starts."""
    app = web.Application()
    add_at_routes(app, config)
    return app
