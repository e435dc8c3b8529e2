"""A loopback simulator of the Airtel Money Africa Open API (Kenya), speaking the wire format of
``shared/reference/airtel.md``: ``expires_in`` and ``status.code`` as strings, ``success`` false
under HTTP 200, a collection answer that means "initiated" (``DP00800001006``), ``airtel_money_id``
null until paid, and the callback URL configured once (portal-wide), not per request.

Endpoints (paths as on ``openapi.airtel.africa``; note the trailing slash on collection)::

    POST /auth/oauth2/token                 client credentials, JSON body or Basic auth -> token
    POST /merchant/v1/payments/             collection (USSD push); v2 also, with x-signature/x-key
    GET  /standard/v1/payments/{id}         enquiry by OUR transaction id: TIP -> (TA ->) TS/TF
    POST /standard/v1/payments/refund       refund by airtel_money_id (v2 path also served)
    GET  /sim/airtel/deliveries             test-only: every callback attempt
    POST /sim/airtel/reset                  test-only: forget all state, reseed
    GET  /sim/airtel/transactions           test-only: every collection, as provider truth

Every business call needs ``Authorization: Bearer``, ``X-Country`` and ``X-Currency``; the body
is validated as the reference says (9-digit MSISDN without country code, a positive whole
amount, country/currency matching the headers, a unique ``transaction.id``), answering with the
ROUTER/ESB codes of §7 inside Airtel's ``status`` envelope. Error HTTP statuses and OAuth error
bodies are not documented: 400 (validation), 401 (RFC 6749 shapes), 404 (``ESB000045``) here.

Scripted outcomes, by the last digit of the 9-digit ``subscriber.msisdn``:

=====  ======  ===============  =====================================================
digit  status  response_code    behaviour
=====  ======  ===============  =====================================================
0      TS      DP00800001001    paid; callback
1      TS      DP00800001001    paid; callback
2      TF      DP00800001002    incorrect PIN; callback
3      TF      DP00800001005    the customer did not enter the PIN; callback
4      TF      DP00800001007    not enough balance; callback
5      TF      DP00800001008    refused; callback
6      TS      DP00800001001    paid, but the callback is lost: enquiry only
7      TA->TS  DP00800001000    ambiguous for ``ambiguous_ms``, then paid; callback then
8      TF      DP00800001029    transaction expired; callback
9      TS      DP00800001001    paid; callback
=====  ======  ===============  =====================================================

Until ``processing_ms`` has passed (the customer has not answered) enquiry says ``TIP``.

Overrides, strongest first:

* header ``X-Sim-Outcome`` per request: ``TS``; ``none`` (paid, no callback); ``TF`` or
  ``TF:<DP code>``; a bare DP code; ``TA`` (ambiguous for ever, no callback); ``TA:<outcome>``
  (ambiguous for ``ambiguous_ms``, then ``<outcome>``); ``TIP`` (never finishes); ``TE``
  (expires, no callback). On refund it takes an ESB code, answered as that error;
* ``AirtelSimConfig.msisdn_outcomes`` per 9-digit MSISDN;
* amount rules: below ``min_amount`` fails ``DP00800001004``, above ``max_amount`` ``DP00800001003``;
* the digit table above.

Callbacks go to ``AirtelSimConfig.callback_url`` (the portal setting), or to the per-request
test header ``X-Sim-Callback-Url``; with neither, nothing is sent. With ``callback_auth`` the body
gets a top-level ``hash``: Base64 HMAC-SHA256 under ``callback_secret`` of the bytes chosen by
``hash_canonicalisation``: ``transaction_json`` (compact ``{"transaction":{...}}``, the
reference's choice) or ``raw_body`` (the body as posted, before the ``hash`` member is added).

Callback faults (see ``faults.py``): header ``X-Sim-Faults`` per request, else
``msisdn_faults``, else ``callback_faults``. A contradiction turns TS into a late TF
(``DP00800001008``) and TF into a late TS; enquiry keeps answering the first result, the
simulator's truth.

Time: the config clock stamps tokens, ids, messages and the logs; the event loop's clock paces
the customer (``processing_ms``, ``ambiguous_ms``) and callback delays.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import random
import string
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
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
CALLBACK_URL_HEADER = "X-Sim-Callback-Url"
OAUTH_PATH = "/auth/oauth2/token"
COLLECTION_PATHS = ("/merchant/v1/payments/", "/merchant/v2/payments/")
ENQUIRY_PATH = "/standard/v1/payments/{transaction_id}"
REFUND_PATHS = ("/standard/v1/payments/refund", "/standard/v2/payments/refund")

TxStatus = Literal["TS", "TF", "TA", "TIP", "TE"]
Canonicalisation = Literal["transaction_json", "raw_body"]

DP_MESSAGES: dict[str, str] = {
    "DP00800001000": "Transaction is ambiguous, please run a transaction enquiry",
    "DP00800001001": "Transaction is successful",
    "DP00800001002": "Incorrect PIN entered",
    "DP00800001003": "Exceeds withdrawal amount limit",
    "DP00800001004": "Invalid amount, below the minimum",
    "DP00800001005": "User didn't enter the PIN",
    "DP00800001006": "Transaction in pending state. Please check after sometime.",
    "DP00800001007": "Not enough balance",
    "DP00800001008": "Refused",
    "DP00800001009": "Do not honor",
    "DP00800001010": "Transaction not permitted to payee",
    "DP00800001024": "Transaction timed out",
    "DP00800001025": "Transaction not found",
    "DP00800001026": "Forbidden: x-signature and payload did not match",
    "DP00800001029": "Transaction expired",
}
ESB_MESSAGES: dict[str, str] = {
    "ESB000001": "Something went wrong.",
    "ESB000004": "An error occurred while initiating the payment.",
    "ESB000008": "Field validation error.",
    "ESB000010": "SUCCESS",
    "ESB000011": "Failed",
    "ESB000014": "An error occurred while fetching the transaction status.",
    "ESB000033": "Invalid MSISDN Length.",
    "ESB000034": "Invalid Country Name.",
    "ESB000035": "Invalid Currency Provided.",
    "ESB000036": "Invalid MSISDN Length. MSISDN Should Start With 0",
    "ESB000039": "Vendor is not configured to do transaction in the country.",
    "ESB000041": "External Transaction ID already exists.",
    "ESB000045": "No Transaction Found With Provided Transaction Id.",
}
ROUTER_MESSAGES: dict[str, str] = {
    "ROUTER003": "Mandatory parameters missing",
    "ROUTER006": "Invalid country",
    "ROUTER112": "Invalid currency",
}
STATUS_MESSAGES: dict[str, str] = {
    "TS": "Your transaction has been successfully processed",
    "TA": "Ambiguous",
    "TIP": "Transaction in progress",
    "TE": "Transaction expired",
}
SUCCESS_CODE = "DP00800001001"
PENDING_CODE = "DP00800001006"
AMBIGUOUS_CODE = "DP00800001000"


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a collection ends: ``status`` with ``response_code``, whether a callback is sent, and
    whether enquiry answers ``TA`` for ``ambiguous_ms`` before that."""

    status: TxStatus = "TS"
    response_code: str = SUCCESS_CODE
    callback: bool = True
    ambiguous: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "TS"


