"""Airtel Money (Open API, Kenya) facts the payment flows need without any I/O: the gateway port,
the transaction states, the DP/ESB/ROUTER code classes, the callback body and its ``hash``, by
the rules of ``shared/reference/airtel.md``.

Two rules shape this module. A callback, hashed or not, only *triggers* an enquiry: the ledger
moves when an enquiry answers ``TS`` for a ``transaction.id`` we created (§4.3). And the bytes
behind ``hash`` are not known, so every plausible input is tried and the match is named, letting
real traffic close the question (§4.3, pitfall 8).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Protocol

from lms_domain.errors import InvalidInput
from lms_domain.money import MINOR_PER_MAJOR, Money
from lms_domain.payments.models import FailureClass
from lms_domain.payments.wire import load_json
from lms_domain.phones import normalize_msisdn

log = logging.getLogger("somo.payments.airtel")

AIRTEL_KE_MSISDN = re.compile(r"^[17]\d{8}$")
MAX_TRANSACTION_ID = 64  # PaymentIntent.provider_request_id holds it
MAX_CALLBACK_KEY = 128  # WebhookEvent.event_key


class AirtelTxStatus(StrEnum):
    """``data.transaction.status`` of an enquiry and ``status_code`` of a callback (§5)."""

    SUCCESS = "TS"
    FAILED = "TF"
    AMBIGUOUS = "TA"  # keep polling; never treat as failed
    IN_PROGRESS = "TIP"
    EXPIRED = "TE"  # seen in one Java client only (unverified): treated as failed

    @property
    def is_final(self) -> bool:
        return self in (AirtelTxStatus.SUCCESS, AirtelTxStatus.FAILED, AirtelTxStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class AirtelCollectionRequest:
    """One USSD push. ``transaction_id`` is ours, generated and persisted by the caller before sending.

    ``callback_url`` is honoured by the simulator only: Airtel's callback URL is set once on the
    portal, for every transaction, so production callers leave it ``None``.
    """

    amount: Money
    msisdn: str
    reference: str
    transaction_id: str
    callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class AirtelCollectionAccepted:
    """Airtel took the request (normally ``DP00800001006``, in process); this is *not* a payment."""

    transaction_id: str
    response_code: str
    message: str


@dataclass(frozen=True, slots=True)
class AirtelEnquiryResult:
    """What an enquiry knows. ``amount_minor`` is set only when Airtel sends an amount (the
    documented answer has none); ``failure_class`` only for ``TF`` and ``TE``."""

    transaction_id: str
    status: AirtelTxStatus
    airtel_money_id: str | None
    message: str
    amount_minor: int | None
    failure_class: FailureClass | None
    response_code: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is AirtelTxStatus.SUCCESS


@dataclass(frozen=True, slots=True)
class AirtelRefundResult:
    """A refund Airtel accepted (``result_code`` ``ESB000010``), keyed by Airtel's id (§6).

    ``success_flag`` is kept as sent but decides nothing: the sources disagree on it. Confirm a
    refund by a follow-up enquiry.
    """

    airtel_money_id: str
    status: str
    result_code: str
    response_code: str | None
    message: str
    success_flag: bool | None


class AirtelGateway(Protocol):
    """Airtel Money collection, enquiry and refund as the payment flows need them."""

    async def collect(self, request: AirtelCollectionRequest) -> AirtelCollectionAccepted:
        """Send the push; raise ``InvalidInput`` before any I/O for a request Airtel would refuse."""
        ...

    async def enquire(self, transaction_id: str) -> AirtelEnquiryResult:
        """The state of our transaction ``transaction_id``; ``TA``/``TIP`` mean poll again later."""
        ...

    async def refund(self, airtel_money_id: str) -> AirtelRefundResult:
        """Refund a successful collection by Airtel's id; at most once per payment, recorded first."""
        ...


# ---- field rules ----


def airtel_msisdn(raw: str) -> str:
    """The 9-digit national form Airtel wants ("do not send country code"), or ``InvalidInput``."""
    national = normalize_msisdn(raw).removeprefix("+254")
    if not AIRTEL_KE_MSISDN.match(national):
        raise InvalidInput(f"{raw!r} is not a Kenyan mobile number Airtel can prompt", code="airtel_invalid_phone")
    return national


