"""M-Pesa STK facts the payment flows need without any I/O: the ResultCode classes and the
callback body, parsed by the rules of ``shared/reference/daraja.md`` §4.4-§5.

The callback is parsed here, not in the HTTP adapter, because the inbox stores the raw body
and settlement re-reads it: replaying an inbox row must never depend on the channel.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lms_domain.clock import NAIROBI
from lms_domain.errors import InvalidInput
from lms_domain.money import MINOR_PER_MAJOR
from lms_domain.payments.models import FailureClass

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
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the callback body is not JSON", code="mpesa_callback_not_json") from exc
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
