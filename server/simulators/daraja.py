"""A loopback simulator of Safaricom Daraja (M-Pesa), speaking the real wire format.

The shapes, codes and quirks follow ``shared/reference/daraja.md``: ``expires_in`` as a string,
``ResultCode`` an integer in callbacks but a string in STK Query, no ``CallbackMetadata`` on
failure, the ``Balance`` item without a value, the "successsfully" typo, and the pending answer
to STK Query given as HTTP 500 ``500.001.1001``.

Endpoints (paths as on ``api.safaricom.co.ke``)::

    GET  /oauth/v1/generate?grant_type=client_credentials   Basic auth -> access token
    POST /mpesa/stkpush/v1/processrequest                   STK Push (M-Pesa Express)
    POST /mpesa/stkpushquery/v1/query                       STK Query
    GET  /sim/deliveries                                     test-only: every callback attempt
    POST /sim/reset                                          test-only: forget all state, reseed

C2B (register/simulate), Transaction Status, Reversal and Pull are not served yet; they slot in
as further entries of ``_PROTECTED_ROUTES`` (bearer check and JSON parsing come for free) and
submit their asynchronous results through the same ``CallbackDispatcher``.

Scripted STK outcomes, by the last digit of ``PhoneNumber`` (the phone that gets the prompt):

=====  ==========  ==================================================  ==================
digit  ResultCode  ResultDesc                                          callback
=====  ==========  ==================================================  ==================
0      0           The service request is processed successfully.      yes, with metadata
1      0           (success)                                           yes, with metadata
2      1032        Request cancelled by user                           yes
3      1037        DS timeout user cannot be reached.                  yes
4      1           The balance is insufficient for the transaction.    yes
5      2001        The initiator information is invalid.               yes
6      0           (success, but the callback is lost)                 **none**; Query only
7      1019        Transaction has expired.                            yes
8      1001        Unable to lock subscriber / transaction in progress yes
9      0           (success; the sandbox MSISDN 254708374149)          yes, with metadata
=====  ==========  ==================================================  ==================

Overrides, strongest first:

* header ``X-Sim-Outcome: <ResultCode>`` (any code of ``RESULT_DESCS``) or ``none`` (success with
  no callback), per request;
* ``DarajaSimConfig.msisdn_outcomes`` per phone;
* rule ``17`` ("Rule limited.") when the same phone was pushed the same amount less than two
  minutes earlier (by the config clock), and ``2028`` when a paybill push names another PartyB;
* the digit table above.

Callback faults (see ``faults.py``): header ``X-Sim-Faults: drop;delay=200;dup=3;straggle=300;
contradict=100`` per request, else ``DarajaSimConfig.msisdn_faults`` per phone, else
``DarajaSimConfig.callback_faults``. A contradiction flips a success to ``1032`` and a failure
to a late success (with metadata); STK Query keeps answering the first result, which is the
simulator's truth.

Time: the config clock stamps IDs, receipts, ``TransactionDate``, tokens and the delivery log;
the event loop's clock paces processing (``processing_ms``) and callback delays, so a test can
pin wall time without slowing down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import random
import re
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from server.simulators.faults import (
    FAULT_HEADER,
    CallbackDispatcher,
    CallbackFaults,
    DeliveryLog,
    DispatchFaults,
    FaultSpecError,
    parse_faults,
)

NAIROBI = ZoneInfo("Africa/Nairobi")
OUTCOME_HEADER = "X-Sim-Outcome"
SANDBOX_SHORTCODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
TOKEN_LIFETIME = timedelta(seconds=3600)
MAX_AMOUNT = 250_000
RULE_17_WINDOW = timedelta(minutes=2)

RESULT_DESCS: dict[int | str, str] = {
    0: "The service request is processed successfully.",
    1: "The balance is insufficient for the transaction.",
    2: "Declined due to limit rule.",
    3: "Declined due to limit rule: greater than the maximum transaction amount.",
    4: "Declined due to limit rule: would exceed daily transfer limit.",
    8: "Declined due to limit rule: would exceed the maximum balance.",
    17: "Rule limited.",
    26: "System busy",
    1001: "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    1019: "Transaction has expired.",
    1025: "An error occurred while sending a push request.",
    9999: "Error sending push",
    1031: "Request cancelled by user",
    # The callback sample has no final period here, unlike the ResultCode table.
    1032: "Request cancelled by user",
    1037: "DS timeout user cannot be reached.",
    2001: "The initiator information is invalid.",
    2028: "The request is not permitted according to product assignment.",
    8006: "The security credential is locked.",
    "SFC_IC0003": "The operator does not exist.",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the customer's phone does with a prompt: a ResultCode, and whether a callback is sent."""

    result_code: int | str
    callback: bool = True

    @property
    def succeeded(self) -> bool:
        return self.result_code == 0