def failed(code: str) -> Outcome:
    """A ``TF`` outcome with its DP code, callback included."""
    return Outcome("TF", code)


DIGIT_OUTCOMES: dict[str, Outcome] = {
    "0": Outcome(),
    "1": Outcome(),
    "2": failed("DP00800001002"),
    "3": failed("DP00800001005"),
    "4": failed("DP00800001007"),
    "5": failed("DP00800001008"),
    "6": Outcome(callback=False),
    "7": Outcome(ambiguous=True),
    "8": failed("DP00800001029"),
    "9": Outcome(),
}


def _system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AirtelSimConfig:
    """Everything a simulator instance needs; all state lives on the ``AirtelSimulator``."""

    credentials: Mapping[str, str] = field(default_factory=lambda: {"sim-airtel-client-id": "sim-airtel-client-secret"})
    countries: Mapping[str, str] = field(default_factory=lambda: {"KE": "KES"})  # X-Country -> X-Currency
    callback_url: str | None = None  # the portal's one callback URL
    callback_auth: bool = False  # the portal's "callback authentication" toggle
    callback_secret: str = "sim-airtel-callback-secret"  # noqa: S105 - the simulator's own test key
    hash_canonicalisation: Canonicalisation = "transaction_json"
    callback_code_field: bool = False  # add transaction.code (observed in some payloads)
    merchant_name: str = "SOMO LEARNING LIMITED"
    seed: int = 0
    clock: Callable[[], datetime] = _system_clock
    processing_ms: int = 50
    ambiguous_ms: int = 200
    token_lifetime_s: int = 180
    invalidate_previous_token: bool = False
    min_amount: int = 1
    max_amount: int = 150_000
    collection_id_false: bool = False  # the docs sample's ``"id": false`` in the collection answer
    enquiry_amount: bool = False  # add data.transaction.amount (absent from the documented answer)
    refund_success_flag: bool = True  # the sources disagree on ``success`` in the refund answer
    require_signature: bool = False  # on v2, refuse a collection without x-signature/x-key
    callback_faults: CallbackFaults = field(default_factory=CallbackFaults)
    dispatch_faults: DispatchFaults = field(default_factory=DispatchFaults)
    msisdn_faults: Mapping[str, CallbackFaults] = field(default_factory=dict)
    msisdn_outcomes: Mapping[str, Outcome] = field(default_factory=dict)
    callback_timeout_s: float = 5.0