def airtel_amount(amount: Money, currency: str = "KES") -> int:
    """Whole major units above zero in ``currency``, or ``InvalidInput``."""
    if amount.currency != currency:
        raise InvalidInput(f"this Airtel account charges {currency}, not {amount.currency}", code="airtel_currency")
    whole, rest = divmod(amount.amount_minor, MINOR_PER_MAJOR[currency])
    if rest:
        raise InvalidInput(f"{amount} is not a whole number of {currency}", code="airtel_amount_not_whole")
    if whole <= 0:
        raise InvalidInput("an Airtel collection must be above zero", code="airtel_amount_not_positive")
    return whole


# ---- codes (§7) ----

SUCCESS_CODES = frozenset({"DP00800001001", "DP00900001001", "ESB000010"})
# Not failures by themselves: the transaction status decides. Beside a TF they are transient.
PENDING_CODES = frozenset({"DP00800001000", "DP00800001006", "DP00800001025"})

# Folded into the domain's four classes: ask-user and funding are the customer's to fix,
# retry-soon and "re-check" are transient, permanent-config is ours (an admin must act).
_CODE_CLASSES: dict[str, FailureClass] = {
    "DP00800001000": FailureClass.TRANSIENT,  # ambiguous: run an enquiry
    "DP00800001002": FailureClass.CUSTOMER,  # incorrect PIN
    "DP00800001003": FailureClass.CUSTOMER,  # exceeds withdrawal limit
    "DP00800001004": FailureClass.CONFIGURATION,  # amount below the minimum: our amount
    "DP00800001005": FailureClass.CUSTOMER,  # did not enter the PIN
    "DP00800001006": FailureClass.TRANSIENT,  # in process
    "DP00800001007": FailureClass.CUSTOMER,  # not enough balance
    "DP00800001008": FailureClass.CUSTOMER,  # refused
    "DP00800001009": FailureClass.CUSTOMER,  # do not honor
    "DP00800001010": FailureClass.CONFIGURATION,  # not permitted to payee
    "DP00800001024": FailureClass.TRANSIENT,  # timed out
    "DP00800001025": FailureClass.TRANSIENT,  # not found: re-check by enquiry
    "DP00800001026": FailureClass.CONFIGURATION,  # x-signature and payload did not match
    "DP00800001029": FailureClass.TRANSIENT,  # expired: retry at the next slot
    "ESB000001": FailureClass.TRANSIENT,  # something went wrong
    "ESB000004": FailureClass.TRANSIENT,  # error while initiating payment
    "ESB000008": FailureClass.CONFIGURATION,  # field validation error
    "ESB000011": FailureClass.TRANSIENT,  # failed
    "ESB000014": FailureClass.TRANSIENT,  # error fetching transaction status
    "ESB000033": FailureClass.CONFIGURATION,  # invalid MSISDN length
    "ESB000034": FailureClass.CONFIGURATION,  # invalid country
    "ESB000035": FailureClass.CONFIGURATION,  # invalid currency
    "ESB000036": FailureClass.CONFIGURATION,  # MSISDN length / should start with 0
    "ESB000039": FailureClass.CONFIGURATION,  # vendor not configured for this country
    "ESB000041": FailureClass.CONFIGURATION,  # our transaction id was reused
    "ESB000045": FailureClass.TRANSIENT,  # not found: a race right after initiation
    "ROUTER001": FailureClass.CONFIGURATION,
    "ROUTER003": FailureClass.CONFIGURATION,
    "ROUTER005": FailureClass.CONFIGURATION,
    "ROUTER006": FailureClass.CONFIGURATION,
    "ROUTER007": FailureClass.CONFIGURATION,
    "ROUTER112": FailureClass.CONFIGURATION,
    "ROUTER114": FailureClass.CONFIGURATION,  # 114-117: PIN validation / encryption on our side
    "ROUTER115": FailureClass.CONFIGURATION,
    "ROUTER116": FailureClass.CONFIGURATION,
    "ROUTER117": FailureClass.CONFIGURATION,
}


def classify_airtel_code(code: str | None) -> FailureClass | None:
    """Failure class of a DP, ESB or ROUTER code; ``None`` means success.

    Pending codes (``…1000``, ``…1006``, ``…1025``) classify as transient: alone they are not
    failures (see ``is_pending_code``), but beside a failure they mean "try again".
    """
    text = (code or "").strip().upper()
    if text in SUCCESS_CODES:
        return None
    known = _CODE_CLASSES.get(text)
    if known is None:
        log.warning("unknown Airtel code %r classified as transient", text)
        return FailureClass.TRANSIENT
    return known


def is_pending_code(code: str | None) -> bool:
    """True for the codes that mean "not decided yet: enquire again"."""
    return (code or "").strip().upper() in PENDING_CODES


