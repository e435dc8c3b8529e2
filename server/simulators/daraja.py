"""A loopback simulator of Safaricom Daraja (M-Pesa), speaking the real wire format.

The shapes, codes and quirks follow ``shared/reference/daraja.md``: ``expires_in`` as a string,
``ResultCode`` an integer in callbacks but a string in STK Query, no ``CallbackMetadata`` on
failure, the ``Balance`` item without a value, the "successsfully" typo, and the pending answer
to STK Query given as HTTP 500 ``500.001.1001``.

Endpoints (paths as on ``api.safaricom.co.ke``)::

    GET  /oauth/v1/generate?grant_type=client_credentials   Basic auth -> access token
    POST /mpesa/stkpush/v1/processrequest                   STK Push (M-Pesa Express)
    POST /mpesa/stkpushquery/v1/query                       STK Query
    POST /mpesa/c2b/v1/registerurl (and /v2/)               C2B URL registration   (daraja_c2b.py)
    POST /mpesa/c2b/v1/simulate (and /v2/)                  C2B payment, sandbox   (daraja_c2b.py)
    POST /pulltransactions/v1/register                      Pull API registration  (daraja_c2b.py)
    POST /pulltransactions/v1/query                         Pull API, 48-hour window (daraja_c2b.py)
    POST /mpesa/transactionstatus/v1/query                  Transaction Status     (daraja_org.py)
    POST /mpesa/reversal/v1/request                         Reversal               (daraja_org.py)
    GET  /sim/statement?date=YYYY-MM-DD[&shortcode=]        test-only: the day's statement, CSV
    POST /sim/statement/inject                              test-only: add raw statement lines
    GET  /sim/deliveries                                    test-only: every callback attempt
    POST /sim/reset                                         test-only: forget all state, reseed

An invalid bearer token is ``404.001.03`` on the STK APIs and HTTP 400 ``400.003.01`` on the
C2B, Pull and org APIs, as the two tables of the docs have it (reference §2).

Every completed payment (an STK success, an accepted C2B payment) and every reversal is posted
to one ledger per shortcode (``LedgerEntry``): it is the statement, and what Transaction
Status, Reversal and Pull know about a receipt. Payer names come from ``payer_names`` or a
fixed pool chosen by a hash of the MSISDN (not the RNG, so STK IDs stay the same as before).

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

C2B and org API outcomes and faults are described in ``daraja_c2b.py`` and ``daraja_org.py``;
their results go through the same dispatcher, so ``X-Sim-Faults`` and the config faults apply
(``contradict`` is STK-only). ``DarajaSimulator.drain()`` waits for C2B validations too.

Time: the config clock stamps IDs, receipts, ``TransactionDate``, tokens and the delivery log;
the event loop's clock paces processing (``processing_ms``) and callback delays, so a test can
pin wall time without slowing down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import re
import string
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
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
# A fixed pool, picked by a hash of the MSISDN: the same payer always gets the same name.
PAYER_NAMES: tuple[tuple[str, str, str], ...] = (
    ("JOHN", "", "DOE"),
    ("WANJIKU", "", "KAMAU"),
    ("OTIENO", "", "OCHIENG"),
    ("AMINA", "", "HASSAN"),
    ("KIPCHOGE", "", "KEINO"),
    ("NJERI", "W", "MWANGI"),
    ("BARASA", "", "WEKESA"),
    ("AKINYI", "", "ODHIAMBO"),
)

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
    # C2B (daraja_c2b.py). External validation is off unless Safaricom enabled it (§7.1).
    c2b_external_validation: frozenset[str] = frozenset()
    c2b_validation_timeout_ms: int = 8000  # "usually < 8 seconds", then ResponseType decides
    c2b_allow_overwrite: bool = True  # the sandbox; production answers "Urls are already registered"
    mask_msisdn: bool = False  # "2547 ***** 149" in C2B bodies, Pull rows and the statement
    payer_names: Mapping[str, tuple[str, str, str]] = field(
        default_factory=lambda: {"254708374149": ("JOHN", "", "DOE")}
    )
    organisation_names: Mapping[str, str] = field(default_factory=dict)
    opening_balance: int = 0  # KES on every shortcode's utility account
    pull_page_size: int = 100
    pull_includes_stk: bool = False
    # Org APIs (daraja_org.py): initiator -> SecurityCredential; None accepts any non-empty pair.
    initiators: Mapping[str, str] | None = None


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


LedgerKind = Literal["stk", "c2b", "reversal"]


@dataclass(slots=True)
class LedgerEntry:
    """One completed movement on a shortcode's account: a statement line, and what Transaction
    Status, Reversal and Pull know about its receipt."""

    receipt: str
    kind: LedgerKind
    shortcode: str
    msisdn: str
    payer: tuple[str, str, str]
    amount: int  # whole KES, always positive; ``credit`` says which way it moved
    credit: bool
    initiated_at: datetime
    completed_at: datetime
    reason_type: str
    account: str = ""  # AccountReference or BillRefNumber
    linked_id: str = ""  # the CheckoutRequestID of an STK payment, the receipt a reversal undid
    originator_id: str = ""  # MerchantRequestID, C2B OriginatorCoversationID or reversal request ID
    balance_after: int = 0
    reversed_by: str | None = None


@dataclass(frozen=True, slots=True)
class InjectedLine:
    """A raw statement line added by a test (``POST /sim/statement/inject``): statement only."""

    completed_at: datetime
    shortcode: str | None
    row: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class C2BRegistration:
    shortcode: str
    response_type: str
    confirmation_url: str
    validation_url: str


@dataclass(slots=True)
class C2BRecord:
    """One simulated C2B payment, accepted or not: the simulator's truth for tests."""

    trans_id: str
    originator_id: str
    shortcode: str
    command_id: str
    amount: int
    msisdn: str
    bill_ref: str
    requested_at: datetime
    status: Literal["pending", "completed", "rejected"] = "pending"
    decided_by: str = ""  # "validation:<ResultCode>", "fallback:<ResponseType>" or "no-validation"


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
        self.ledger: list[LedgerEntry] = []
        self.receipts: dict[str, LedgerEntry] = {}
        self.by_originator: dict[str, LedgerEntry] = {}  # an originator/merchant request ID -> entry
        self.balances: dict[str, int] = {}
        self.injected: list[InjectedLine] = []
        self.c2b_urls: dict[str, C2BRegistration] = {}
        self.c2b_payments: dict[str, C2BRecord] = {}
        self.pull_registrations: dict[str, str] = {}  # shortcode -> ResponseRefID
        self.http: aiohttp.ClientSession | None = None  # the app's outbound session, for C2B validation
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()  # noqa: S311 - seeded for determinism; tokens guard nothing real
        self.reset()

    def reset(self) -> None:
        """Back to the state of a fresh instance: same seed, so the same IDs again."""
        self._rng.seed(f"daraja:{self.config.seed}:ids")
        self.dispatcher.reset(f"daraja:{self.config.seed}:faults")
        self.log.clear()
        self.tokens.clear()
        self.transactions.clear()
        self.ledger.clear()
        self.receipts.clear()
        self.by_originator.clear()
        self.balances.clear()
        self.injected.clear()
        self.c2b_urls.clear()
        self.c2b_payments.clear()
        self.pull_registrations.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    # ---- background work (C2B validation round trips) ----

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` in the background, tracked so ``drain`` waits for it and ``close`` stops it."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until no background work is running and no callback is queued, held or in flight."""
        async with asyncio.timeout(timeout_s):
            while self._tasks:
                done, _ = await asyncio.wait(set(self._tasks))
                for task in done:
                    if not task.cancelled() and (error := task.exception()) is not None:
                        raise error  # a bug in the simulator must fail the test, not hang it
            await self.dispatcher.drain(timeout_s)

    async def close(self) -> None:
        """Stop background work; called by the app's cleanup context."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- ids shaped like the real ones (reference §3.2, §4.4, §8, §9) ----

    def hex_digits(self, n: int) -> str:
        return "".join(self._rng.choice("0123456789abcdef") for _ in range(n))

    def request_id(self) -> str:
        """A GUID fragment plus digits, like ``1c5b-4ba8-815c-ac45c57a3db01495926``."""
        groups = "-".join(self.hex_digits(n) for n in (4, 4, 4, 12))
        return f"{groups}{self._rng.randrange(10**6, 10**7)}"

    def conversation_id(self, now: datetime) -> str:
        """``AG_<Nairobi date>_<20 hex>``, like ``AG_20210706_20106e9209f64bebd05b``."""
        return f"AG_{now.astimezone(NAIROBI):%Y%m%d}_{self.hex_digits(20)}"

    def placeholder_transaction_id(self, now: datetime) -> str:
        """The receipt-shaped ``TransactionID`` of an answer that moved no money (``SKE0000000``)."""
        return self.receipt(now)[:3] + "0000000"

    def _checkout_request_id(self, now: datetime, phone: str) -> str:
        local = now.astimezone(NAIROBI)
        return f"ws_CO_{local:%d%m%Y%H%M%S}{local.microsecond // 1000:03d}{phone[3:]}"

    def _unique_checkout_request_id(self, now: datetime, phone: str) -> str:
        # The real ID is time plus phone; a pinned clock would repeat it, so step a millisecond.
        at = now
        while (checkout_id := self._checkout_request_id(at, phone)) in self.transactions:
            at += timedelta(milliseconds=1)
        return checkout_id

    def receipt(self, now: datetime) -> str:
        """A receipt number like ``UKR7OWQX0R``: year letter, month letter, eight characters."""
        # First letter tracks the year (L = 2017 ... U = 2026), second the month (A = Jan).
        local = now.astimezone(NAIROBI)
        year = string.ascii_uppercase[(ord("L") - ord("A") + local.year - 2017) % 26]
        month = string.ascii_uppercase[local.month - 1]
        alphabet = string.ascii_uppercase + string.digits
        return year + month + "".join(self._rng.choice(alphabet) for _ in range(8))

    def _token(self) -> str:
        return "".join(self._rng.choice(string.ascii_letters + string.digits) for _ in range(28))

    # ---- the ledger: every completed movement, per shortcode ----

    def payer(self, msisdn: str) -> tuple[str, str, str]:
        """First, middle and last name of the M-Pesa customer ``msisdn``."""
        known = self.config.payer_names.get(msisdn)
        return known or PAYER_NAMES[zlib.crc32(msisdn.encode()) % len(PAYER_NAMES)]

    def shown_msisdn(self, msisdn: str) -> str:
        """The MSISDN as merchant-facing data shows it: whole, or masked like ``2547 ***** 126``."""
        return f"{msisdn[:4]} ***** {msisdn[-3:]}" if self.config.mask_msisdn else msisdn

    def customer_party(self, entry: LedgerEntry) -> str:
        """``254708374149 - JOHN DOE``, as statements and org API results name a customer."""
        name = " ".join(part for part in entry.payer if part)
        return f"{self.shown_msisdn(entry.msisdn)} - {name}"

    def organisation_party(self, shortcode: str) -> str:
        """``600992 - Safaricom Daraja 992``, as org API results name the organisation."""
        return f"{shortcode} - {self.organisation_name(shortcode)}"

    def organisation_name(self, shortcode: str) -> str:
        return self.config.organisation_names.get(shortcode, f"Safaricom Daraja {shortcode[-3:]}")

    def balance(self, shortcode: str) -> int:
        return self.balances.get(shortcode, self.config.opening_balance)

    def post(self, entry: LedgerEntry) -> LedgerEntry:
        """Book a completed movement: the running balance, the receipt and its originator ID."""
        delta = entry.amount if entry.credit else -entry.amount
        entry.balance_after = self.balances[entry.shortcode] = self.balance(entry.shortcode) + delta
        self.ledger.append(entry)
        self.receipts[entry.receipt] = entry
        if entry.originator_id:
            self.by_originator[entry.originator_id] = entry
        return entry

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

    def check_bearer(self, header: str | None, invalid: tuple[int, str] = (404, "404.001.03")) -> None:
        """Raise the real answer for a missing, malformed, unknown or expired bearer token."""
        if not header:
            raise DarajaError(404, "404.001.04", "Invalid Authentication Header")
        scheme, _, token = header.partition(" ")
        entry = self.tokens.get(token.strip()) if scheme == "Bearer" else None
        if entry is None or self.config.clock() >= entry[1]:
            raise DarajaError(invalid[0], invalid[1], "Invalid Access Token")

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
        faults = self.faults_for(request.phone, headers.get(FAULT_HEADER))
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
            receipt=self.receipt(now) if outcome.succeeded else None,
        )
        self.transactions[transaction.checkout_request_id] = transaction
        if transaction.receipt is not None:
            # The simulator's truth is the first result: a success is booked even if its callback is lost.
            paybill = request.transaction_type == "CustomerPayBillOnline"
            self.post(
                LedgerEntry(
                    receipt=transaction.receipt,
                    kind="stk",
                    shortcode=request.shortcode,
                    msisdn=request.party_a,
                    payer=self.payer(request.party_a),
                    amount=request.amount,
                    credit=True,
                    initiated_at=now,
                    completed_at=now + timedelta(milliseconds=self.config.processing_ms),
                    reason_type="Pay Bill Online" if paybill else "Buy Goods Online",
                    account=request.account_reference,
                    linked_id=transaction.checkout_request_id,
                    originator_id=transaction.merchant_request_id,
                )
            )
        if outcome.callback:
            result = self._callback_body(transaction, outcome, transaction.receipt, now)
            contradicting = Outcome(1032) if outcome.succeeded else Outcome(0)
            contradiction = None
            if faults.contradict_after_ms is not None:
                late_receipt = self.receipt(now) if contradicting.succeeded else None
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

    def faults_for(self, phone: str, header: str | None) -> CallbackFaults:
        """The callback faults of one request: its header, else the phone's, else the global ones."""
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
        shortcode = shortcode_field(body, max_digits=7)
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


def digits(value: Any) -> str | None:
    """Daraja takes numeric fields as JSON numbers or strings alike; anything else is invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    return None


def shortcode_field(body: Mapping[str, Any], *, max_digits: int, name: str = "BusinessShortCode") -> str:
    """A 5..``max_digits``-digit shortcode, as a JSON number or a string."""
    shortcode = digits(body.get(name))
    if shortcode is None or not 5 <= len(shortcode) <= max_digits:
        raise bad_request(name)
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


def msisdn_field(body: Mapping[str, Any], name: str) -> str:
    """A 12-digit ``2547...``/``2541...`` MSISDN, as a JSON number or a string."""
    phone = digits(body.get(name))
    if phone is None or not MSISDN.match(phone):
        raise bad_request(name)
    return phone


def amount_field(value: Any) -> int:
    """Whole shillings, KES 1..250,000, as a JSON number or a string."""
    # Whole shillings only: 1.5, "1.5" and 1.0 are all "Invalid Amount" (reference §3.1).
    amount = digits(value)
    if amount is None or not 1 <= int(amount) <= MAX_AMOUNT:
        raise bad_request("Amount")
    return int(amount)


def check_url(value: Any, field_name: str, *, require_https: bool) -> str:
    """A callback URL without whitespace or junk, else ``Bad Request - Invalid <field_name>``."""
    if not isinstance(value, str) or value != value.strip() or any(c.isspace() for c in value):
        raise bad_request(field_name)
    parts = urlsplit(value)
    schemes = ("https",) if require_https else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        raise bad_request(field_name)
    return value


def text_field(body: Mapping[str, Any], name: str, *, min_len: int = 1, max_len: int = 100) -> str:
    """A required string field of ``min_len..max_len`` characters, else ``400.002.02``."""
    value = body.get(name)
    if not isinstance(value, str) or not min_len <= len(value.strip()) <= max_len:
        raise bad_request(name)
    return value


def validate_push(body: Mapping[str, Any], *, require_https: bool) -> PushRequest:
    """Check an STK Push body, raising the first field's ``400.002.02`` as Daraja does."""
    shortcode = shortcode_field(body, max_digits=6)
    timestamp = _timestamp(body)
    transaction_type = body.get("TransactionType")
    if transaction_type not in TRANSACTION_TYPES:
        raise bad_request("TransactionType")
    amount = amount_field(body.get("Amount"))
    party_a = msisdn_field(body, "PartyA")
    party_b = digits(body.get("PartyB"))
    if party_b is None or not 5 <= len(party_b) <= 7:
        raise bad_request("PartyB")
    phone = msisdn_field(body, "PhoneNumber")
    callback_url = check_url(body.get("CallBackURL"), "CallBackURL", require_https=require_https)
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

Handler = Callable[[DarajaSimulator, Mapping[str, Any], web.Request], Mapping[str, Any]]


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


def _protected(
    handler: Handler, invalid_token: tuple[int, str] = (404, "404.001.03")
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a business API: POST only, bearer token checked, JSON body parsed leniently."""

    async def endpoint(request: web.Request) -> web.Response:
        sim = request.app[daraja_simulator_key]
        try:
            if request.method != "POST":
                raise DarajaError(404, "404.001.04", "Invalid Authentication Header")
            sim.check_bearer(request.headers.get("Authorization"), invalid_token)
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


def _stk_push(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> Mapping[str, Any]:
    return sim.push(body, request.headers)


def _stk_query(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> Mapping[str, Any]:
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
    async with aiohttp.ClientSession() as session, sim.dispatcher.running(session, name="daraja-callbacks"):
        sim.http = session
        yield
        await sim.close()
        sim.http = None


def create_daraja_app(config: DarajaSimConfig) -> web.Application:
    """Build the Daraja simulator app; no I/O until it starts."""
    # The C2B and org APIs build on this module's primitives, so they are imported here, not at the top.
    from server.simulators import daraja_c2b, daraja_org

    app = web.Application()
    app[daraja_simulator_key] = DarajaSimulator(config)
    app.router.add_get("/oauth/v1/generate", _oauth)
    for path, handler in _PROTECTED_ROUTES.items():
        app.router.add_route("*", path, _protected(handler))
    for path, handler in (daraja_c2b.ROUTES | daraja_org.ROUTES).items():
        app.router.add_route("*", path, _protected(handler, invalid_token=(400, "400.003.01")))
    app.router.add_get("/sim/statement", daraja_org.statement)
    app.router.add_post("/sim/statement/inject", daraja_org.inject_statement)
    app.router.add_get("/sim/deliveries", _deliveries)
    app.router.add_post("/sim/reset", _reset)
    app.cleanup_ctx.append(_dispatcher_ctx)
    return app