@dataclass(slots=True)
class AirtelTransaction:
    """One accepted collection, as the simulator remembers it for enquiry, refund and callbacks."""

    transaction_id: str
    msisdn: str
    amount: int
    currency: str
    country: str
    reference: str
    created_at: datetime
    answered_at: float  # event-loop time at which the customer has answered the prompt
    final_at: float  # answered_at, plus the ambiguous window if any
    outcome: Outcome
    airtel_money_id: str | None
    signed: bool = False
    refunded_at: datetime | None = None

    def state(self, now: float) -> tuple[TxStatus, str]:
        """Enquiry's (status, response_code) at event-loop time ``now``."""
        if now < self.answered_at:
            return "TIP", PENDING_CODE
        if now < self.final_at:
            return "TA", AMBIGUOUS_CODE
        return self.outcome.status, self.outcome.response_code


class AirtelError(Exception):
    """An Airtel error answer: the ``status`` envelope with a ROUTER/ESB code and its HTTP status."""

    def __init__(self, http_status: int, result_code: str, message: str, response_code: str | None = None) -> None:
        super().__init__(f"{result_code} {message}")
        self.http_status = http_status
        self.result_code = result_code
        self.message = message
        self.response_code = response_code

    def body(self) -> dict[str, Any]:
        status: dict[str, Any] = {"code": str(self.http_status), "message": self.message}
        status["result_code"] = self.result_code
        if self.response_code is not None:
            status["response_code"] = self.response_code
        status["success"] = False
        return {"data": {}, "status": status}


def esb(code: str, http_status: int = 400, response_code: str | None = None) -> AirtelError:
    """The ESB error ``code`` with its documented message."""
    return AirtelError(http_status, code, ESB_MESSAGES[code], response_code)


def router(code: str) -> AirtelError:
    """The ROUTER error ``code`` with its documented message (header problems)."""
    return AirtelError(400, code, ROUTER_MESSAGES[code])


