"""Airtel Money Africa Open API (Kenya) behind the domain's ``AirtelGateway`` port.

Quirks handled here, all from ``shared/reference/airtel.md``:

* a client-credentials token (JSON body), cached until ``int(expires_in)`` minus a margin, with
  one refresh shared by concurrent callers; ``expires_in`` is a string (§2);
* on a 401, exactly one refresh and one retry, never a loop (§2);
* ``X-Country``/``X-Currency`` on every business call (§1, pitfall 2);
* the 9-digit MSISDN without country code, a whole, positive amount and our own transaction id,
  all checked before any I/O (§3);
* the collection answer means "initiated", never "paid"; its ``data.transaction.id`` may be
  ``false``, so our id is what we return (§3);
* the outcome is read from ``result_code``/``response_code`` and ``data.transaction.status``,
  never from ``success`` (false under HTTP 200 for TA; inconsistent on refunds; pitfall 10);
* ``ESB000045`` right after initiation can be a race, so enquiry retries it before giving up (§5).

Retries: a collection or a refund is not safe to replay blindly, so it is re-sent only when Airtel
certainly did not process it (the connection was never made, a 502/503/429). A call that timed
out after sending raises ``GatewayUnavailable`` with ``outcome_unknown``: enquire with the same
transaction id before creating a new one (pitfall 4). Enquiry and OAuth are re-sent on any
transient fault.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from lms_domain.clock import Clock
from lms_domain.errors import InvalidInput
from lms_domain.payments.airtel import (
    MAX_TRANSACTION_ID,
    SUCCESS_CODES,
    AirtelCollectionAccepted,
    AirtelCollectionRequest,
    AirtelEnquiryResult,
    AirtelRefundResult,
    airtel_amount,
    airtel_msisdn,
    classify_airtel_code,
    is_pending_code,
    parse_enquiry,
)
from lms_domain.payments.models import FailureClass
from lms_domain.payments.ports import GatewayConfigurationError, GatewayUnavailable, PaymentGatewayError
from server.providers.backoff import DEFAULT_TIMEOUT, Backoff, exchange
from server.providers.tokens import TokenCache

log = logging.getLogger("somo.providers.airtel")

OAUTH_PATH = "/auth/oauth2/token"
COLLECTION_PATH = "/merchant/v1/payments/"  # the trailing slash is part of the path
ENQUIRY_PATH = "/standard/v1/payments/"
REFUND_PATH = "/standard/v1/payments/refund"
TOKEN_REFRESH_MARGIN_S = 60
OK_RESULT = "ESB000010"
DUPLICATE_ID = "ESB000041"
NOT_FOUND = "ESB000045"
# Sent to the simulator only: Airtel's callback URL is a portal setting, not a request field.
SIM_CALLBACK_HEADER = "X-Sim-Callback-Url"
# Answers given before Airtel did any work, so even a collection may be re-sent.
REJECTED_UNPROCESSED_STATUSES = frozenset({429, 502, 503})


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    payload: dict[str, Any]

    @property
    def envelope(self) -> Mapping[str, Any]:
        envelope = self.payload.get("status")
        return envelope if isinstance(envelope, dict) else {}

    def code(self, name: str) -> str | None:
        value = self.envelope.get(name)
        return str(value).strip().upper() if value not in (None, "") else None

    @property
    def result_code(self) -> str | None:
        return self.code("result_code")

    @property
    def response_code(self) -> str | None:
        return self.code("response_code")

    @property
    def message(self) -> str:
        return str(self.envelope.get("message") or self.payload.get("error_description") or "")


def provider_error(answer: _Answer, *, operation: str) -> PaymentGatewayError:
    """Translate an Airtel refusal (HTTP status, ``status`` envelope) into the port's error."""
    result, response = answer.result_code, answer.response_code
    # The DP code is the specific reason when it is a failure; ROUTER/ESB codes otherwise.
    specific = response if response and response not in SUCCESS_CODES and not is_pending_code(response) else None
    code = specific or result
    detail = f"Airtel {operation} answered HTTP {answer.status} {code or ''} {answer.message}".strip()
    if answer.status == 401:
        return GatewayConfigurationError(detail, code="airtel_token_rejected", provider_code=code)
    if result == DUPLICATE_ID:
        # Our id was used before: enquire with it; never re-send under it or under a new id blindly.
        return GatewayConfigurationError(detail, code="airtel_duplicate_transaction_id", provider_code=result)
    if result == NOT_FOUND:
        return PaymentGatewayError(
            detail, code="airtel_transaction_not_found", failure_class=FailureClass.TRANSIENT, provider_code=result
        )
    if code is None:
        if answer.status == 429:
            return GatewayUnavailable(detail, code="airtel_rate_limited", retry_after_s=60.0)
        if answer.status >= 500 or answer.status < 400:
            return GatewayUnavailable(detail, code="airtel_unavailable")
        return GatewayConfigurationError(detail, code="airtel_request_rejected")
    failure = classify_airtel_code(code) or FailureClass.TRANSIENT
    if failure is FailureClass.CONFIGURATION:
        return GatewayConfigurationError(detail, code="airtel_request_rejected", provider_code=code)
    if failure is FailureClass.TRANSIENT:
        return GatewayUnavailable(detail, code="airtel_unavailable", provider_code=code)
    return PaymentGatewayError(detail, code="airtel_declined", failure_class=failure, provider_code=code)