DIGIT_OUTCOMES: dict[str, Outcome] = {
    "0": Outcome(0),
    "1": Outcome(0),
    "2": Outcome(1032),
    "3": Outcome(1037),
    "4": Outcome(1),
    "5": Outcome(2001),
    "6": Outcome(0, callback=False),
    "7": Outcome(1019),
    "8": Outcome(1001),
    "9": Outcome(0),
}


def _system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DarajaSimConfig:
    """Everything a simulator instance needs; all state lives on the ``DarajaSimulator``."""

    credentials: Mapping[str, str] = field(default_factory=lambda: {"sim-consumer-key": "sim-consumer-secret"})
    passkeys: Mapping[str, str] = field(default_factory=lambda: {SANDBOX_SHORTCODE: SANDBOX_PASSKEY})
    seed: int = 0
    clock: Callable[[], datetime] = _system_clock
    processing_ms: int = 50
    callback_faults: CallbackFaults = field(default_factory=CallbackFaults)
    dispatch_faults: DispatchFaults = field(default_factory=DispatchFaults)
    msisdn_faults: Mapping[str, CallbackFaults] = field(default_factory=dict)
    msisdn_outcomes: Mapping[str, Outcome] = field(default_factory=dict)
    expires_in_as_number: bool = False
    invalidate_previous_token: bool = True
    require_https_callback: bool = False
    enforce_rule_17: bool = True
    balance_item: bool = True
    callback_timeout_s: float = 5.0


@dataclass(slots=True)
class StkTransaction:
    """One accepted STK Push, as the simulator remembers it for callbacks and Query."""

    merchant_request_id: str
    checkout_request_id: str
    shortcode: str
    phone: str
    amount: int
    created_at: datetime
    final_at: float  # event-loop time at which the customer has answered the prompt
    outcome: Outcome
    receipt: str | None


class DarajaError(Exception):
    """A Daraja error answer: ``{"requestId", "errorCode", "errorMessage"}`` with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


def bad_request(field_name: str) -> DarajaError:
    """The ``400.002.02`` answer Daraja gives for any malformed field."""
    return DarajaError(400, "400.002.02", f"Bad Request - Invalid {field_name}")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """``base64(BusinessShortCode + Passkey + Timestamp)``, the STK Password scheme."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


