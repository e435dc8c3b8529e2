"""Safaricom Daraja behind the domain's ``MpesaGateway`` (STK) and ``MpesaOrgApi`` ports.

Quirks handled here, all from ``shared/reference/daraja.md``:

* one OAuth token per credential set, refreshed by a single flight a minute before expiry, since
  minting a new token kills the previous one (§2); ``expires_in`` arrives as a string or a number;
* exactly one forced refresh and retry after an invalid-token answer (``404.001.03``), never a loop;
* Password = base64(shortcode + passkey + timestamp), timestamp on the Nairobi wall clock (§3.1);
* the field rules (whole KES 1..250,000, AccountReference <= 12, TransactionDesc <= 13, a
  ``2547``/``2541`` MSISDN) are checked before any I/O, so a bad request never reaches Daraja;
* ``500.001.1001`` means three different things and is classified by its message (§3.3);
* STK Query's HTTP 500 "The transaction is being processed" is the pending answer (§6).

Retries: an STK Push is not idempotent (a second prompt, or ``500.001.1001`` "Unable to lock
subscriber"), so a push is re-sent only when Daraja certainly did not process it (the connection
was never made, a 502/503, or spike arrest). A push that timed out after sending raises
``GatewayUnavailable`` with ``outcome_unknown``. OAuth and Query are re-sent on any transient fault.

The organisation APIs (``MpesaOrgApi``: C2B URL registration, Transaction Status, Reversal) and
the C2B simulate call follow the push rule: re-sent only when certainly unprocessed, since each
one either changes state or triggers an asynchronous result. The Pull query is a read and is
re-sent like STK Query. Org API quirks (§7-§10): C2B answers spell ``OriginatorCoversationID``;
Reversal must send the misspelled ``RecieverIdentifierType`` ``"11"``; a production shortcode
whose URLs are registered answers ``500.003.1001`` "Urls are already registered"; Pull answers
``1001`` with no rows. Transaction Status and Reversal need an API operator: ``initiator`` and its
``security_credential``, the initiator password RSA-encrypted with the M-Pesa public certificate
of the environment and base64-encoded. Producing that string is out of scope here: the adapter
sends it as configured.
"""

from __future__ import annotations

import base64
import json as jsonlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from lms_domain.clock import NAIROBI, Clock
from lms_domain.errors import InvalidInput
from lms_domain.money import MINOR_PER_MAJOR, MPESA_MAX_KES, MPESA_MIN_KES, Money
from lms_domain.payments.models import FailureClass
from lms_domain.payments.mpesa import classify_result_code
from lms_domain.payments.ports import (
    AsyncRequestAccepted,
    GatewayConfigurationError,
    GatewayUnavailable,
    PaymentGatewayError,
    StkPushAccepted,
    StkPushRequest,
    StkQueryResult,
    StkStatus,
)
from lms_domain.phones import normalize_msisdn
from server.providers.backoff import DEFAULT_TIMEOUT, Backoff, exchange
from server.providers.tokens import TokenCache

log = logging.getLogger("somo.providers.daraja")

OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
C2B_REGISTER_PATH = "/mpesa/c2b/v2/registerurl"
C2B_SIMULATE_PATH = "/mpesa/c2b/v2/simulate"
TRANSACTION_STATUS_PATH = "/mpesa/transactionstatus/v1/query"
REVERSAL_PATH = "/mpesa/reversal/v1/request"
PULL_REGISTER_PATH = "/pulltransactions/v1/register"
PULL_QUERY_PATH = "/pulltransactions/v1/query"
PRODUCTION_HOST = "api.safaricom.co.ke"
TOKEN_REFRESH_MARGIN_S = 60
MAX_ACCOUNT_REFERENCE = 12
MAX_TRANSACTION_DESC = 13
DARAJA_MSISDN = re.compile(r"^254[17]\d{8}$")
SHORTCODE = re.compile(r"^\d{5,7}$")
TRANSACTION_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
C2B_RESPONSE_TYPES = ("Completed", "Cancelled")
C2B_COMMANDS = ("CustomerPayBillOnline", "CustomerBuyGoodsOnline")
# Daraja refuses C2B URLs containing these words, in any case, or on these hosts (§7.1).
C2B_URL_KEYWORDS = ("m-pesa", "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")
C2B_BLOCKED_HOSTS = ("ngrok", "mockbin", "requestbin")
MAX_BILL_REF = 20
MAX_REMARKS = 100
INVALID_TOKEN_CODES = frozenset({"404.001.03", "400.003.01", "401.003.01"})
# Answers given before Daraja did any work, so even an STK Push may be re-sent (§3.3: spike arrest).
REJECTED_UNPROCESSED_CODES = frozenset({"500.003.02"})
REJECTED_UNPROCESSED_STATUSES = frozenset({502, 503})
# 5xx answers that are business outcomes, not hiccups: re-sending cannot change them.
FINAL_5XX_CODES = frozenset({"500.001.1001", "500.003.03"})