def failure_class_of(status: AirtelTxStatus, response_code: str | None) -> FailureClass | None:
    """The failure class an enquiry or callback implies; ``None`` unless ``TF`` or ``TE``."""
    if status is AirtelTxStatus.EXPIRED:
        return FailureClass.TRANSIENT
    if status is not AirtelTxStatus.FAILED:
        return None
    # A TF beside a success or missing code still failed; treat it as a retryable hiccup.
    return classify_airtel_code(response_code) or FailureClass.TRANSIENT


# ---- callback (§4) ----


@dataclass(frozen=True, slots=True)
class AirtelCallback:
    """One callback. It only triggers an enquiry: nothing in it may move money by itself."""

    transaction_id: str
    status: AirtelTxStatus
    airtel_money_id: str | None
    message: str
    code: str | None = None
    hash: str | None = None

    @property
    def dedupe_key(self) -> str:
        """``transaction.id`` plus ``status_code``: a TF after a TS is a new event, an anomaly."""
        return f"{self.transaction_id}:{self.status.value}"

    @property
    def failure_class(self) -> FailureClass | None:
        return failure_class_of(self.status, self.code)


def _malformed(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="airtel_callback_malformed")


def _load_object(body: bytes) -> dict[str, Any]:
    payload = load_json(body, what="callback", code="airtel_callback")
    if not isinstance(payload, dict):
        raise _malformed("the callback body is not a JSON object")
    return payload


