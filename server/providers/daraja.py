"""Safaricom Daraja (M-Pesa Express) behind the domain's ``MpesaGateway`` port.

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
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from lms_domain.clock import NAIROBI, Clock
from lms_domain.errors import InvalidInput
from lms_domain.money import MINOR_PER_MAJOR, MPESA_MAX_KES, MPESA_MIN_KES, Money
from lms_domain.payments.models import FailureClass
from lms_domain.payments.mpesa import classify_result_code
from lms_domain.payments.ports import (
    GatewayConfigurationError,
    GatewayUnavailable,
    PaymentGatewayError,
    StkPushAccepted,
    StkPushRequest,
    StkQueryResult,
    StkStatus,
)
from lms_domain.phones import normalize_msisdn

log = logging.getLogger("somo.providers.daraja")

OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
TOKEN_REFRESH_MARGIN_S = 60
MAX_ACCOUNT_REFERENCE = 12
MAX_TRANSACTION_DESC = 13
DARAJA_MSISDN = re.compile(r"^254[17]\d{8}$")
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
    url = request.callback_url
    parts = urlsplit(url)
    if any(c.isspace() for c in url) or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(f"{url!r} is not a usable CallBackURL", code="mpesa_invalid_callback_url")


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
    if status >= 500:
        return GatewayUnavailable(detail, code="mpesa_unavailable", provider_code=code)
    if code in INVALID_TOKEN_CODES or status == 401:
        return GatewayConfigurationError(detail, code="mpesa_token_rejected", provider_code=code)
    # 400.002.02 (a field we sent), 400.008.0x (OAuth), 404.001.04, 405.001: all our mistakes.
    return GatewayConfigurationError(detail, code="mpesa_request_rejected", provider_code=code)


class _TokenCache:
    """One bearer token per credential set; concurrent callers share a single refresh."""

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, int]]], clock: Clock) -> None:
        self._fetch = fetch
        self._clock = clock
        self._token: str | None = None
        self._refresh_at: datetime | None = None
        self._lock = asyncio.Lock()

    def _current(self, stale: str | None) -> str | None:
        if self._token is None or self._token == stale or self._refresh_at is None:
            return None
        return self._token if self._clock.now() < self._refresh_at else None

    async def get(self, *, stale: str | None = None) -> str:
        """A valid token; ``stale`` names one the provider just refused, forcing a refresh."""
        if token := self._current(stale):
            return token
        async with self._lock:
            # Whoever held the lock before us may already have refreshed it.
            if token := self._current(stale):
                return token
            token, expires_in = await self._fetch()
            margin = min(TOKEN_REFRESH_MARGIN_S, expires_in // 2)
            self._token = token
            self._refresh_at = self._clock.now() + timedelta(seconds=expires_in - margin)
            return token


class DarajaGateway:
    """``MpesaGateway`` over Daraja's HTTP API for one shortcode and one consumer key."""

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
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._basic = "Basic " + base64.b64encode(f"{consumer_key}:{consumer_secret}".encode()).decode()
        self._shortcode = shortcode
        self._passkey = passkey
        self._http = http
        self._clock = clock
        self._transaction_type = transaction_type
        self._party_b = party_b or shortcode
        self._timeout = timeout
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._tokens = _TokenCache(self._fetch_token, clock)

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
        """One logical call with bounded exponential backoff over transient faults."""
        url = self._base_url + path
        delay = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            last = attempt == self._attempts
            try:
                async with self._http.request(
                    method, url, json=json, params=params, headers=headers, timeout=self._timeout
                ) as response:
                    status = response.status
                    payload = await _read_json(response)
            except aiohttp.ClientConnectorError as exc:
                # The connection was never made, so nothing reached Daraja: safe to re-send anything.
                if last:
                    raise GatewayUnavailable(f"Daraja unreachable: {exc}", code="mpesa_unreachable") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not replay:
                    raise GatewayUnavailable(
                        f"Daraja did not answer {path}: {exc!r}; it may have been processed",
                        code="mpesa_outcome_unknown",
                        outcome_unknown=True,
                    ) from exc
                if last:
                    raise GatewayUnavailable(f"Daraja did not answer {path}: {exc!r}", code="mpesa_timeout") from exc
            else:
                if last or not self._worth_resending(status, payload, replay=replay):
                    return status, payload
            log.warning("daraja %s %s attempt %d failed; retrying in %.2fs", method, path, attempt, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _read_json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON object Daraja sent, or ``{}`` for an empty, HTML or otherwise non-object body."""
    try:
        parsed = await response.json(content_type=None)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