class DarajaSimulator:
    """The simulator's state: tokens, STK transactions, the seeded RNG and the callback dispatcher."""

    def __init__(self, config: DarajaSimConfig) -> None:
        self.config = config
        self.log = DeliveryLog()
        self.dispatcher = CallbackDispatcher(
            rng=random.Random(),  # noqa: S311 - seeded for determinism; nothing here is secret
            clock=config.clock,
            faults=config.dispatch_faults,
            log=self.log,
            timeout_s=config.callback_timeout_s,
        )
        self.tokens: dict[str, tuple[str, datetime]] = {}  # token -> (consumer key, expiry)
        self.transactions: dict[str, StkTransaction] = {}
        self._rng = random.Random()  # noqa: S311 - seeded for determinism; tokens guard nothing real
        self.reset()

    def reset(self) -> None:
        """Back to the state of a fresh instance: same seed, so the same IDs again."""
        self._rng.seed(f"daraja:{self.config.seed}:ids")
        self.dispatcher.reset(f"daraja:{self.config.seed}:faults")
        self.log.clear()
        self.tokens.clear()
        self.transactions.clear()

    # ---- ids shaped like the real ones (reference §3.2, §4.4) ----

    def _hex(self, n: int) -> str:
        return "".join(self._rng.choice("0123456789abcdef") for _ in range(n))

    def request_id(self) -> str:
        """A GUID fragment plus digits, like ``1c5b-4ba8-815c-ac45c57a3db01495926``."""
        return f"{self._hex(4)}-{self._hex(4)}-{self._hex(4)}-{self._hex(12)}{self._rng.randrange(10**6, 10**7)}"

    def _checkout_request_id(self, now: datetime, phone: str) -> str:
        local = now.astimezone(NAIROBI)
        return f"ws_CO_{local:%d%m%Y%H%M%S}{local.microsecond // 1000:03d}{phone[3:]}"

    def _unique_checkout_request_id(self, now: datetime, phone: str) -> str:
        # The real ID is time plus phone; a pinned clock would repeat it, so step a millisecond.
        at = now
        while (checkout_id := self._checkout_request_id(at, phone)) in self.transactions:
            at += timedelta(milliseconds=1)
        return checkout_id

    def _receipt(self, now: datetime) -> str:
        # First letter tracks the year (L = 2017 ... U = 2026), second the month (A = Jan).
        local = now.astimezone(NAIROBI)
        year = string.ascii_uppercase[(ord("L") - ord("A") + local.year - 2017) % 26]
        month = string.ascii_uppercase[local.month - 1]
        alphabet = string.ascii_uppercase + string.digits
        return year + month + "".join(self._rng.choice(alphabet) for _ in range(8))

    def _token(self) -> str:
        return "".join(self._rng.choice(string.ascii_letters + string.digits) for _ in range(28))

    # ---- OAuth ----

    def issue_token(self, consumer_key: str) -> str:
        """Mint a token; by default the previous token of the same app stops working (Daraja FAQ)."""
        if self.config.invalidate_previous_token:
            for token, (owner, _) in list(self.tokens.items()):
                if owner == consumer_key:
                    del self.tokens[token]
        token = self._token()
        self.tokens[token] = (consumer_key, self.config.clock() + TOKEN_LIFETIME)
        return token

    def check_bearer(self, header: str | None) -> None:
        """Raise the real answer for a missing, malformed, unknown or expired bearer token."""
        if not header:
            raise DarajaError(404, "404.001.04", "Invalid Authentication Header")
        scheme, _, token = header.partition(" ")
        entry = self.tokens.get(token.strip()) if scheme == "Bearer" else None
        if entry is None or self.config.clock() >= entry[1]:
            raise DarajaError(404, "404.001.03", "Invalid Access Token")

    # ---- STK ----

    def _check_credentials(self, body: Mapping[str, Any], shortcode: str, timestamp: str) -> None:
        passkey = self.config.passkeys.get(shortcode)
        if passkey is None:
            raise DarajaError(500, "500.001.1001", "Merchant does not exist")
        if body.get("Password") != stk_password(shortcode, passkey, timestamp):
            raise DarajaError(500, "500.001.1001", "[MerchantValidate] - Wrong credentials")

    def push(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, str]:
        """Validate an STK Push as Daraja does, record it and schedule its callback."""
        request = validate_push(body, require_https=self.config.require_https_callback)
        self._check_credentials(body, request.shortcode, request.timestamp)
        outcome = self._outcome(request, headers.get(OUTCOME_HEADER))
        faults = self._faults(request.phone, headers.get(FAULT_HEADER))
        loop = asyncio.get_running_loop()
        for earlier in self.transactions.values():
            if earlier.phone == request.phone and loop.time() < earlier.final_at:
                raise DarajaError(
                    500,
                    "500.001.1001",
                    "Unable to lock subscriber, a transaction is already in process for the current subscriber",
                )
        now = self.config.clock()
        transaction = StkTransaction(
            merchant_request_id=self.request_id(),
            checkout_request_id=self._unique_checkout_request_id(now, request.phone),
            shortcode=request.shortcode,
            phone=request.phone,
            amount=request.amount,
            created_at=now,
            final_at=loop.time() + self.config.processing_ms / 1000,
            outcome=outcome,
            receipt=self._receipt(now) if outcome.succeeded else None,
        )
        self.transactions[transaction.checkout_request_id] = transaction
        if outcome.callback:
            result = self._callback_body(transaction, outcome, transaction.receipt, now)
            contradicting = Outcome(1032) if outcome.succeeded else Outcome(0)
            contradiction = None
            if faults.contradict_after_ms is not None:
                late_receipt = self._receipt(now) if contradicting.succeeded else None
                contradiction = self._callback_body(transaction, contradicting, late_receipt, now)
            self.dispatcher.submit(
                url=request.callback_url,
                key=transaction.checkout_request_id,
                body=result,
                faults=faults,
                after_ms=self.config.processing_ms,
                contradiction=contradiction,
            )
        return {
            "MerchantRequestID": transaction.merchant_request_id,
            "CheckoutRequestID": transaction.checkout_request_id,
            "ResponseCode": "0",
            "ResponseDescription": "Success. Request accepted for processing",
            "CustomerMessage": "Success. Request accepted for processing",
        }

    def _outcome(self, request: PushRequest, override: str | None) -> Outcome:
        if override is not None:
            return parse_outcome(override)
        if request.phone in self.config.msisdn_outcomes:
            return self.config.msisdn_outcomes[request.phone]
        if request.transaction_type == "CustomerPayBillOnline" and request.party_b != request.shortcode:
            return Outcome(2028)
        if self.config.enforce_rule_17:
            since = self.config.clock() - RULE_17_WINDOW
            for earlier in self.transactions.values():
                if earlier.phone == request.phone and earlier.amount == request.amount and earlier.created_at > since:
                    return Outcome(17)
        return DIGIT_OUTCOMES[request.phone[-1]]

    def _faults(self, phone: str, header: str | None) -> CallbackFaults:
        base = self.config.msisdn_faults.get(phone, self.config.callback_faults)
        if header is None:
            return base
        try:
            return parse_faults(header, base)
        except FaultSpecError as exc:
            raise DarajaError(400, "sim.faults", str(exc)) from exc

    def _callback_body(
        self, transaction: StkTransaction, outcome: Outcome, receipt: str | None, now: datetime
    ) -> dict[str, Any]:
        callback: dict[str, Any] = {
            "MerchantRequestID": transaction.merchant_request_id,
            "CheckoutRequestID": transaction.checkout_request_id,
            "ResultCode": outcome.result_code,
            "ResultDesc": RESULT_DESCS[outcome.result_code],
        }
        if outcome.succeeded:
            # Item order and the value-less Balance follow the production sample (reference §4.3).
            items: list[dict[str, Any]] = [
                {"Name": "Amount", "Value": transaction.amount},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
            ]
            if self.config.balance_item:
                items.append({"Name": "Balance"})
            paid_at = now + timedelta(milliseconds=self.config.processing_ms)
            items += [
                {"Name": "TransactionDate", "Value": int(f"{paid_at.astimezone(NAIROBI):%Y%m%d%H%M%S}")},
                {"Name": "PhoneNumber", "Value": int(transaction.phone)},
            ]
            callback["CallbackMetadata"] = {"Item": items}
        return {"Body": {"stkCallback": callback}}

    def query(self, body: Mapping[str, Any]) -> dict[str, str]:
        """Answer STK Query: HTTP 500 "being processed" until the customer has answered, then the result."""
        shortcode = _shortcode(body, max_digits=7)
        timestamp = _timestamp(body)
        checkout_id = body.get("CheckoutRequestID")
        if not isinstance(checkout_id, str) or not checkout_id:
            raise bad_request("CheckoutRequestID")
        self._check_credentials(body, shortcode, timestamp)
        transaction = self.transactions.get(checkout_id)
        if transaction is None or transaction.shortcode != shortcode:
            raise bad_request("CheckoutRequestID")
        if asyncio.get_running_loop().time() < transaction.final_at:
            raise DarajaError(500, "500.001.1001", "The transaction is being processed", request_id=checkout_id)
        code = transaction.outcome.result_code
        return {
            "ResponseCode": "0",
            # The typo is what production sends (reference §6, observed).
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": transaction.merchant_request_id,
            "CheckoutRequestID": transaction.checkout_request_id,
            "ResultCode": str(code),
            "ResultDesc": RESULT_DESCS[code],
        }