# Minimum wait before pushing to the same customer again (§5: rule 17 and 1001).
_REPUSH_WAIT_S: dict[str, float] = {"17": 120.0, "1001": 60.0}


def repush_wait_s(code: str | int) -> float | None:
    """Seconds Daraja requires before re-pushing to the same customer after ``code``, if any."""
    return _REPUSH_WAIT_S.get(str(code).strip())


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """``base64(BusinessShortCode + Passkey + Timestamp)``."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


def daraja_timestamp(at: datetime) -> str:
    """``YYYYMMDDHHmmss`` on the Nairobi wall clock."""
    if at.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware time")
    return at.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def daraja_msisdn(raw: str) -> str:
    """The 12-digit ``2547...``/``2541...`` form Daraja accepts, or ``InvalidInput``."""
    digits = normalize_msisdn(raw).removeprefix("+")
    if not DARAJA_MSISDN.match(digits):
        raise InvalidInput(f"{raw!r} is not a Kenyan mobile number M-Pesa can prompt", code="mpesa_invalid_phone")
    return digits


def daraja_amount(amount: Money) -> int:
    """Whole shillings within M-Pesa's per-transaction limits, or ``InvalidInput``."""
    if amount.currency != "KES":
        raise InvalidInput(f"M-Pesa charges KES only, not {amount.currency}", code="mpesa_currency_not_kes")
    shillings, cents = divmod(amount.amount_minor, MINOR_PER_MAJOR["KES"])
    if cents:
        raise InvalidInput(f"{amount} is not a whole number of shillings", code="mpesa_amount_not_whole")
    if not MPESA_MIN_KES <= shillings <= MPESA_MAX_KES:
        raise InvalidInput(
            f"{amount} is outside M-Pesa's KES {MPESA_MIN_KES}..{MPESA_MAX_KES:,} per transaction",
            code="mpesa_amount_out_of_range",
        )
    return shillings


def _check_fields(request: StkPushRequest) -> None:
    reference, description = request.account_reference, request.description
    if not 1 <= len(reference) <= MAX_ACCOUNT_REFERENCE:
        raise InvalidInput(
            f"AccountReference must be 1..{MAX_ACCOUNT_REFERENCE} characters, got {len(reference)}",
            code="mpesa_account_reference_length",
        )
    if len(description) > MAX_TRANSACTION_DESC:
        raise InvalidInput(
            f"TransactionDesc must be at most {MAX_TRANSACTION_DESC} characters, got {len(description)}",
            code="mpesa_description_too_long",
        )
    if not _usable_url(request.callback_url):
        raise InvalidInput(f"{request.callback_url!r} is not a usable CallBackURL", code="mpesa_invalid_callback_url")


def _usable_url(url: str) -> bool:
    parts = urlsplit(url)
    return not any(c.isspace() for c in url) and parts.scheme in {"http", "https"} and bool(parts.hostname)


def _check_result_urls(result_url: str, timeout_url: str) -> None:
    for name, url in (("ResultURL", result_url), ("QueueTimeOutURL", timeout_url)):
        if not _usable_url(url):
            raise InvalidInput(f"{url!r} is not a usable {name}", code="mpesa_invalid_result_url")