class AirtelGateway:
    """``lms_domain.payments.airtel.AirtelGateway`` over the Open API for one client id and country."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        http: aiohttp.ClientSession,
        clock: Clock,
        country: str = "KE",
        currency: str = "KES",
        *,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        attempts: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 4.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._http = http
        self._clock = clock
        self._country = country
        self._currency = currency
        self._backoff = Backoff(attempts=attempts, first_s=backoff_s, max_s=max_backoff_s, timeout=timeout)
        self._tokens = TokenCache(self._fetch_token, clock, margin_s=TOKEN_REFRESH_MARGIN_S, min_fraction=3)

    # ---- the port ----

    async def collect(self, request: AirtelCollectionRequest) -> AirtelCollectionAccepted:
        """Send a USSD push under our ``transaction_id``; field rules are enforced before any I/O."""
        amount = airtel_amount(request.amount, self._currency)
        msisdn = airtel_msisdn(request.msisdn)
        transaction_id = _transaction_id(request.transaction_id)
        if not request.reference.strip():
            raise InvalidInput("an Airtel collection needs a reference", code="airtel_missing_reference")
        body = {
            "reference": request.reference,
            "subscriber": {"country": self._country, "currency": self._currency, "msisdn": msisdn},
            "transaction": {
                "amount": amount,
                "country": self._country,
                "currency": self._currency,
                "id": transaction_id,
            },
        }
        extra = {SIM_CALLBACK_HEADER: request.callback_url} if request.callback_url else {}
        answer = await self._authorized("POST", COLLECTION_PATH, body, replay=False, extra_headers=extra)
        if answer.status != 200 or answer.result_code != OK_RESULT:
            raise provider_error(answer, operation="collection")
        response_code = answer.response_code or ""
        # DP00800001006 ("in process") is the normal answer; a DP failure here is a refusal.
        if response_code and not is_pending_code(response_code) and classify_airtel_code(response_code):
            raise provider_error(answer, operation="collection")
        return AirtelCollectionAccepted(
            transaction_id=transaction_id, response_code=response_code, message=answer.message
        )

    async def enquire(self, transaction_id: str) -> AirtelEnquiryResult:
        """Ask for our transaction's state; ``TA``/``TIP`` come back as results to poll again."""
        transaction_id = _transaction_id(transaction_id)
        path = ENQUIRY_PATH + quote(transaction_id, safe="")
        answer = await self._authorized("GET", path, None, replay=True)
        if answer.status != 200 or answer.result_code not in (OK_RESULT, None):
            raise provider_error(answer, operation="enquiry")
        try:
            return parse_enquiry(answer.payload, transaction_id, self._currency)
        except InvalidInput as exc:
            raise GatewayUnavailable(
                f"Airtel enquiry answer for {transaction_id} has no usable status: {exc.detail}",
                code="airtel_bad_answer",
            ) from exc

    async def refund(self, airtel_money_id: str) -> AirtelRefundResult:
        """Refund a paid collection by Airtel's id; confirm it afterwards by an enquiry."""
        money_id = airtel_money_id.strip()
        if not money_id:
            raise InvalidInput("a refund needs the airtel_money_id", code="airtel_missing_money_id")
        body = {"transaction": {"airtel_money_id": money_id}}
        answer = await self._authorized("POST", REFUND_PATH, body, replay=False)
        if answer.status != 200 or answer.result_code != OK_RESULT:
            raise provider_error(answer, operation="refund")
        data = answer.payload.get("data")
        transaction = data.get("transaction") if isinstance(data, dict) else None
        transaction = transaction if isinstance(transaction, dict) else {}
        success = answer.envelope.get("success")
        return AirtelRefundResult(
            airtel_money_id=str(transaction.get("airtel_money_id") or money_id),
            status=str(transaction.get("status") or ""),
            result_code=OK_RESULT,
            response_code=answer.response_code,
            message=answer.message,
            success_flag=success if isinstance(success, bool) else None,
        )

    # ---- HTTP ----

    async def _fetch_token(self) -> tuple[str, int]:
        body = {"client_id": self._client_id, "client_secret": self._client_secret, "grant_type": "client_credentials"}
        answer = await self._exchange("POST", OAUTH_PATH, body, headers={"Accept": "*/*"}, replay=True)
        if answer.status != 200:
            if answer.status in (400, 401, 403):
                raise GatewayConfigurationError(
                    f"Airtel refused our client credentials: HTTP {answer.status} {answer.message}",
                    code="airtel_credentials_rejected",
                )
            raise provider_error(answer, operation="token")
        token = answer.payload.get("access_token")
        try:
            # A string in the docs ("180"); accept a number too.
            expires_in = int(str(answer.payload.get("expires_in", "")).strip())
        except ValueError:
            expires_in = 0
        if not isinstance(token, str) or not token or expires_in <= 0:
            raise GatewayUnavailable("Airtel OAuth answer has no usable token", code="airtel_bad_token_answer")
        log.info("airtel token refreshed for country %s, expires in %ss", self._country, expires_in)
        return token, expires_in

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "*/*",
            "X-Country": self._country,
            "X-Currency": self._currency,
        }

    async def _authorized(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        replay: bool,
        extra_headers: Mapping[str, str] | None = None,
    ) -> _Answer:
        token = await self._tokens.get()
        headers = {**self._headers(token), **(extra_headers or {})}
        answer = await self._exchange(method, path, body, headers=headers, replay=replay)
        if answer.status == 401:
            # A 401 means nothing was processed: refresh once, retry once, whatever the call.
            log.info("airtel refused the cached token; refreshing once")
            token = await self._tokens.get(stale=token)
            headers = {**self._headers(token), **(extra_headers or {})}
            answer = await self._exchange(method, path, body, headers=headers, replay=replay)
        return answer

    def _worth_resending(self, answer: _Answer, *, replay: bool, path: str) -> bool:
        if answer.status in REJECTED_UNPROCESSED_STATUSES:
            return True
        if not replay:
            return False
        if answer.result_code == NOT_FOUND:
            return path.startswith(ENQUIRY_PATH)  # the enquiry may have raced the collection
        return answer.status >= 500 or answer.result_code == "ESB000014"

    async def _exchange(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        headers: Mapping[str, str],
        replay: bool,
    ) -> _Answer:
        """One logical call with bounded exponential backoff over transient faults."""

        def retry(status: int, payload: dict[str, Any], resent: bool) -> bool:
            answer = _Answer(status, payload)
            if resent and not replay and answer.result_code == DUPLICATE_ID:
                # An earlier attempt of this very call reached Airtel after all.
                raise GatewayUnavailable(
                    f"Airtel already has this transaction id after a re-send of {path}: enquire",
                    code="airtel_outcome_unknown",
                    provider_code=DUPLICATE_ID,
                    outcome_unknown=True,
                )
            return self._worth_resending(answer, replay=replay, path=path)

        status, payload = await exchange(
            self._http,
            method,
            self._base_url + path,
            provider="Airtel",
            code_prefix="airtel",
            backoff=self._backoff,
            replay=replay,
            retry=retry,
            headers=headers,
            json=body,
        )
        return _Answer(status, payload)


def _transaction_id(value: str) -> str:
    text = value.strip()
    if not text or len(text) > MAX_TRANSACTION_ID or any(c.isspace() for c in text):
        raise InvalidInput(
            f"an Airtel transaction id must be 1..{MAX_TRANSACTION_ID} characters without spaces",
            code="airtel_invalid_transaction_id",
        )
    return text