def _transaction_of(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    transaction = payload.get("transaction")
    if not isinstance(transaction, dict):
        raise _malformed("the callback has no transaction object")
    return transaction


def _identifier(value: Any) -> str | None:
    # IDs are strings; tolerate a JSON number, never a boolean (the docs show ``"id": false``).
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _transaction_id(transaction: Mapping[str, Any]) -> str:
    transaction_id = _identifier(transaction.get("id"))
    if transaction_id is None or len(transaction_id) > MAX_CALLBACK_KEY:
        raise _malformed("the callback has no transaction.id")
    return transaction_id


def airtel_callback_key(body: bytes) -> str:
    """Our ``transaction.id`` in a raw callback body (the inbox key), or ``InvalidInput``."""
    return _transaction_id(_transaction_of(_load_object(body)))


def parse_airtel_callback(body: bytes) -> AirtelCallback:
    """Parse ``{"transaction": {...}, "hash"?: ...}``; unknown extra keys are tolerated (§4.2)."""
    payload = _load_object(body)
    transaction = _transaction_of(payload)
    transaction_id = _transaction_id(transaction)
    raw_status = transaction.get("status_code")
    try:
        status = AirtelTxStatus(raw_status.strip().upper()) if isinstance(raw_status, str) else None
    except ValueError:
        status = None
    if status is None:
        raise _malformed(f"the callback has no known status_code ({raw_status!r})")
    airtel_money_id = _identifier(transaction.get("airtel_money_id"))
    if airtel_money_id is not None and len(airtel_money_id) > 64:
        raise _malformed("the callback's airtel_money_id is too long")
    code = _identifier(transaction.get("code"))
    raw_hash = payload.get("hash")
    return AirtelCallback(
        transaction_id=transaction_id,
        status=status,
        airtel_money_id=airtel_money_id,
        message=str(transaction.get("message") or "")[:255],
        code=code[:32] if code else None,
        hash=raw_hash if isinstance(raw_hash, str) and raw_hash else None,
    )


# ---- the callback hash (§4.3) ----


class HashCandidate(StrEnum):
    """What Airtel might have fed to HMAC-SHA256. The sources disagree, so each is tried."""

    RAW_BODY = "raw_body"  # (a) the exact bytes received
    # (a) as it can actually hold: the received bytes with the top-level "hash" member cut out,
    # since a body cannot carry a MAC of itself.
    RAW_BODY_WITHOUT_HASH = "raw_body_without_hash"
    # (b) JSON.stringify({transaction: ...}): compact, key order as received, non-ASCII kept.
    TRANSACTION_JSON = "transaction_json"


ALL_HASH_CANDIDATES: tuple[HashCandidate, ...] = tuple(HashCandidate)

_HASH_MEMBER = r'"hash"\s*:\s*"(?:[^"\\]|\\.)*"'
_HASH_MEMBER_FORMS = (re.compile(r"\s*,\s*" + _HASH_MEMBER), re.compile(_HASH_MEMBER + r"\s*,\s*"))


def airtel_hmac(message: bytes, secret: str) -> str:
    """Base64 of HMAC-SHA256 over ``message`` with ``secret``, as Airtel describes the ``hash``."""
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _without_hash_member(body: bytes, payload: Mapping[str, Any]) -> bytes | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        # Compared as JSON text: NaN never equals itself as a float.
        expected = json.dumps({k: v for k, v in payload.items() if k != "hash"})
    except (ValueError, RecursionError):
        return None
    for form in _HASH_MEMBER_FORMS:
        for match in form.finditer(text):
            candidate = text[: match.start()] + text[match.end() :]
            try:
                # Only the cut that removes exactly the top-level member yields this object.
                if json.dumps(json.loads(candidate)) == expected:
                    return candidate.encode("utf-8")
            except (ValueError, RecursionError):
                continue
    return None


def hash_inputs(body: bytes, candidates: Sequence[HashCandidate] = ALL_HASH_CANDIDATES) -> dict[HashCandidate, bytes]:
    """The bytes each candidate would have signed; a candidate that cannot apply is left out."""
    try:
        payload = _load_object(body)
    except InvalidInput:
        payload = None
    inputs: dict[HashCandidate, bytes] = {}
    for candidate in candidates:
        if candidate is HashCandidate.RAW_BODY:
            inputs[candidate] = body
        elif payload is None:
            continue
        elif candidate is HashCandidate.RAW_BODY_WITHOUT_HASH:
            stripped = _without_hash_member(body, payload)
            if stripped is not None:
                inputs[candidate] = stripped
        elif isinstance(payload.get("transaction"), dict):
            try:
                compact = json.dumps({"transaction": payload["transaction"]}, separators=(",", ":"), ensure_ascii=False)
                inputs[candidate] = compact.encode("utf-8")
            except (ValueError, RecursionError):  # lone surrogates, absurd nesting: no candidate
                continue
    return inputs


def match_callback_hash(
    body: bytes, secret: str, *, candidates: Sequence[HashCandidate] = ALL_HASH_CANDIDATES
) -> HashCandidate | None:
    """The candidate whose HMAC equals the body's ``hash`` (compared in constant time), or ``None``.

    Record the match: once real traffic has matched, configure that single candidate.
    """
    if not secret:
        return None
    try:
        received = _load_object(body).get("hash")
    except InvalidInput:
        return None
    if not isinstance(received, str) or not received:
        return None
    expected = received.encode("utf-8", "surrogatepass")
    for candidate, message in hash_inputs(body, candidates).items():
        if hmac.compare_digest(airtel_hmac(message, secret).encode("ascii"), expected):
            return candidate
    return None


def verify_callback_hash(
    body: bytes, secret: str, *, candidates: Sequence[HashCandidate] = ALL_HASH_CANDIDATES
) -> bool:
    """True when the body's ``hash`` matches one of ``candidates`` under ``secret``.

    A mismatch must not change state: answer 200, alert, and still run the enquiry (§4.3).
    """
    return match_callback_hash(body, secret, candidates=candidates) is not None


# ---- enquiry answers (§5) ----


def amount_minor_of(value: Any, currency: str = "KES") -> int | None:
    """An optional amount (number or numeric string, major units) in minor units, else ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        major = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not major.is_finite() or major <= 0:
        return None
    minor = major * MINOR_PER_MAJOR.get(currency, 100)
    return int(minor) if minor == minor.to_integral_value() else None


def parse_enquiry(payload: Mapping[str, Any], transaction_id: str, currency: str = "KES") -> AirtelEnquiryResult:
    """Read an enquiry answer's ``data.transaction``; ``InvalidInput`` when it has no known status.

    ``success`` is ignored on purpose: it is false under HTTP 200 for TA (pitfall 10).
    """
    data = payload.get("data")
    transaction = data.get("transaction") if isinstance(data, dict) else None
    if not isinstance(transaction, dict):
        raise InvalidInput("the enquiry answer has no data.transaction", code="airtel_enquiry_malformed")
    raw_status = transaction.get("status")
    try:
        status = AirtelTxStatus(raw_status.strip().upper()) if isinstance(raw_status, str) else None
    except ValueError:
        status = None
    if status is None:
        raise InvalidInput(f"the enquiry answer has no known status ({raw_status!r})", code="airtel_enquiry_malformed")
    envelope = payload.get("status")
    response_code = _identifier(envelope.get("response_code")) if isinstance(envelope, dict) else None
    return AirtelEnquiryResult(
        transaction_id=transaction_id,
        status=status,
        airtel_money_id=_identifier(transaction.get("airtel_money_id")),
        message=str(transaction.get("message") or "")[:255],
        amount_minor=amount_minor_of(transaction.get("amount"), currency),
        failure_class=failure_class_of(status, response_code),
        response_code=response_code,
    )