def check_c2b_url(url: str, name: str) -> str:
    """A URL Daraja will register for C2B (§7.1 keyword and host rules), or ``InvalidInput``."""
    host = urlsplit(url).hostname or ""
    if (
        not _usable_url(url)
        or any(word in url.lower() for word in C2B_URL_KEYWORDS)
        or any(blocked in host for blocked in C2B_BLOCKED_HOSTS)
    ):
        raise InvalidInput(
            f"{url!r} is not a usable {name}: http(s), and none of {', '.join(C2B_URL_KEYWORDS)}",
            code="mpesa_invalid_c2b_url",
        )
    return url


def _check_shortcode(shortcode: str) -> str:
    if not SHORTCODE.match(shortcode):
        raise InvalidInput(f"{shortcode!r} is not an M-Pesa shortcode", code="mpesa_invalid_shortcode")
    return shortcode


def _check_transaction_id(transaction_id: str) -> str:
    cleaned = transaction_id.strip()
    if not TRANSACTION_ID.match(cleaned):
        raise InvalidInput(f"{transaction_id!r} is not an M-Pesa receipt", code="mpesa_invalid_transaction_id")
    return cleaned


def _check_remarks(remarks: str, *, min_len: int) -> str:
    if not min_len <= len(remarks.strip()) <= MAX_REMARKS:
        raise InvalidInput(
            f"Remarks must be {min_len}..{MAX_REMARKS} characters, got {len(remarks.strip())}",
            code="mpesa_remarks_length",
        )
    return remarks


