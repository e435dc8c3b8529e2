"""C2B (payments the customer starts at a paybill or till) and the Pull API, for the Daraja simulator.

Wire formats follow ``shared/reference/daraja.md`` §7 and §10, typos included: C2B answers carry
``OriginatorCoversationID`` (no "n"), every value of a C2B body is a string, ``OrgAccountBalance``
is empty in the validation request, and a validation reply's ``ResultCode`` is the string ``"0"``.

Register URLs (``/mpesa/c2b/v1|v2/registerurl``, §7.1), checked field by field in this order:

* ``ShortCode`` 5-7 digits; ``ResponseType`` exactly ``Completed`` or ``Cancelled``;
* ``ConfirmationURL`` and ``ValidationURL``: no whitespace, http(s) with a host (https only with
  ``require_https_callback``), none of the keywords M-PESA, mpesa, Safaricom, exe, exec, cmd, SQL,
  query anywhere in the URL in any case, and no tunnelling or echo host (ngrok, mockbin,
  requestbin). Unlike Daraja, loopback and private hosts are allowed: the tests run on loopback;
* a second registration overwrites (the sandbox) unless ``c2b_allow_overwrite`` is off: then
  HTTP 500 ``500.003.1001`` "Urls are already registered" (production).

Simulate (``/mpesa/c2b/v1|v2/simulate``, §7.2-§7.4): ``ShortCode``, ``CommandID``
(``CustomerPayBillOnline`` | ``CustomerBuyGoodsOnline``), whole ``Amount``, ``Msisdn`` and
``BillRefNumber`` (<= 20 characters; required for a paybill). The answer is synchronous; then:

1. with external validation on for the shortcode (``c2b_external_validation``) and URLs
   registered, the validation body is POSTed to ``ValidationURL`` and the simulator waits
   ``c2b_validation_timeout_ms`` for the reply. ``ResultCode`` ``"0"`` (or ``0``) accepts and
   ``C2B00011``..``C2B00016`` reject. No reply, a timeout, a non-200, a non-JSON body or any other
   code fall back to the registered ``ResponseType``: ``Completed`` accepts, ``Cancelled`` rejects.
   A ``ThirdPartyTransID`` in the reply is echoed in the confirmation;
2. an accepted payment is booked (receipt ``TransID``, ledger, balance) and its confirmation, with
   ``OrgAccountBalance`` the balance after it, goes through the dispatcher to ``ConfirmationURL``
   with the faults of ``X-Sim-Faults`` / ``msisdn_faults`` / ``callback_faults``. Without
   registered URLs the payment still completes and nothing is sent (Pull and the statement see it).

The validation round trip needs the reply, which ``CallbackDispatcher`` does not return, so it is
POSTed directly on the app's session. It is still recorded in the ``DeliveryLog``, with key
``<TransID>:validation`` and kind ``result`` (``faults.py`` has no ``validation`` kind); its
verdict is ``C2BRecord.decided_by``. Header ``X-Sim-Validation-Faults: drop;delay=ms`` scripts
it (only those two): a dropped validation counts as an unreachable ``ValidationURL``.

Pull (§10): ``/pulltransactions/v1/register`` answers ``ResponseStatus`` ``"1000"`` (registered)
or ``"1001"`` (already registered); ``/pulltransactions/v1/query`` needs a registration (else
``400.002.02`` "Invalid ShortCode") and returns the shortcode's C2B payments (and STK payments
with ``pull_includes_stk``) completed between ``StartDate`` and ``EndDate`` (Nairobi wall time,
``YYYY-MM-DD H:MM:SS``) and inside the last 48 hours, oldest first, ``pull_page_size`` rows from
row ``OffSetValue``. Unverified, since the docs' sample response only repeats the request: the
envelope ``{"ResponseRefID", "ResponseCode": "1000", "ResponseMessage", "Response": [[rows]]}``,
``"1001"`` with ``"Transaction": "[[]]"`` when no row is left, and ``trxDate`` in UTC.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from server.simulators.daraja import (
    NAIROBI,
    C2BRecord,
    C2BRegistration,
    DarajaError,
    DarajaSimulator,
    Handler,
    LedgerEntry,
    amount_field,
    bad_request,
    check_url,
    digits,
    msisdn_field,
    shortcode_field,
)
from server.simulators.faults import FAULT_HEADER, CallbackFaults, FaultSpecError, parse_faults

VALIDATION_FAULT_HEADER = "X-Sim-Validation-Faults"
RESPONSE_TYPES = ("Completed", "Cancelled")
# CommandID -> (TransactionType in the C2B body and the statement, Pull's transactiontype)
COMMANDS: dict[str, tuple[str, str]] = {
    "CustomerPayBillOnline": ("Pay Bill", "c2b-pay-bill-debit"),
    "CustomerBuyGoodsOnline": ("Buy Goods", "c2b-buy-goods-debit"),
}
URL_KEYWORDS = ("m-pesa", "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")
BLOCKED_HOSTS = ("ngrok", "mockbin", "requestbin")
REJECT_CODES = frozenset(f"C2B0001{n}" for n in range(1, 7))
MAX_BILL_REF = 20
PULL_WINDOW = timedelta(hours=48)
NOMINATED_NUMBER = re.compile(r"^(?:0|254)[17]\d{8}$")


def c2b_url(value: Any, field_name: str, *, require_https: bool) -> str:
    """A registrable C2B URL (§7.1 keyword and host rules), else ``Bad Request - Invalid <field>``."""
    url = check_url(value, field_name, require_https=require_https)
    host = urlsplit(url).hostname or ""
    if any(word in url.lower() for word in URL_KEYWORDS) or any(name in host for name in BLOCKED_HOSTS):
        raise bad_request(field_name)
    return url


def register_urls(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> dict[str, str]:
    """Register (or, in the sandbox, overwrite) a shortcode's confirmation and validation URLs."""
    shortcode = shortcode_field(body, max_digits=7, name="ShortCode")
    response_type = body.get("ResponseType")
    if response_type not in RESPONSE_TYPES:
        raise bad_request("ResponseType")
    https = sim.config.require_https_callback
    confirmation = c2b_url(body.get("ConfirmationURL"), "ConfirmationURL", require_https=https)
    validation = c2b_url(body.get("ValidationURL"), "ValidationURL", require_https=https)
    if shortcode in sim.c2b_urls and not sim.config.c2b_allow_overwrite:
        raise DarajaError(500, "500.003.1001", "Urls are already registered")
    sim.c2b_urls[shortcode] = C2BRegistration(shortcode, str(response_type), confirmation, validation)
    return {"OriginatorCoversationID": sim.request_id(), "ResponseCode": "0", "ResponseDescription": "Success"}