class OAuthError(Exception):
    """An RFC 6749 error answer: the reference documents no OAuth error body."""

    def __init__(self, http_status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.http_status = http_status
        self.error = error
        self.description = description


def signature(message: bytes, secret: str) -> str:
    """Base64 HMAC-SHA256, computed here independently of the domain's verifier."""
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def airtel_hash_input(transaction: Mapping[str, Any], canonicalisation: Canonicalisation) -> bytes:
    """The bytes the simulator signs for a callback whose ``transaction`` object is given."""
    if canonicalisation == "transaction_json":
        return json.dumps({"transaction": transaction}, separators=(",", ":"), ensure_ascii=False).encode()
    # The dispatcher posts json.dumps(body): these are the body's bytes before "hash" is added.
    return json.dumps({"transaction": transaction}).encode()


class AirtelSimulator:
    """The simulator's state: tokens, collections, the seeded RNG and the callback dispatcher."""

    def __init__(self, config: AirtelSimConfig) -> None:
        self.config = config
        self.log = DeliveryLog()
        self.dispatcher = CallbackDispatcher(
            rng=random.Random(),  # noqa: S311 - seeded for determinism; nothing here is secret
            clock=config.clock,
            faults=config.dispatch_faults,
            log=self.log,
            timeout_s=config.callback_timeout_s,
        )
        self.tokens: dict[str, tuple[str, datetime]] = {}  # token -> (client id, expiry)
        self.transactions: dict[str, AirtelTransaction] = {}
        self._by_airtel_id: dict[str, AirtelTransaction] = {}
        self._rng = random.Random()  # noqa: S311 - seeded for determinism; tokens guard nothing real
        self.reset()

    def reset(self) -> None:
        """Back to the state of a fresh instance: same seed, so the same ids again."""
        self._rng.seed(f"airtel:{self.config.seed}:ids")
        self.dispatcher.reset(f"airtel:{self.config.seed}:faults")
        self.log.clear()
        self.tokens.clear()
        self.transactions.clear()
        self._by_airtel_id.clear()

    # ---- ids shaped like the real ones ----

    def _token(self) -> str:
        return "".join(self._rng.choice(string.ascii_letters + string.digits) for _ in range(32))

    def _airtel_money_id(self) -> str:
        # Like MP210603.1234.L06941: date, time on the Nairobi wall clock, a letter and 5 digits.
        local = self.config.clock().astimezone(NAIROBI)
        while True:
            suffix = self._rng.choice(string.ascii_uppercase) + f"{self._rng.randrange(10**5):05d}"
            money_id = f"MP{local:%y%m%d.%H%M}.{suffix}"
            if money_id not in self._by_airtel_id:
                return money_id

    # ---- OAuth ----

    def issue_token(self, client_id: str) -> str:
        """Mint a token; optionally the previous token of the same client stops working."""
        if self.config.invalidate_previous_token:
            for token, (owner, _) in list(self.tokens.items()):
                if owner == client_id:
                    del self.tokens[token]
        token = self._token()
        self.tokens[token] = (client_id, self.config.clock() + timedelta(seconds=self.config.token_lifetime_s))
        return token

    def check_request(self, headers: Mapping[str, str]) -> tuple[str, str]:
        """Bearer token, then ``X-Country``, then ``X-Currency``; returns (country, currency)."""
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        entry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None or self.config.clock() >= entry[1]:
            raise OAuthError(401, "invalid_token", "The access token is missing, invalid or expired")
        country = headers.get("X-Country", "").strip()
        if country not in self.config.countries:
            raise router("ROUTER006")
        currency = headers.get("X-Currency", "").strip()
        if currency != self.config.countries[country]:
            raise router("ROUTER112")
        return country, currency

    # ---- collection ----

    def collect(
        self, body: Mapping[str, Any], headers: Mapping[str, str], country: str, currency: str, *, signed: bool
    ) -> dict[str, Any]:
        """Validate a collection as Airtel does, record it and schedule its callback."""
        request = validate_collection(body, country, currency)
        if request.transaction_id in self.transactions:
            raise esb("ESB000041")
        outcome = self._outcome(request, headers.get(OUTCOME_HEADER))
        faults = self._faults(request.msisdn, headers.get(FAULT_HEADER))
        url = headers.get(CALLBACK_URL_HEADER) or self.config.callback_url
        loop = asyncio.get_running_loop()
        answered_at = loop.time() + self.config.processing_ms / 1000
        final_at = answered_at + (self.config.ambiguous_ms / 1000 if outcome.ambiguous else 0)
        transaction = AirtelTransaction(
            transaction_id=request.transaction_id,
            msisdn=request.msisdn,
            amount=request.amount,
            currency=currency,
            country=country,
            reference=request.reference,
            created_at=self.config.clock(),
            answered_at=answered_at,
            final_at=final_at,
            outcome=outcome,
            airtel_money_id=self._airtel_money_id() if outcome.succeeded else None,
            signed=signed,
        )
        self.transactions[transaction.transaction_id] = transaction
        if transaction.airtel_money_id is not None:
            self._by_airtel_id[transaction.airtel_money_id] = transaction
        if url and outcome.callback and outcome.status in ("TS", "TF"):
            result = self._callback_body(transaction, outcome, transaction.airtel_money_id)
            contradiction = None
            if faults.contradict_after_ms is not None:
                late = failed("DP00800001008") if outcome.succeeded else Outcome()
                late_id = self._airtel_money_id() if late.succeeded else None
                contradiction = self._callback_body(transaction, late, late_id)
            after_ms = self.config.processing_ms + (self.config.ambiguous_ms if outcome.ambiguous else 0)
            self.dispatcher.submit(
                url=url,
                key=transaction.transaction_id,
                body=result,
                faults=faults,
                after_ms=after_ms,
                contradiction=contradiction,
            )
        answer_id: str | bool = False if self.config.collection_id_false else transaction.transaction_id
        return {
            "data": {"transaction": {"id": answer_id, "status": "SUCCESS"}},
            "status": {
                "code": "200",
                "message": "SUCCESS",
                "result_code": "ESB000010",
                "response_code": PENDING_CODE,
                "success": True,
            },
        }

    def _outcome(self, request: CollectionRequest, override: str | None) -> Outcome:
        if override is not None:
            return parse_outcome(override)
        if request.msisdn in self.config.msisdn_outcomes:
            return self.config.msisdn_outcomes[request.msisdn]
        if request.amount < self.config.min_amount:
            return failed("DP00800001004")
        if request.amount > self.config.max_amount:
            return failed("DP00800001003")
        return DIGIT_OUTCOMES[request.msisdn[-1]]

    def _faults(self, msisdn: str, header: str | None) -> CallbackFaults:
        base = self.config.msisdn_faults.get(msisdn, self.config.callback_faults)
        if header is None:
            return base
        try:
            return parse_faults(header, base)
        except FaultSpecError as exc:
            raise AirtelError(400, "sim.faults", str(exc)) from exc

    def _callback_body(
        self, transaction: AirtelTransaction, outcome: Outcome, airtel_money_id: str | None
    ) -> dict[str, Any]:
        if outcome.succeeded:
            message = (
                f"Paid {transaction.currency} {transaction.amount:,} to {self.config.merchant_name}, "
                f"Trans ID {airtel_money_id}."
            )
        else:
            message = DP_MESSAGES.get(outcome.response_code, "Transaction failed")
        inner: dict[str, Any] = {
            "id": transaction.transaction_id,
            "message": message,
            "status_code": outcome.status,
            "airtel_money_id": airtel_money_id,
        }
        if self.config.callback_code_field:
            inner["code"] = outcome.response_code
        body: dict[str, Any] = {"transaction": inner}
        if self.config.callback_auth:
            signed = airtel_hash_input(inner, self.config.hash_canonicalisation)
            body["hash"] = signature(signed, self.config.callback_secret)
        return body

    # ---- enquiry and refund ----

    def enquire(self, transaction_id: str) -> tuple[int, dict[str, Any]]:
        """The transaction's state now: TIP until answered, TA while ambiguous, then the outcome."""
        transaction = self.transactions.get(transaction_id)
        if transaction is None:
            raise esb("ESB000045", http_status=404)
        status, response_code = transaction.state(asyncio.get_running_loop().time())
        paid = status == "TS"
        inner: dict[str, Any] = {
            "airtel_money_id": transaction.airtel_money_id if paid else None,
            "id": transaction.transaction_id,
            "message": STATUS_MESSAGES.get(status) or DP_MESSAGES.get(response_code, "Transaction failed"),
            "status": status,
        }
        if self.config.enquiry_amount:
            inner["amount"] = transaction.amount
        envelope = {
            "response_code": response_code,
            "code": "200",
            "success": paid,
            "result_code": "ESB000010",
            "message": "SUCCESS",
        }
        return 200, {"data": {"transaction": inner}, "status": envelope}

    def refund(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        """Refund a paid collection, once, by its ``airtel_money_id``."""
        override = headers.get(OUTCOME_HEADER)
        if override is not None:
            code = override.strip().upper()
            if code not in ESB_MESSAGES or code == "ESB000010":
                raise AirtelError(400, "sim.outcome", f"refund {OUTCOME_HEADER} must be an ESB error code")
            raise esb(code, http_status=404 if code == "ESB000045" else 400)
        inner = body.get("transaction")
        money_id = inner.get("airtel_money_id") if isinstance(inner, dict) else None
        if not isinstance(money_id, str) or not money_id:
            raise esb("ESB000008")
        transaction = self._by_airtel_id.get(money_id)
        if transaction is None:
            raise esb("ESB000045", http_status=404)
        status, _ = transaction.state(asyncio.get_running_loop().time())
        if status != "TS" or transaction.refunded_at is not None:
            raise esb("ESB000011")
        transaction.refunded_at = self.config.clock()
        return {
            "data": {"transaction": {"airtel_money_id": money_id, "status": "SUCCESS"}},
            "status": {
                "code": "200",
                "message": "SUCCESS",
                "result_code": "ESB000010",
                "success": self.config.refund_success_flag,
            },
        }

    def truth(self) -> list[dict[str, Any]]:
        """Every collection as reconciliation sees it: ours, Airtel's id, the phone, amount, state."""
        now = asyncio.get_running_loop().time()
        rows = []
        for transaction in self.transactions.values():
            status, response_code = transaction.state(now)
            rows.append(
                {
                    "transaction_id": transaction.transaction_id,
                    "airtel_money_id": transaction.airtel_money_id if status == "TS" else None,
                    "msisdn": transaction.msisdn,
                    "amount": transaction.amount,
                    "currency": transaction.currency,
                    "reference": transaction.reference,
                    "status": status,
                    "response_code": response_code,
                    "created_at": transaction.created_at.isoformat(),
                    "refunded_at": transaction.refunded_at.isoformat() if transaction.refunded_at else None,
                }
            )
        return rows


def parse_outcome(value: str) -> Outcome:
    """Parse ``X-Sim-Outcome`` for a collection (grammar in the module docstring)."""
    text = value.strip().upper()
    if text == "NONE":
        return Outcome(callback=False)
    if text == "TS":
        return Outcome()
    if text == "TF":
        return failed("DP00800001008")
    if text.startswith("TF:") and text[3:] in DP_MESSAGES and text[3:] != SUCCESS_CODE:
        return failed(text[3:])
    if text in DP_MESSAGES:
        return Outcome() if text == SUCCESS_CODE else failed(text)
    if text == "TA":
        return Outcome("TA", AMBIGUOUS_CODE, callback=False)
    if text.startswith("TA:") and not text[3:].startswith("TA"):
        return replace(parse_outcome(text[3:]), ambiguous=True)
    if text == "TIP":
        return Outcome("TIP", PENDING_CODE, callback=False)
    if text == "TE":
        return Outcome("TE", "DP00800001029", callback=False)
    raise AirtelError(400, "sim.outcome", f"unknown outcome {value!r} in {OUTCOME_HEADER}")


# ---- request validation (reference §3) ----


@dataclass(frozen=True, slots=True)
class CollectionRequest:
    """A collection body that passed validation."""

    reference: str
    msisdn: str
    amount: int
    transaction_id: str


def _whole_amount(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0 or amount != amount.to_integral_value():
        return None
    return int(amount)


def _check_place(section: Mapping[str, Any], country: str, currency: str) -> None:
    # Optional in the body, but when present they must agree with the headers.
    if "country" in section and section["country"] != country:
        raise esb("ESB000034")
    if "currency" in section and section["currency"] != currency:
        raise esb("ESB000035")


def validate_collection(body: Mapping[str, Any], country: str, currency: str) -> CollectionRequest:
    """Check a collection body, raising the first problem's ESB error."""
    reference = body.get("reference")
    subscriber = body.get("subscriber")
    transaction = body.get("transaction")
    if not isinstance(reference, str) or not reference.strip():
        raise esb("ESB000008")
    if not isinstance(subscriber, dict) or not isinstance(transaction, dict):
        raise esb("ESB000008")
    raw_msisdn = subscriber.get("msisdn")
    msisdn = str(raw_msisdn) if isinstance(raw_msisdn, int) and not isinstance(raw_msisdn, bool) else raw_msisdn
    if not isinstance(msisdn, str) or not msisdn.isascii() or not msisdn.isdigit():
        raise esb("ESB000008")
    if len(msisdn) != 9:  # "Do not send country code in msisdn"; 07... is 10 digits too
        raise esb("ESB000033")
    _check_place(subscriber, country, currency)
    amount = _whole_amount(transaction.get("amount"))
    if amount is None:
        raise esb("ESB000008")
    _check_place(transaction, country, currency)
    transaction_id = transaction.get("id")
    if not isinstance(transaction_id, str) or not transaction_id.strip() or len(transaction_id) > 64:
        raise esb("ESB000008")
    return CollectionRequest(reference=reference, msisdn=msisdn, amount=amount, transaction_id=transaction_id)


# ---- HTTP ----

airtel_simulator_key = web.AppKey("airtel_simulator", AirtelSimulator)

Handler = Callable[[AirtelSimulator, web.Request, str, str], Awaitable[tuple[int, dict[str, Any]]]]


def _oauth_response(error: OAuthError) -> web.Response:
    body = {"error": error.error, "error_description": error.description}
    return web.json_response(body, status=error.http_status)


async def _read_object(request: web.Request) -> Mapping[str, Any]:
    try:
        parsed = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        parsed = None
    return parsed if isinstance(parsed, dict) else {}


async def _token(request: web.Request) -> web.Response:
    sim = request.app[airtel_simulator_key]
    body = await _read_object(request)
    try:
        if body.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        client_id, client_secret = body.get("client_id"), body.get("client_secret")
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic" and encoded:
            # laravel-airtel-money sends Basic auth plus a JSON grant_type; moodle sends the JSON body.
            try:
                client_id, _, client_secret = base64.b64decode(encoded, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = client_secret = None
        if not isinstance(client_id, str) or sim.config.credentials.get(client_id) != client_secret:
            raise OAuthError(401, "invalid_client", "Client authentication failed")
    except OAuthError as error:
        return _oauth_response(error)
    token = sim.issue_token(client_id)
    return web.json_response(
        {"access_token": token, "expires_in": str(sim.config.token_lifetime_s), "token_type": "bearer"}
    )


def _business(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a business API: bearer token and country/currency headers checked, errors rendered."""

    async def endpoint(request: web.Request) -> web.Response:
        sim = request.app[airtel_simulator_key]
        try:
            country, currency = sim.check_request(request.headers)
            status, body = await handler(sim, request, country, currency)
            return web.json_response(body, status=status)
        except OAuthError as error:
            return _oauth_response(error)
        except AirtelError as error:
            return web.json_response(error.body(), status=error.http_status)

    return endpoint


async def _collect(
    sim: AirtelSimulator, request: web.Request, country: str, currency: str
) -> tuple[int, dict[str, Any]]:
    signed = bool(request.headers.get("x-signature") and request.headers.get("x-key"))
    if "/v2/" in request.path and sim.config.require_signature and not signed:
        raise AirtelError(400, "ESB000008", DP_MESSAGES["DP00800001026"], response_code="DP00800001026")
    body = await _read_object(request)
    return 200, sim.collect(body, request.headers, country, currency, signed=signed)


async def _enquire(
    sim: AirtelSimulator, request: web.Request, country: str, currency: str
) -> tuple[int, dict[str, Any]]:
    return sim.enquire(request.match_info["transaction_id"])


async def _refund(
    sim: AirtelSimulator, request: web.Request, country: str, currency: str
) -> tuple[int, dict[str, Any]]:
    return 200, sim.refund(await _read_object(request), request.headers)


async def _deliveries(request: web.Request) -> web.Response:
    sim = request.app[airtel_simulator_key]
    return web.json_response([attempt.as_json() for attempt in sim.log.attempts])


async def _transactions(request: web.Request) -> web.Response:
    return web.json_response(request.app[airtel_simulator_key].truth())


async def _reset(request: web.Request) -> web.Response:
    request.app[airtel_simulator_key].reset()
    return web.json_response({"reset": True})


async def _dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
    """Own the outbound HTTP session and the callback worker for the app's lifetime."""
    dispatcher = app[airtel_simulator_key].dispatcher
    async with aiohttp.ClientSession() as session, dispatcher.running(session, name="airtel-callbacks"):
        yield


def add_airtel_routes(app: web.Application, config: AirtelSimConfig) -> None:
    """Install the Airtel simulator on ``app`` (its paths do not collide with Daraja's)."""
    app[airtel_simulator_key] = AirtelSimulator(config)
    app.router.add_post(OAUTH_PATH, _token)
    for path in COLLECTION_PATHS:
        app.router.add_post(path, _business(_collect))
    for path in REFUND_PATHS:
        app.router.add_post(path, _business(_refund))
    app.router.add_get(ENQUIRY_PATH, _business(_enquire))
    app.router.add_get("/sim/airtel/deliveries", _deliveries)
    app.router.add_get("/sim/airtel/transactions", _transactions)
    app.router.add_post("/sim/airtel/reset", _reset)
    app.cleanup_ctx.append(_dispatcher_ctx)


def create_airtel_app(config: AirtelSimConfig) -> web.Application:
    """Build the Airtel simulator app; no I/O until it starts."""
    app = web.Application()
    add_airtel_routes(app, config)
    return app