def parse_outcome(value: str) -> Outcome:
    """Parse ``X-Sim-Outcome``: a known ResultCode, or ``none`` for a success whose callback is lost."""
    value = value.strip()
    if value.lower() == "none":
        return Outcome(0, callback=False)
    code: int | str = int(value) if value.isdigit() else value
    if code not in RESULT_DESCS:
        raise DarajaError(400, "sim.outcome", f"unknown ResultCode {value!r} in {OUTCOME_HEADER}")
    return Outcome(code)


# ---- request validation, field by field in Daraja's order (reference §3.1) ----

MSISDN = re.compile(r"^254[17]\d{8}$")
TIMESTAMP = re.compile(r"^\d{14}$")
TRANSACTION_TYPES = ("CustomerPayBillOnline", "CustomerBuyGoodsOnline")


@dataclass(frozen=True, slots=True)
class PushRequest:
    """An STK Push body that passed field validation, with the type drift normalised."""

    shortcode: str
    timestamp: str
    transaction_type: str
    amount: int
    party_a: str
    party_b: str
    phone: str
    callback_url: str
    account_reference: str
    transaction_desc: str | None


def _digits(value: Any) -> str | None:
    """Daraja takes numeric fields as JSON numbers or strings alike; anything else is invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    return None


def _shortcode(body: Mapping[str, Any], *, max_digits: int) -> str:
    shortcode = _digits(body.get("BusinessShortCode"))
    if shortcode is None or not 5 <= len(shortcode) <= max_digits:
        raise bad_request("BusinessShortCode")
    return shortcode


def _timestamp(body: Mapping[str, Any]) -> str:
    if not isinstance(body.get("Password"), str) or not body["Password"]:
        raise bad_request("Password")
    timestamp = body.get("Timestamp")
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not isinstance(timestamp, str) or not TIMESTAMP.match(timestamp):
        raise bad_request("Timestamp")
    try:
        datetime.strptime(timestamp, "%Y%m%d%H%M%S")  # noqa: DTZ007 - only checks the calendar
    except ValueError:
        raise bad_request("Timestamp") from None
    return timestamp


def _msisdn(body: Mapping[str, Any], name: str) -> str:
    phone = _digits(body.get(name))
    if phone is None or not MSISDN.match(phone):
        raise bad_request(name)
    return phone


def _amount(value: Any) -> int:
    # Whole shillings only: 1.5, "1.5" and 1.0 are all "Invalid Amount" (reference §3.1).
    amount = _digits(value)
    if amount is None or not 1 <= int(amount) <= MAX_AMOUNT:
        raise bad_request("Amount")
    return int(amount)


def _callback_url(value: Any, *, require_https: bool) -> str:
    if not isinstance(value, str) or value != value.strip() or any(c.isspace() for c in value):
        raise bad_request("CallBackURL")
    parts = urlsplit(value)
    schemes = ("https",) if require_https else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        raise bad_request("CallBackURL")
    return value


def validate_push(body: Mapping[str, Any], *, require_https: bool) -> PushRequest:
    """Check an STK Push body, raising the first field's ``400.002.02`` as Daraja does."""
    shortcode = _shortcode(body, max_digits=6)
    timestamp = _timestamp(body)
    transaction_type = body.get("TransactionType")
    if transaction_type not in TRANSACTION_TYPES:
        raise bad_request("TransactionType")
    amount = _amount(body.get("Amount"))
    party_a = _msisdn(body, "PartyA")
    party_b = _digits(body.get("PartyB"))
    if party_b is None or not 5 <= len(party_b) <= 7:
        raise bad_request("PartyB")
    phone = _msisdn(body, "PhoneNumber")
    callback_url = _callback_url(body.get("CallBackURL"), require_https=require_https)
    reference = body.get("AccountReference")
    if not isinstance(reference, str) or not 1 <= len(reference) <= 12:
        raise bad_request("AccountReference")
    description = body.get("TransactionDesc")
    if description is not None and (not isinstance(description, str) or len(description) > 13):
        raise bad_request("TransactionDesc")
    return PushRequest(
        shortcode=shortcode,
        timestamp=timestamp,
        transaction_type=str(transaction_type),
        amount=amount,
        party_a=party_a,
        party_b=party_b,
        phone=phone,
        callback_url=callback_url,
        account_reference=reference,
        transaction_desc=description,
    )