def _validation_faults(header: str | None) -> CallbackFaults:
    if header is None:
        return CallbackFaults()
    try:
        faults = parse_faults(header)
        if faults.copies != 1 or faults.straggler_ms is not None or faults.contradict_after_ms is not None:
            raise FaultSpecError(f"{VALIDATION_FAULT_HEADER} takes only drop and delay")
    except FaultSpecError as exc:
        raise DarajaError(400, "sim.faults", str(exc)) from exc
    return faults


def simulate(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> dict[str, str]:
    """A customer pays a paybill or till: answer at once, then validate and confirm (§7.2-§7.4)."""
    shortcode = shortcode_field(body, max_digits=7, name="ShortCode")
    command = body.get("CommandID")
    if not isinstance(command, str) or command not in COMMANDS:
        raise bad_request("CommandID")
    amount = amount_field(body.get("Amount"))
    msisdn = msisdn_field(body, "Msisdn")
    bill_ref = body.get("BillRefNumber")
    if bill_ref is None and command == "CustomerBuyGoodsOnline":
        bill_ref = ""  # a till has no account number
    paybill = command == "CustomerPayBillOnline"
    if not isinstance(bill_ref, str) or len(bill_ref) > MAX_BILL_REF or (paybill and not bill_ref.strip()):
        raise bad_request("BillRefNumber")
    faults = sim.faults_for(msisdn, request.headers.get(FAULT_HEADER))
    validation_faults = _validation_faults(request.headers.get(VALIDATION_FAULT_HEADER))
    now = sim.config.clock()
    record = C2BRecord(
        trans_id=sim.receipt(now),
        originator_id=sim.request_id(),
        shortcode=shortcode,
        command_id=command,
        amount=amount,
        msisdn=msisdn,
        bill_ref=bill_ref,
        requested_at=now,
    )
    sim.c2b_payments[record.trans_id] = record
    registration = sim.c2b_urls.get(shortcode)
    if registration is not None and shortcode in sim.config.c2b_external_validation:
        work = _validate_then_confirm(sim, record, registration, faults, validation_faults)
        sim.spawn(work, name=f"daraja-c2b-validation-{record.trans_id}")
    else:
        _complete(sim, record, registration, faults, decided_by="no-validation", third_party_trans_id="")
    return {
        "OriginatorCoversationID": record.originator_id,
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully.",
    }


def c2b_body(sim: DarajaSimulator, record: C2BRecord, *, org_balance: str, third_party_trans_id: str) -> dict[str, str]:
    """The validation/confirmation body (§7.3): every value a string, names upper case."""
    first, middle, last = sim.payer(record.msisdn)
    return {
        "TransactionType": COMMANDS[record.command_id][0],
        "TransID": record.trans_id,
        "TransTime": f"{record.requested_at.astimezone(NAIROBI):%Y%m%d%H%M%S}",
        "TransAmount": f"{record.amount}.00",
        "BusinessShortCode": record.shortcode,
        "BillRefNumber": record.bill_ref,
        "InvoiceNumber": "",
        "OrgAccountBalance": org_balance,
        "ThirdPartyTransID": third_party_trans_id,
        "MSISDN": sim.shown_msisdn(record.msisdn),
        "FirstName": first,
        "MiddleName": middle,
        "LastName": last,
    }


def _complete(
    sim: DarajaSimulator,
    record: C2BRecord,
    registration: C2BRegistration | None,
    faults: CallbackFaults,
    *,
    decided_by: str,
    third_party_trans_id: str,
) -> None:
    record.status, record.decided_by = "completed", decided_by
    entry = sim.post(
        LedgerEntry(
            receipt=record.trans_id,
            kind="c2b",
            shortcode=record.shortcode,
            msisdn=record.msisdn,
            payer=sim.payer(record.msisdn),
            amount=record.amount,
            credit=True,
            initiated_at=record.requested_at,
            completed_at=record.requested_at,
            reason_type=COMMANDS[record.command_id][0],
            account=record.bill_ref,
            originator_id=record.originator_id,
        )
    )
    if registration is None:
        return
    body = c2b_body(sim, record, org_balance=f"{entry.balance_after:.2f}", third_party_trans_id=third_party_trans_id)
    # A confirmation has nothing to contradict it: that fault is STK-only.
    sim.dispatcher.submit(
        url=registration.confirmation_url,
        key=record.trans_id,
        body=body,
        faults=replace(faults, contradict_after_ms=None),
        after_ms=sim.config.processing_ms,
    )


async def _validate_then_confirm(
    sim: DarajaSimulator,
    record: C2BRecord,
    registration: C2BRegistration,
    faults: CallbackFaults,
    validation_faults: CallbackFaults,
) -> None:
    accepted, decided_by, third_party_trans_id = await _ask_validation(sim, record, registration, validation_faults)
    if accepted:
        _complete(sim, record, registration, faults, decided_by=decided_by, third_party_trans_id=third_party_trans_id)
    else:
        record.status, record.decided_by = "rejected", decided_by


async def _ask_validation(
    sim: DarajaSimulator, record: C2BRecord, registration: C2BRegistration, faults: CallbackFaults
) -> tuple[bool, str, str]:
    """(accepted, how it was decided, ThirdPartyTransID) after one validation round trip."""
    fallback = (registration.response_type == "Completed", f"fallback:{registration.response_type}", "")
    if faults.delay_ms:
        await asyncio.sleep(faults.delay_ms / 1000)
    body = c2b_body(sim, record, org_balance="", third_party_trans_id="")
    url = registration.validation_url
    attempt = sim.log.record(sim.config.clock(), url, f"{record.trans_id}:validation", "result", body)
    if faults.drop:
        attempt.dropped = True
        return fallback
    if sim.http is None:  # the app is not running: nothing can be sent
        attempt.error = "no outbound session"
        return fallback
    timeout = aiohttp.ClientTimeout(total=sim.config.c2b_validation_timeout_ms / 1000)
    try:
        async with sim.http.post(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, timeout=timeout
        ) as response:
            attempt.status = response.status
            raw = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        attempt.error = f"{type(exc).__name__}: {exc}"
        return fallback
    try:
        reply = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        reply = None
    if attempt.status != 200 or not isinstance(reply, dict) or reply.get("ResultCode") is None:
        return fallback
    code = str(reply["ResultCode"]).strip()
    if code == "0":
        third_party = reply.get("ThirdPartyTransID")
        return True, "validation:0", third_party if isinstance(third_party, str) else ""
    if code in REJECT_CODES:
        return False, f"validation:{code}", ""
    return fallback


# ---- Pull (§10) ----


def pull_register(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> dict[str, str]:
    """The one-time Pull registration: ``1000`` registered, ``1001`` already registered."""
    shortcode = shortcode_field(body, max_digits=7, name="ShortCode")
    if body.get("RequestType") != "Pull":
        raise bad_request("RequestType")
    nominated = digits(body.get("NominatedNumber"))
    if nominated is None or not NOMINATED_NUMBER.match(nominated):
        raise bad_request("NominatedNumber")
    check_url(body.get("CallBackURL"), "CallBackURL", require_https=sim.config.require_https_callback)
    reference = sim.request_id()
    if shortcode in sim.pull_registrations:
        status, description = "1001", "Shortcode already Registered"
    else:
        sim.pull_registrations[shortcode] = reference
        status, description = "1000", "Shortcode Registered Successfully"
    return {
        "ResponseRefID": reference,
        "ResponseStatus": status,
        "ShortCode": shortcode,
        "ResponseDescription": description,
    }


def _pull_time(body: Mapping[str, Any], name: str) -> datetime:
    value = body.get(name)
    if not isinstance(value, str):
        raise bad_request(name)
    try:
        # Nairobi wall time; the docs' sample has a one-digit hour ("2020-08-04 8:36:00").
        return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=NAIROBI)
    except ValueError:
        raise bad_request(name) from None


def pull_row(sim: DarajaSimulator, entry: LedgerEntry) -> dict[str, Any]:
    """One Pull row; ``msisdn`` a number (a masked string when masking is on), ``amount`` a decimal."""
    msisdn: int | str = sim.shown_msisdn(entry.msisdn) if sim.config.mask_msisdn else int(entry.msisdn)
    paybill = entry.reason_type.startswith("Pay Bill")
    return {
        "transactionId": entry.receipt,
        "trxDate": f"{entry.completed_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
        "msisdn": msisdn,
        "transactiontype": COMMANDS["CustomerPayBillOnline" if paybill else "CustomerBuyGoodsOnline"][1],
        "billreference": entry.account,
        "amount": float(entry.amount),
        "organizationname": sim.organisation_name(entry.shortcode),
    }


def pull_query(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> dict[str, Any]:
    """One page of the shortcode's payments in the window (and the last 48 hours)."""
    shortcode = shortcode_field(body, max_digits=7, name="ShortCode")
    start, end = _pull_time(body, "StartDate"), _pull_time(body, "EndDate")
    if end < start:
        raise bad_request("EndDate")
    offset = digits(body.get("OffSetValue"))
    if offset is None:
        raise bad_request("OffSetValue")
    if shortcode not in sim.pull_registrations:
        raise bad_request("ShortCode")
    since = max(start, sim.config.clock() - PULL_WINDOW)
    kinds = ("c2b", "stk") if sim.config.pull_includes_stk else ("c2b",)
    rows = sorted(
        (e for e in sim.ledger if e.kind in kinds and e.shortcode == shortcode and since <= e.completed_at <= end),
        key=lambda e: e.completed_at,
    )
    first = int(offset)
    page = rows[first : first + sim.config.pull_page_size]
    reference = sim.request_id()
    if not page:
        return {
            "ResponseRefID": reference,
            "ResponseCode": "1001",
            "ResponseMessage": "No transactions found",
            "Transaction": "[[]]",
        }
    return {
        "ResponseRefID": reference,
        "ResponseCode": "1000",
        "ResponseMessage": "Success",
        "Response": [[pull_row(sim, entry) for entry in page]],
    }


ROUTES: dict[str, Handler] = {
    "/mpesa/c2b/v1/registerurl": register_urls,
    "/mpesa/c2b/v2/registerurl": register_urls,
    "/mpesa/c2b/v1/simulate": simulate,
    "/mpesa/c2b/v2/simulate": simulate,
    "/pulltransactions/v1/register": pull_register,
    "/pulltransactions/v1/query": pull_query,
}