def daraja_pull_time(at: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` on the Nairobi wall clock, as the Pull API takes its window."""
    if at.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware time")
    return at.astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class PullTransaction:
    """One Pull API row (§10): a payment to the shortcode in the last 48 hours.

    ``msisdn`` may be masked (``2547 ***** 126``): never key on it; ``transaction_id`` is the receipt.
    """

    transaction_id: str
    trx_date: datetime | None
    msisdn: str
    transaction_type: str
    bill_reference: str
    amount: Money
    organization_name: str


def _pull_rows(raw: Any) -> list[dict[str, Any]]:
    # Rows come as [[row, ...]] (or, for none, the string "[[]]"): flatten whatever nesting arrives.
    if isinstance(raw, str):
        try:
            raw = jsonlib.loads(raw)
        except ValueError:
            return []
    if isinstance(raw, dict):
        return [raw]
    if not isinstance(raw, list):
        return []
    return [row for item in raw for row in _pull_rows(item)]


def _pull_transaction(row: Mapping[str, Any]) -> PullTransaction:
    transaction_id = row.get("transactionId")
    try:
        shillings = Decimal(str(row.get("amount")))
    except InvalidOperation:
        shillings = Decimal(-1)
    if not isinstance(transaction_id, str) or not transaction_id or not shillings.is_finite() or shillings <= 0:
        raise PaymentGatewayError(f"Daraja sent a malformed Pull row: {row!r}", code="mpesa_pull_malformed")
    try:
        trx_date: datetime | None = datetime.fromisoformat(str(row.get("trxDate")))
    except ValueError:
        trx_date = None
    if trx_date is not None and trx_date.tzinfo is None:
        trx_date = trx_date.replace(tzinfo=NAIROBI)  # unverified either way; the sample carries a Z
    cents = int((shillings * MINOR_PER_MAJOR["KES"]).to_integral_value())
    return PullTransaction(
        transaction_id=transaction_id,
        trx_date=trx_date,
        msisdn=str(row.get("msisdn", "")),
        transaction_type=str(row.get("transactiontype", "")),
        bill_reference=str(row.get("billreference") or ""),
        amount=Money(cents, "KES"),
        organization_name=str(row.get("organizationname", "")),
    )


def _error_code(payload: Mapping[str, Any]) -> str | None:
    code = payload.get("errorCode")
    return str(code) if code is not None else None


def _error_message(payload: Mapping[str, Any]) -> str:
    return str(payload.get("errorMessage", ""))


def _is_invalid_token(status: int, payload: Mapping[str, Any]) -> bool:
    return status == 401 or _error_code(payload) in INVALID_TOKEN_CODES


def _is_pending(status: int, payload: Mapping[str, Any]) -> bool:
    return (
        status == 500
        and _error_code(payload) == "500.001.1001"
        and "being processed" in _error_message(payload).lower()
    )


def provider_error(status: int, payload: Mapping[str, Any]) -> PaymentGatewayError:
    """Translate a Daraja error answer (HTTP status + ``errorCode``/``errorMessage``) into the port's error."""
    code, message = _error_code(payload), _error_message(payload)
    detail = f"Daraja answered HTTP {status} {code or ''} {message}".strip()
    if code == "500.001.1001":
        if "lock subscriber" in message.lower():
            # Another prompt is open on the phone: wait at least a minute before pushing again.
            return GatewayUnavailable(detail, code="mpesa_subscriber_locked", provider_code=code, retry_after_s=60.0)
        return GatewayConfigurationError(detail, code="mpesa_merchant_rejected", provider_code=code)
    if code == "500.003.03":
        return GatewayUnavailable(detail, code="mpesa_quota_exceeded", provider_code=code, retry_after_s=60.0)
    if code == "500.003.1001" and "already registered" in message.lower():
        # Production registers C2B URLs once; changing them is a request to Safaricom (§7.1).
        return GatewayConfigurationError(detail, code="mpesa_c2b_urls_already_registered", provider_code=code)
    if status >= 500:
        return GatewayUnavailable(detail, code="mpesa_unavailable", provider_code=code)
    if code in INVALID_TOKEN_CODES or status == 401:
        return GatewayConfigurationError(detail, code="mpesa_token_rejected", provider_code=code)
    # 400.002.02 (a field we sent), 400.008.0x (OAuth), 404.001.04, 405.001: all our mistakes.
    return GatewayConfigurationError(detail, code="mpesa_request_rejected", provider_code=code)


class DarajaGateway:
    """``MpesaGateway`` and ``MpesaOrgApi`` over Daraja's HTTP API for one shortcode and one consumer key.

    ``initiator`` and ``security_credential`` (the pre-encrypted SecurityCredential string) are
    needed only by Transaction Status and Reversal.
    """

    def __init__(
        self,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        shortcode: str,
        passkey: str,
        http: aiohttp.ClientSession,
        clock: Clock,
        *,
        transaction_type: str = "CustomerPayBillOnline",
        party_b: str | None = None,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        attempts: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 4.0,
        initiator: str = "",
        security_credential: str = "",
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._basic = "Basic " + base64.b64encode(f"{consumer_key}:{consumer_secret}".encode()).decode()
        self._shortcode = shortcode
        self._passkey = passkey
        self._http = http
        self._clock = clock
        self._transaction_type = transaction_type
        self._party_b = party_b or shortcode
        self._backoff = Backoff(attempts=attempts, first_s=backoff_s, max_s=max_backoff_s, timeout=timeout)
        self._tokens = TokenCache(self._fetch_token, clock, margin_s=TOKEN_REFRESH_MARGIN_S, min_fraction=2)
        self._initiator = initiator
        self._security_credential = security_credential

    # ---- the port ----

    async def stk_push(self, request: StkPushRequest) -> StkPushAccepted:
        """Send an STK Push; field rules are enforced before any HTTP request."""
        amount = daraja_amount(request.amount)
        phone = daraja_msisdn(request.msisdn)
        _check_fields(request)
        status, payload = await self._authorized(STK_PUSH_PATH, self._push_body(request, amount, phone), replay=False)
        if status != 200:
            raise provider_error(status, payload)
        response_code = str(payload.get("ResponseCode", ""))
        checkout_id = payload.get("CheckoutRequestID")
        if response_code != "0" or not isinstance(checkout_id, str):
            failure = classify_result_code(response_code) or FailureClass.TRANSIENT
            raise PaymentGatewayError(
                f"Daraja did not accept the push: {payload.get('ResponseDescription', payload)}",
                code="mpesa_push_not_accepted",
                failure_class=failure,
                provider_code=response_code or None,
            )
        return StkPushAccepted(
            merchant_request_id=str(payload.get("MerchantRequestID", "")),
            checkout_request_id=checkout_id,
            customer_message=str(payload.get("CustomerMessage", "")),
        )

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """Ask for a push's state; the HTTP 500 "being processed" answer is ``PENDING``."""
        if not checkout_request_id:
            raise InvalidInput("a CheckoutRequestID is required", code="mpesa_missing_checkout_id")
        body = {**self._credentials(), "CheckoutRequestID": checkout_request_id}
        status, payload = await self._authorized(STK_QUERY_PATH, body, replay=True)
        if _is_pending(status, payload):
            return StkQueryResult(status=StkStatus.PENDING, result_desc=_error_message(payload))
        if status != 200:
            raise provider_error(status, payload)
        raw_code = payload.get("ResultCode")
        if raw_code is None:
            return StkQueryResult(status=StkStatus.PENDING, result_desc=str(payload.get("ResponseDescription", "")))
        code = str(raw_code).strip()
        failure = classify_result_code(code)
        return StkQueryResult(
            status=StkStatus.SUCCEEDED if failure is None else StkStatus.FAILED,
            result_code=code,
            result_desc=str(payload.get("ResultDesc", "")),
            failure_class=failure,
        )

    # ---- MpesaOrgApi ----

    async def register_c2b_urls(
        self, *, shortcode: str, confirmation_url: str, validation_url: str, response_type: str = "Completed"
    ) -> None:
        """Register the paybill's confirmation and validation URLs (``ResponseType`` Completed|Cancelled)."""
        if response_type not in C2B_RESPONSE_TYPES:
            raise InvalidInput(
                f"ResponseType must be Completed or Cancelled, exactly, not {response_type!r}",
                code="mpesa_invalid_response_type",
            )
        body = {
            "ShortCode": _check_shortcode(shortcode),
            "ResponseType": response_type,
            "ConfirmationURL": check_c2b_url(confirmation_url, "ConfirmationURL"),
            "ValidationURL": check_c2b_url(validation_url, "ValidationURL"),
        }
        status, payload = await self._authorized(C2B_REGISTER_PATH, body, replay=False)
        self._accepted(status, payload, "C2B URL registration")

    async def transaction_status(
        self, transaction_id: str, *, result_url: str, timeout_url: str, remarks: str = "Reconciliation"
    ) -> AsyncRequestAccepted:
        """Ask for the status of a receipt (``TransactionID``); the answer is POSTed to ``result_url``."""
        return await self._transaction_status(
            {"TransactionID": _check_transaction_id(transaction_id)}, result_url, timeout_url, remarks
        )

    async def transaction_status_by_conversation(
        self, original_conversation_id: str, *, result_url: str, timeout_url: str, remarks: str = "Reconciliation"
    ) -> AsyncRequestAccepted:
        """Transaction Status by ``OriginalConversationID``, for a payment whose receipt we never got
        (an STK success known only from Query: its MerchantRequestID, §13.14)."""
        cleaned = original_conversation_id.strip()
        if not cleaned or len(cleaned) > 128 or any(c.isspace() for c in cleaned):
            raise InvalidInput(
                f"{original_conversation_id!r} is not a conversation ID", code="mpesa_invalid_conversation_id"
            )
        return await self._transaction_status({"OriginalConversationID": cleaned}, result_url, timeout_url, remarks)

    async def reverse(
        self, transaction_id: str, amount: Money, *, result_url: str, timeout_url: str, remarks: str
    ) -> AsyncRequestAccepted:
        """Reverse a whole receipt (full reversals only); the answer is POSTed to ``result_url``."""
        shillings = daraja_amount(amount)
        body = {
            **self._operator(),
            "CommandID": "TransactionReversal",
            "TransactionID": _check_transaction_id(transaction_id),
            "Amount": str(shillings),
            "ReceiverParty": self._shortcode,
            # Misspelled in the real API; the correct spelling is refused (§9, Daraja FAQ).
            "RecieverIdentifierType": "11",
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": _check_remarks(remarks, min_len=2),
        }
        _check_result_urls(result_url, timeout_url)
        status, payload = await self._authorized(REVERSAL_PATH, body, replay=False)
        return self._accepted(status, payload, "reversal")

    # ---- C2B simulate (sandbox) and Pull ----

    async def c2b_simulate(
        self, shortcode: str, msisdn: str, amount: Money, bill_ref: str, *, command_id: str = "CustomerPayBillOnline"
    ) -> str:
        """Make a sandbox customer pay ``shortcode``; returns the ``OriginatorCoversationID``.

        Sandbox only: refused before any I/O when the base URL is production Daraja.
        """
        if urlsplit(self._base_url).hostname == PRODUCTION_HOST:
            raise GatewayConfigurationError(
                "C2B simulate exists only in the Daraja sandbox", code="mpesa_simulate_in_production"
            )
        if command_id not in C2B_COMMANDS:
            raise InvalidInput(f"{command_id!r} is not a C2B CommandID", code="mpesa_invalid_command_id")
        paybill = command_id == "CustomerPayBillOnline"
        if len(bill_ref) > MAX_BILL_REF or (paybill and not bill_ref.strip()):
            raise InvalidInput(
                f"BillRefNumber must be 1..{MAX_BILL_REF} characters for a paybill", code="mpesa_bill_ref_length"
            )
        body = {
            "ShortCode": _check_shortcode(shortcode),
            "CommandID": command_id,
            "Amount": daraja_amount(amount),
            "Msisdn": daraja_msisdn(msisdn),
            "BillRefNumber": bill_ref,
        }
        status, payload = await self._authorized(C2B_SIMULATE_PATH, body, replay=False)
        return self._accepted(status, payload, "C2B simulate").originator_conversation_id

    async def register_pull(self, shortcode: str, *, nominated_number: str, callback_url: str) -> bool:
        """Register ``shortcode`` for the Pull API (production only, once); False if it already was."""
        if not _usable_url(callback_url):
            raise InvalidInput(f"{callback_url!r} is not a usable CallBackURL", code="mpesa_invalid_callback_url")
        body = {
            "ShortCode": _check_shortcode(shortcode),
            "RequestType": "Pull",
            "NominatedNumber": "0" + daraja_msisdn(nominated_number)[3:],
            "CallBackURL": callback_url,
        }
        # Idempotent: a second registration answers 1001, so a resend is harmless.
        status, payload = await self._authorized(PULL_REGISTER_PATH, body, replay=True)
        if status != 200:
            raise provider_error(status, payload)
        answer = str(payload.get("ResponseStatus", "")).strip()
        if answer not in {"1000", "1001"}:
            raise PaymentGatewayError(
                f"Daraja did not register Pull: {payload.get('ResponseDescription', payload)}",
                code="mpesa_pull_not_registered",
                provider_code=answer or None,
            )
        return answer == "1000"

    async def pull_transactions(
        self, shortcode: str, start: datetime, end: datetime, offset: int = 0
    ) -> list[PullTransaction]:
        """One page of the shortcode's payments between ``start`` and ``end`` (the last 48 hours only),
        from row ``offset``; an empty list once no row is left (``1001``)."""
        if end < start or offset < 0:
            raise InvalidInput("the Pull window must not end before it starts", code="mpesa_invalid_pull_window")
        body = {
            "ShortCode": _check_shortcode(shortcode),
            "StartDate": daraja_pull_time(start),
            "EndDate": daraja_pull_time(end),
            "OffSetValue": str(offset),
        }
        status, payload = await self._authorized(PULL_QUERY_PATH, body, replay=True)
        if status != 200:
            raise provider_error(status, payload)
        code = str(payload.get("ResponseCode", "")).strip()
        if code == "1001":
            return []
        if code != "1000":
            raise PaymentGatewayError(
                f"Daraja answered the Pull query with {code or payload!r}",
                code="mpesa_pull_failed",
                provider_code=code or None,
            )
        return [_pull_transaction(row) for row in _pull_rows(payload.get("Response"))]

    async def _transaction_status(
        self, key: dict[str, str], result_url: str, timeout_url: str, remarks: str
    ) -> AsyncRequestAccepted:
        body = {
            **self._operator(),
            "CommandID": "TransactionStatusQuery",
            **key,
            "PartyA": self._shortcode,
            "IdentifierType": "4",  # an organisation shortcode
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": _check_remarks(remarks, min_len=1),
        }
        _check_result_urls(result_url, timeout_url)
        status, payload = await self._authorized(TRANSACTION_STATUS_PATH, body, replay=False)
        return self._accepted(status, payload, "Transaction Status")

    def _operator(self) -> dict[str, str]:
        if not self._initiator or not self._security_credential:
            raise GatewayConfigurationError(
                "Transaction Status and Reversal need an API operator: set initiator and security_credential",
                code="mpesa_initiator_missing",
            )
        return {"Initiator": self._initiator, "SecurityCredential": self._security_credential}

    @staticmethod
    def _accepted(status: int, payload: Mapping[str, Any], what: str) -> AsyncRequestAccepted:
        if status != 200:
            raise provider_error(status, payload)
        response_code = str(payload.get("ResponseCode", "")).strip()
        if response_code != "0":
            raise PaymentGatewayError(
                f"Daraja did not accept the {what}: {payload.get('ResponseDescription', payload)}",
                code="mpesa_request_not_accepted",
                provider_code=response_code or None,
            )
        # C2B answers spell it "OriginatorCoversationID" (§7.1); the org APIs spell it right.
        originator = payload.get("OriginatorConversationID", payload.get("OriginatorCoversationID", ""))
        return AsyncRequestAccepted(
            originator_conversation_id=str(originator),
            conversation_id=str(payload.get("ConversationID", "")),
            response_description=str(payload.get("ResponseDescription", "")),
        )

    # ---- request bodies ----

    def _credentials(self) -> dict[str, str]:
        timestamp = daraja_timestamp(self._clock.now())
        return {
            "BusinessShortCode": self._shortcode,
            "Password": stk_password(self._shortcode, self._passkey, timestamp),
            "Timestamp": timestamp,
        }

    def _push_body(self, request: StkPushRequest, amount: int, phone: str) -> dict[str, Any]:
        return {
            **self._credentials(),
            "TransactionType": self._transaction_type,
            "Amount": amount,
            "PartyA": phone,
            "PartyB": self._party_b,
            "PhoneNumber": phone,
            "CallBackURL": request.callback_url,
            "AccountReference": request.account_reference,
            "TransactionDesc": request.description,
        }

    # ---- HTTP ----

    async def _fetch_token(self) -> tuple[str, int]:
        status, payload = await self._exchange(
            "GET",
            OAUTH_PATH,
            params={"grant_type": "client_credentials"},
            headers={"Authorization": self._basic},
            replay=True,
        )
        if status != 200:
            raise provider_error(status, payload)
        token = payload.get("access_token")
        try:
            # Documented as a number, observed as the string "3599" (§2).
            expires_in = int(str(payload.get("expires_in", "")).strip())
        except ValueError:
            expires_in = 0
        if not isinstance(token, str) or not token or expires_in <= 0:
            raise GatewayUnavailable("Daraja OAuth answer has no usable token", code="mpesa_bad_token_answer")
        log.info("daraja token refreshed for shortcode %s, expires in %ss", self._shortcode, expires_in)
        return token, expires_in

    async def _authorized(self, path: str, body: dict[str, Any], *, replay: bool) -> tuple[int, dict[str, Any]]:
        token = await self._tokens.get()
        status, payload = await self._send_bearer(path, body, token, replay=replay)
        if _is_invalid_token(status, payload):
            # Another worker (or a portal login) minted a token, killing ours: refresh once, retry once.
            log.info("daraja refused the cached token (%s); refreshing once", _error_code(payload))
            token = await self._tokens.get(stale=token)
            status, payload = await self._send_bearer(path, body, token, replay=replay)
        return status, payload

    async def _send_bearer(
        self, path: str, body: dict[str, Any], token: str, *, replay: bool
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"}
        return await self._exchange("POST", path, json=body, headers=headers, replay=replay)

    def _worth_resending(self, status: int, payload: Mapping[str, Any], *, replay: bool) -> bool:
        if status < 500:
            return False
        code = _error_code(payload)
        if status in REJECTED_UNPROCESSED_STATUSES or code in REJECTED_UNPROCESSED_CODES:
            return True
        return replay and code not in FINAL_5XX_CODES

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        replay: bool,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        return await exchange(
            self._http,
            method,
            self._base_url + path,
            provider="Daraja",
            code_prefix="mpesa",
            backoff=self._backoff,
            replay=replay,
            retry=lambda status, payload, _resent: self._worth_resending(status, payload, replay=replay),
            headers=headers,
            json=json,
            params=params,
        )
