"""M-Pesa STK facts the payment flows need without any I/O: the ResultCode classes and the
callback body, parsed by the rules of ``shared/reference/daraja.md`` §4.4-§5.

The callback is parsed here, not in the HTTP adapter, because the inbox stores the raw body
and settlement re-reads it: replaying an inbox row must never depend on the channel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lms_domain.clock import NAIROBI
from lms_domain.errors import InvalidInput
from lms_domain.money import MINOR_PER_MAJOR
from lms_domain.payments.models import FailureClass
from lms_domain.payments.wire import load_json

log = logging.getLogger("somo.payments.mpesa")

# STK ResultCodes (§5), folded into the domain's four classes: ask-user and funding are the
# customer's to fix; 1037 is a phone that is off; retry-soon is transient; permanent-config is ours.
_RESULT_CLASSES: dict[str, FailureClass] = {
    "1": FailureClass.CUSTOMER,  # insufficient funds
    "4": FailureClass.CUSTOMER,  # customer's daily limit
    "1031": FailureClass.CUSTOMER,  # cancelled (alias seen in the wild)
    "1032": FailureClass.CUSTOMER,  # cancelled by the customer
    "2001": FailureClass.CUSTOMER,  # wrong PIN
    "8006": FailureClass.CUSTOMER,  # PIN locked; they must call customer care
    "1037": FailureClass.UNREACHABLE,  # phone off, busy or in another session
    "17": FailureClass.TRANSIENT,  # same amount, same customer within 2 minutes
    "26": FailureClass.TRANSIENT,  # system busy
    "1001": FailureClass.TRANSIENT,  # subscriber locked in another session
    "1019": FailureClass.TRANSIENT,  # the prompt expired unanswered
    "2": FailureClass.CONFIGURATION,  # below the minimum: our amount
    "3": FailureClass.CONFIGURATION,  # above the per-transaction maximum
    "8": FailureClass.CONFIGURATION,  # merchant balance limit
    "1025": FailureClass.CONFIGURATION,  # prompt too long: shorten AccountReference
    "9999": FailureClass.CONFIGURATION,  # error sending push, treated like 1025
    "2028": FailureClass.CONFIGURATION,  # TransactionType/PartyB mismatch
    "SFC_IC0003": FailureClass.CONFIGURATION,  # same mismatch, other spelling
}


def classify_result_code(code: str | int) -> FailureClass | None:
    """Failure class of an STK callback or Query ResultCode; ``None`` means paid."""
    text = str(code).strip()
    if text == "0":
        return None
    known = _RESULT_CLASSES.get(text)
    if known is None:
        log.warning("unknown Daraja ResultCode %r classified as transient", text)
        return FailureClass.TRANSIENT
    return known


@dataclass(frozen=True, slots=True)
class StkCallback:
    """One STK callback; the receipt, amount and time are set only on success (ResultCode 0)."""

    checkout_request_id: str
    merchant_request_id: str
    result_code: str
    result_desc: str
    receipt: str | None = None
    amount_minor: int | None = None
    paid_at: datetime | None = None

    @property
    def succeeded(self) -> bool:
        return self.result_code == "0"

    @property
    def failure_class(self) -> FailureClass | None:
        return classify_result_code(self.result_code)


def stk_callback_key(body: bytes) -> str:
    """The CheckoutRequestID of a raw callback body, or ``InvalidInput`` if it has none."""
    return parse_stk_callback(body, strict=False).checkout_request_id


def _transaction_date(value: Any) -> datetime | None:
    # YYYYMMDDHHmmss on the Nairobi wall clock, sent as a JSON number (§4.4).
    try:
        return datetime.strptime(str(value), "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    except ValueError:
        return None


def parse_stk_callback(body: bytes, *, strict: bool = True) -> StkCallback:
    """Parse ``{"Body": {"stkCallback": ...}}``; ``InvalidInput`` for anything else.

    ``strict=False`` only needs the CheckoutRequestID and ResultCode (enough to file the body
    in the inbox); ``strict`` also requires a receipt and a whole-shilling amount on success.
    """
    payload = load_json(body, what="callback", code="mpesa_callback")
    envelope = payload.get("Body") if isinstance(payload, dict) else None
    callback = envelope.get("stkCallback") if isinstance(envelope, dict) else None
    if not isinstance(callback, dict):
        raise InvalidInput("the callback has no Body.stkCallback object", code="mpesa_callback_malformed")
    checkout_id = callback.get("CheckoutRequestID")
    raw_code = callback.get("ResultCode")
    if not isinstance(checkout_id, str) or not checkout_id or len(checkout_id) > 128:
        raise InvalidInput("the callback has no CheckoutRequestID", code="mpesa_callback_malformed")
    if raw_code is None or isinstance(raw_code, bool | dict | list):
        raise InvalidInput("the callback has no ResultCode", code="mpesa_callback_malformed")
    # An integer in callbacks, a string in Query answers (§4.4): compare as text.
    code = str(raw_code).strip()
    result = StkCallback(
        checkout_request_id=checkout_id,
        merchant_request_id=str(callback.get("MerchantRequestID", "")),
        result_code=code,
        result_desc=str(callback.get("ResultDesc", ""))[:255],
    )
    if code != "0" or not strict:
        return result
    metadata = callback.get("CallbackMetadata")
    raw_items = metadata.get("Item") if isinstance(metadata, dict) else None
    if not isinstance(raw_items, list):
        raise InvalidInput("a successful callback has no CallbackMetadata", code="mpesa_callback_malformed")
    # A name -> value map, never by position: length and order vary, Balance has no Value.
    items = {item.get("Name"): item.get("Value") for item in raw_items if isinstance(item, dict)}
    receipt = items.get("MpesaReceiptNumber")
    try:
        shillings = Decimal(str(items.get("Amount")))
    except InvalidOperation:
        shillings = Decimal(-1)
    if not isinstance(receipt, str) or not receipt or len(receipt) > 64:
        raise InvalidInput("a successful callback has no MpesaReceiptNumber", code="mpesa_callback_malformed")
    if not shillings.is_finite() or shillings <= 0 or shillings != shillings.to_integral_value():
        raise InvalidInput("a successful callback has no whole Amount", code="mpesa_callback_malformed")
    return StkCallback(
        checkout_request_id=result.checkout_request_id,
        merchant_request_id=result.merchant_request_id,
        result_code=code,
        result_desc=result.result_desc,
        receipt=receipt,
        amount_minor=int(shillings) * MINOR_PER_MAJOR["KES"],
        paid_at=_transaction_date(items.get("TransactionDate")),
    )


# C2B (paybill) --------------------------------------------------------------------------------

# Validation reject codes (§7.4).
C2B_INVALID_ACCOUNT = "C2B00012"
C2B_INVALID_AMOUNT = "C2B00013"
C2B_INVALID_SHORTCODE = "C2B00015"
C2B_OTHER_ERROR = "C2B00016"


@dataclass(frozen=True, slots=True)
class C2BPayment:
    """A paybill payment the customer started (§7.3); the same shape serves validation and
    confirmation. ``msisdn`` may be masked (``2547 ***** 126``): never key on it."""

    trans_id: str
    trans_type: str
    amount_minor: int
    shortcode: str
    bill_ref: str
    msisdn: str
    payer_name: str
    trans_time: datetime | None = None
    invoice_number: str = ""
    third_party_trans_id: str = ""
    org_balance: str = ""


def _text(payload: dict[str, Any], key: str, limit: int) -> str:
    value = payload.get(key)
    if value is None:
        return ""
    if isinstance(value, bool | dict | list):
        raise InvalidInput(f"{key} is not text", code="mpesa_c2b_malformed")
    return str(value).strip()[:limit]


def parse_c2b_payload(body: bytes) -> C2BPayment:
    """Parse a C2B validation or confirmation body; ``InvalidInput`` without TransID or a whole amount.

    All values arrive as strings (``"5.00"``); an amount with cents is refused, since M-Pesa
    moves whole shillings and a fraction means the body is not what it claims to be.
    """
    payload = load_json(body, what="C2B", code="mpesa_c2b")
    if not isinstance(payload, dict):
        raise InvalidInput("the C2B body is not an object", code="mpesa_c2b_malformed")
    trans_id = _text(payload, "TransID", 64)
    if not trans_id:
        raise InvalidInput("the C2B body has no TransID", code="mpesa_c2b_malformed")
    try:
        shillings = Decimal(_text(payload, "TransAmount", 32) or "x")
    except InvalidOperation:
        shillings = Decimal(-1)
    if not shillings.is_finite() or shillings <= 0 or shillings != shillings.to_integral_value():
        raise InvalidInput("the C2B body has no whole TransAmount", code="mpesa_c2b_malformed")
    names = (_text(payload, part, 60) for part in ("FirstName", "MiddleName", "LastName"))
    return C2BPayment(
        trans_id=trans_id,
        trans_type=_text(payload, "TransactionType", 32),
        amount_minor=int(shillings) * MINOR_PER_MAJOR["KES"],
        shortcode=_text(payload, "BusinessShortCode", 16),
        bill_ref=_text(payload, "BillRefNumber", 64),
        msisdn=_text(payload, "MSISDN", 32),
        payer_name=" ".join(name for name in names if name)[:200],
        trans_time=_transaction_date(_text(payload, "TransTime", 14)),
        invoice_number=_text(payload, "InvoiceNumber", 64),
        third_party_trans_id=_text(payload, "ThirdPartyTransID", 64),
        org_balance=_text(payload, "OrgAccountBalance", 32),
    )


# Asynchronous results: Transaction Status and Reversal (§8, §9) -------------------------------

REVERSAL_ALREADY_REVERSED = "R000001"


@dataclass(frozen=True, slots=True)
class AsyncResult:
    """``{"Result": {...}}`` POSTed to a ResultURL. ``parameters`` is a multimap: keys repeat
    (``DebitPartyName`` twice) and some carry no value at all (§8)."""

    conversation_id: str
    originator_conversation_id: str
    result_code: str
    result_desc: str
    result_type: str
    transaction_id: str
    parameters: dict[str, list[Any]]

    @property
    def succeeded(self) -> bool:
        return self.result_code == "0"

    def first(self, key: str) -> Any:
        """The first value under ``key``, or ``None``."""
        values = self.parameters.get(key)
        return values[0] if values else None

    def amount_minor(self, key: str = "Amount") -> int | None:
        """A whole-shilling amount given as a string (TS) or a number (Reversal), in cents."""
        raw = self.first(key)
        try:
            shillings = Decimal(str(raw))
        except InvalidOperation:
            return None
        if not shillings.is_finite() or shillings <= 0 or shillings != shillings.to_integral_value():
            return None
        return int(shillings) * MINOR_PER_MAJOR["KES"]

    def time(self, key: str) -> datetime | None:
        return _transaction_date(self.first(key))


def parse_async_result(body: bytes) -> AsyncResult:
    """Parse a Transaction Status or Reversal result; ``InvalidInput`` without a ConversationID."""
    payload = load_json(body, what="result", code="mpesa_result")
    result = payload.get("Result") if isinstance(payload, dict) else None
    if not isinstance(result, dict):
        raise InvalidInput("the result has no Result object", code="mpesa_result_malformed")
    conversation_id = result.get("ConversationID")
    raw_code = result.get("ResultCode")
    if not isinstance(conversation_id, str) or not conversation_id or len(conversation_id) > 128:
        raise InvalidInput("the result has no ConversationID", code="mpesa_result_malformed")
    if raw_code is None or isinstance(raw_code, bool | dict | list):
        raise InvalidInput("the result has no ResultCode", code="mpesa_result_malformed")
    parameters: dict[str, list[Any]] = {}
    container = result.get("ResultParameters")
    items = container.get("ResultParameter") if isinstance(container, dict) else None
    if isinstance(items, dict):  # a single parameter may come unwrapped
        items = [items]
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("Key"), str) and "Value" in item:
            parameters.setdefault(item["Key"], []).append(item["Value"])
    return AsyncResult(
        conversation_id=conversation_id,
        originator_conversation_id=str(result.get("OriginatorConversationID", ""))[:128],
        result_code=str(raw_code).strip(),
        result_desc=str(result.get("ResultDesc", ""))[:255],
        # 0 completed, 1 waiting for further messages; an int on some pages, a string on others.
        result_type=str(result.get("ResultType", "0")).strip(),
        transaction_id=str(result.get("TransactionID", ""))[:64],
        parameters=parameters,
    )