# ---- HTTP ----

daraja_simulator_key = web.AppKey("daraja_simulator", DarajaSimulator)
dispatcher_task_key = web.AppKey("daraja_dispatcher_task", asyncio.Task[None])

Handler = Callable[[DarajaSimulator, Mapping[str, Any], web.Request], dict[str, str]]


def _error_response(sim: DarajaSimulator, error: DarajaError) -> web.Response:
    body = {"requestId": error.request_id or sim.request_id(), "errorCode": error.code, "errorMessage": error.message}
    return web.json_response(body, status=error.status)


async def _oauth(request: web.Request) -> web.Response:
    sim = request.app[daraja_simulator_key]
    try:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic" or not encoded:
            raise DarajaError(400, "400.008.01", "Invalid authentication type passed")
        if request.query.get("grant_type") != "client_credentials":
            raise DarajaError(400, "400.008.02", "Invalid grant type passed")
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key, secret = "", ""
        if not key or sim.config.credentials.get(key) != secret:
            # The reference documents no body for wrong credentials; reuse the auth-type error.
            raise DarajaError(400, "400.008.01", "Invalid authentication type passed")
    except DarajaError as error:
        return _error_response(sim, error)
    token = sim.issue_token(key)
    expires_in: int | str = 3599 if sim.config.expires_in_as_number else "3599"
    return web.json_response({"access_token": token, "expires_in": expires_in})


def _protected(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a business API: POST only, bearer token checked, JSON body parsed leniently."""

    async def endpoint(request: web.Request) -> web.Response:
        sim = request.app[daraja_simulator_key]
        try:
            if request.method != "POST":
                raise DarajaError(404, "404.001.04", "Invalid Authentication Header")
            sim.check_bearer(request.headers.get("Authorization"))
            try:
                parsed = json.loads(await request.read())
            except (json.JSONDecodeError, UnicodeDecodeError):
                parsed = None
            # A form-encoded body reads as no fields, so the first field is the one reported.
            body: Mapping[str, Any] = parsed if isinstance(parsed, dict) else {}
            return web.json_response(handler(sim, body, request))
        except DarajaError as error:
            return _error_response(sim, error)

    return endpoint


def _stk_push(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> dict[str, str]:
    return sim.push(body, request.headers)


def _stk_query(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> dict[str, str]:
    return sim.query(body)


_PROTECTED_ROUTES: dict[str, Handler] = {
    "/mpesa/stkpush/v1/processrequest": _stk_push,
    "/mpesa/stkpushquery/v1/query": _stk_query,
}


async def _deliveries(request: web.Request) -> web.Response:
    sim = request.app[daraja_simulator_key]
    return web.json_response([attempt.as_json() for attempt in sim.log.attempts])


async def _reset(request: web.Request) -> web.Response:
    request.app[daraja_simulator_key].reset()
    return web.json_response({"reset": True})


async def _dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    """Own the outbound HTTP session and the callback worker for the app's lifetime."""
    sim = app[daraja_simulator_key]
    async with aiohttp.ClientSession() as session:
        app[dispatcher_task_key] = asyncio.create_task(sim.dispatcher.run(session), name="daraja-callbacks")
        yield
        task = app[dispatcher_task_key]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_daraja_app(config: DarajaSimConfig) -> web.Application:
    """Build the Daraja simulator app; no I/O until it starts."""
    app = web.Application()
    app[daraja_simulator_key] = DarajaSimulator(config)
    app.router.add_get("/oauth/v1/generate", _oauth)
    for path, handler in _PROTECTED_ROUTES.items():
        app.router.add_route("*", path, _protected(handler))
    app.router.add_get("/sim/deliveries", _deliveries)
    app.router.add_post("/sim/reset", _reset)
    app.cleanup_ctx.append(_dispatcher_ctx)
    return app
