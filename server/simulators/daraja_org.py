"""Transaction Status, Reversal and the organisation statement, for the Daraja simulator.

Wire formats follow ``shared/reference/daraja.md`` §8 and §9: a synchronous acknowledgement
(``OriginatorConversationID``, ``ConversationID`` ``AG_<date>_<hex>``, ``ResponseCode`` ``"0"``),
then a ``{"Result": {...}}`` POSTed to ``ResultURL`` through the dispatcher (key: the
``ConversationID``), so ``X-Sim-Faults`` and the config faults apply and ``/sim/deliveries`` shows it.

Both APIs check ``Initiator`` and ``SecurityCredential`` (non-empty; with ``initiators``
configured, a pair that does not match answers ResultCode ``2001`` asynchronously, as observed),
``ResultURL``, ``QueueTimeOutURL`` and ``Remarks``; ``Occasion`` is optional and comes back in
``ReferenceData``. A malformed field is the usual ``400.002.02 Bad Request - Invalid <field>``.

Transaction Status (``CommandID`` ``TransactionStatusQuery``) looks up ``TransactionID`` (a receipt
of an STK payment, a C2B payment or a reversal), else ``OriginalConversationID``. The docs accept
either; which originator IDs Daraja resolves is unverified, so the simulator resolves the
``MerchantRequestID`` of an STK push (a success known only from STK Query can get its receipt
back, §13.14), the ``OriginatorCoversationID`` of a C2B simulate and the
``OriginatorConversationID`` of a reversal. ``PartyA`` must be the receipt's shortcode (or payer).

=========================  ===========  ====================================================
case                       ResultCode   body
=========================  ===========  ====================================================
known receipt              ``0`` (int)  §8 ``ResultParameters``: ``DebitPartyName`` twice (the
                                        organisation, then the customer, as in the sample),
                                        ``TransactionReason`` and ``DebitPartyCharges`` without
                                        ``Value``, ``Amount`` a string, ``TransactionStatus``
                                        ``Completed``, or ``Reversed`` once reversed
unknown receipt            ``R000002``  "The OriginalTransactionID is invalid." (inferred: the
                                        reference has no TS failure table; this is the reversal
                                        code for an unknown receipt); no ``ResultParameters``
initiator mismatch         ``2001``     "The initiator information is invalid."
=========================  ===========  ====================================================

Reversal (``CommandID`` ``TransactionReversal``) needs ``TransactionID``, a whole ``Amount``,
``ReceiverParty`` (our shortcode) and the misspelled ``RecieverIdentifierType`` ``"11"``: the
correctly spelled key alone is "Bad Request - Invalid RecieverIdentifierType". ``Remarks`` is
2-100 characters. Results (§9): success has ``Amount``, ``TransCompletedTime`` and ``Charge`` as
JSON numbers; failures have a string R-code (numeric codes stay integers, as TS failures are
observed) and no ``ResultParameters``.

=========================  ===========  ====================================================
case                       ResultCode   effect
=========================  ===========  ====================================================
reversible receipt         ``0``        a ``Withdrawn`` ledger line linked to the receipt; TS
                                        then answers ``Reversed``
already reversed           ``R000001``  none
unknown receipt, a         ``R000002``  none
reversal, another party
amount != original         ``2006``     none (inferred: "Declined due to account rule."; full
                                        reversals only, §9)
balance below the amount   ``1``        none ("The balance is insufficient...")
initiator mismatch         ``2001``     none
=========================  ===========  ====================================================

``X-Sim-Outcome`` per request: any code of ``ORG_RESULT_DESCS`` (a scripted failure that changes
nothing), ``none`` (processed, but the result is lost), or ``timeout`` (nothing processed; a
placeholder ``{"Result": {..., "ResultCode": "SIM_QUEUE_TIMEOUT"}}`` goes to ``QueueTimeOutURL``:
the real body is undocumented, so this shape is unverified by design).

Statement: ``GET /sim/statement?date=YYYY-MM-DD[&shortcode=...]`` is ``text/csv`` with the columns
of ``STATEMENT_COLUMNS``, one line per ledger entry completed that Nairobi day, oldest first:
times ``YYYY-MM-DD HH:MM:SS`` in Nairobi, amounts ``1,200.00`` (quoted by CSV rules), ``Paid In``
or ``Withdrawn`` empty when not applicable, ``Balance`` the shortcode's running balance,
``Other Party Info`` ``254708374149 - JOHN DOE`` (masked with ``mask_msisdn``), ``Linked
Transaction ID`` the CheckoutRequestID of an STK payment, empty for C2B, the original receipt for
a reversal, ``A/C No.`` the AccountReference or BillRefNumber. ``POST /sim/statement/inject``
adds raw lines (an object or a list of objects keyed by column name, plus an optional
``ShortCode``; ``Receipt No.`` and ``Completion Time`` required): statement only, unknown to the
APIs and the balance, to seed discrepancies.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from aiohttp import web

from lms_domain.payments.statement import STATEMENT_COLUMNS, STATEMENT_TIME
from server.simulators.daraja import (
    NAIROBI,
    OUTCOME_HEADER,
    DarajaError,
    DarajaSimulator,
    Handler,
    InjectedLine,
    LedgerEntry,
    amount_field,
    bad_request,
    check_url,
    daraja_simulator_key,
    digits,
    text_field,
)
from server.simulators.faults import FAULT_HEADER, CallbackFaults

ORG_RESULT_DESCS: dict[int | str, str] = {
    0: "The service request is processed successfully.",
    1: "The balance is insufficient for the transaction.",
    11: "The DebitParty is in an invalid state.",
    21: "The initiator is not allowed to initiate this request.",
    2001: "The initiator information is invalid.",
    2006: "Declined due to account rule.",
    2028: "The request is not permitted according to product assignment.",
    8006: "The security credential is locked.",
    "R000001": "The transaction has already been reversed.",
    "R000002": "The OriginalTransactionID is invalid.",
    "SFC_IC0003": "Receiver party is invalid",  # observed on Transaction Status (mpesakit #102)
}
ACCEPTED = "Accept the service request successfully."
QUEUE_TIMEOUT_CODE = "SIM_QUEUE_TIMEOUT"
# What the sandbox puts in a reversal result's ReferenceData (§9 samples), byte for byte.
REVERSAL_QUEUE_REFERENCE = "https://internalsandbox.safaricom.co.ke/mpesa/reversalresults/v1/submit"
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Delivery = Literal["result", "none", "timeout"]


@dataclass(frozen=True, slots=True)
class OrgOutcome:
    """``X-Sim-Outcome`` for an org API: a forced ResultCode, and where (if anywhere) the answer goes."""

    code: int | str | None = None
    delivery: Delivery = "result"


def parse_org_outcome(value: str | None) -> OrgOutcome:
    """Parse ``X-Sim-Outcome``: a code of ``ORG_RESULT_DESCS``, ``none`` or ``timeout``."""
    if value is None:
        return OrgOutcome()
    value = value.strip()
    if value.lower() in ("none", "timeout"):
        return OrgOutcome(delivery="none" if value.lower() == "none" else "timeout")
    code: int | str = int(value) if value.isdigit() else value
    if code not in ORG_RESULT_DESCS:
        raise DarajaError(400, "sim.outcome", f"unknown ResultCode {value!r} in {OUTCOME_HEADER}")
    return OrgOutcome(code=None if code == 0 else code)


@dataclass(frozen=True, slots=True)
class OrgRequest:
    """The fields every org API shares, validated."""

    initiator: str
    credential: str
    result_url: str
    timeout_url: str
    remarks: str
    occasion: str


def _optional_text(body: Mapping[str, Any], name: str, max_len: int) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_len:
        raise bad_request(name)
    return value


def _command(body: Mapping[str, Any], expected: str) -> None:
    if body.get("CommandID") != expected:
        raise bad_request("CommandID")


def _urls_and_remarks(sim: DarajaSimulator, body: Mapping[str, Any], *, min_remarks: int) -> tuple[str, str, str]:
    https = sim.config.require_https_callback
    result_url = check_url(body.get("ResultURL"), "ResultURL", require_https=https)
    timeout_url = check_url(body.get("QueueTimeOutURL"), "QueueTimeOutURL", require_https=https)
    remarks = text_field(body, "Remarks", min_len=min_remarks, max_len=100)
    return result_url, timeout_url, remarks


def _initiator_ok(sim: DarajaSimulator, request: OrgRequest) -> bool:
    known = sim.config.initiators
    return known is None or known.get(request.initiator) == request.credential


def _stamp(at: datetime) -> str:
    return f"{at.astimezone(NAIROBI):%Y%m%d%H%M%S}"


def _reference_item(occasion: str) -> dict[str, str]:
    # The sample's ReferenceItem has no Value when the request had no Occasion.
    return {"Key": "Occasion", "Value": occasion} if occasion else {"Key": "Occasion"}


def _ack(originator: str, conversation: str) -> dict[str, str]:
    return {
        "OriginatorConversationID": originator,
        "ConversationID": conversation,
        "ResponseCode": "0",
        "ResponseDescription": ACCEPTED,
    }


def _failure(
    sim: DarajaSimulator,
    code: int | str,
    originator: str,
    conversation: str,
    reference: dict[str, str],
    now: datetime,
) -> dict[str, Any]:
    return {
        "Result": {
            "ResultType": 0,
            "ResultCode": code,
            "ResultDesc": ORG_RESULT_DESCS[code],
            "OriginatorConversationID": originator,
            "ConversationID": conversation,
            "TransactionID": sim.placeholder_transaction_id(now),
            "ReferenceData": {"ReferenceItem": reference},
        }
    }


def _queue_timeout(sim: DarajaSimulator, originator: str, conversation: str, now: datetime) -> dict[str, Any]:
    return {
        "Result": {
            "ResultType": 0,
            "ResultCode": QUEUE_TIMEOUT_CODE,
            "ResultDesc": "The request timed out in the queue (simulator placeholder; the real body is undocumented).",
            "OriginatorConversationID": originator,
            "ConversationID": conversation,
            "TransactionID": sim.placeholder_transaction_id(now),
        }
    }


def _deliver(
    sim: DarajaSimulator,
    outcome: OrgOutcome,
    request: OrgRequest,
    conversation: str,
    result: Mapping[str, Any],
    timeout: Mapping[str, Any],
    faults: CallbackFaults,
) -> None:
    if outcome.delivery == "none":
        return
    url, body = (request.timeout_url, timeout) if outcome.delivery == "timeout" else (request.result_url, result)
    sim.dispatcher.submit(url=url, key=conversation, body=body, faults=faults, after_ms=sim.config.processing_ms)


def _original_conversation_id(entry: LedgerEntry) -> str:
    # STK and C2B payments have no ConversationID of their own here: derive a stable one.
    digest = hashlib.blake2b(entry.receipt.encode(), digest_size=10).hexdigest()
    return f"AG_{entry.initiated_at.astimezone(NAIROBI):%Y%m%d}_{digest}"


# ---- Transaction Status (§8) ----


def transaction_status(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> dict[str, str]:
    """Acknowledge a Transaction Status query and post its result to ``ResultURL``."""
    initiator = text_field(body, "Initiator")
    credential = text_field(body, "SecurityCredential", max_len=4096)
    _command(body, "TransactionStatusQuery")
    transaction_id = _optional_text(body, "TransactionID", 32).strip()
    original_id = _optional_text(body, "OriginalConversationID", 128).strip()
    if not transaction_id and not original_id:
        raise bad_request("TransactionID")
    party_a = digits(body.get("PartyA"))
    if party_a is None or not 5 <= len(party_a) <= 12:
        raise bad_request("PartyA")
    if digits(body.get("IdentifierType")) not in ("1", "2", "4"):
        raise bad_request("IdentifierType")
    result_url, timeout_url, remarks = _urls_and_remarks(sim, body, min_remarks=1)
    occasion = _optional_text(body, "Occasion", 100)
    org = OrgRequest(initiator, credential, result_url, timeout_url, remarks, occasion)
    outcome = parse_org_outcome(request.headers.get(OUTCOME_HEADER))
    faults = sim.faults_for("", request.headers.get(FAULT_HEADER))

    now = sim.config.clock()
    originator, conversation = sim.request_id(), sim.conversation_id(now)
    reference = _reference_item(occasion)
    entry = sim.receipts.get(transaction_id) if transaction_id else sim.by_originator.get(original_id)
    if entry is not None and party_a not in (entry.shortcode, entry.msisdn):
        entry = None
    code: int | str | None = outcome.code
    if code is None and not _initiator_ok(sim, org):
        code = 2001
    if code is None and entry is None:
        code = "R000002"
    if code is not None or entry is None:
        result = _failure(sim, code or "R000002", originator, conversation, reference, now)
    else:
        result = _status_result(sim, entry, originator, conversation, reference, now)
    timeout = _queue_timeout(sim, originator, conversation, now)
    _deliver(sim, outcome, org, conversation, result, timeout, faults)
    return _ack(originator, conversation)


def _status_result(
    sim: DarajaSimulator,
    entry: LedgerEntry,
    originator: str,
    conversation: str,
    reference: dict[str, str],
    now: datetime,
) -> dict[str, Any]:
    # Key order and the value-less keys follow the docs sample (§8).
    parameters: list[dict[str, Any]] = [
        {"Key": "DebitPartyName", "Value": sim.organisation_party(entry.shortcode)},
        {"Key": "DebitPartyName", "Value": sim.customer_party(entry)},
        {"Key": "OriginatorConversationID", "Value": entry.originator_id},
        {"Key": "InitiatedTime", "Value": _stamp(entry.initiated_at)},
        {"Key": "DebitAccountType", "Value": "Utility Account"},
        {"Key": "DebitPartyCharges"},
        {"Key": "TransactionReason"},
        {"Key": "ReasonType", "Value": entry.reason_type},
        {"Key": "TransactionStatus", "Value": "Reversed" if entry.reversed_by else "Completed"},
        {"Key": "FinalisedTime", "Value": _stamp(entry.completed_at)},
        {"Key": "Amount", "Value": str(entry.amount)},
        {"Key": "ConversationID", "Value": _original_conversation_id(entry)},
        {"Key": "ReceiptNo", "Value": entry.receipt},
    ]
    return {
        "Result": {
            "ConversationID": conversation,
            "OriginatorConversationID": originator,
            "ReferenceData": {"ReferenceItem": reference},
            "ResultCode": 0,
            "ResultDesc": ORG_RESULT_DESCS[0],
            "ResultParameters": {"ResultParameter": parameters},
            "ResultType": 0,
            "TransactionID": sim.placeholder_transaction_id(now),
        }
    }


# ---- Reversal (§9) ----


def reversal(sim: DarajaSimulator, body: Mapping[str, Any], request: web.Request) -> dict[str, str]:
    """Acknowledge a reversal, apply it if M-Pesa would, and post the result to ``ResultURL``."""
    initiator = text_field(body, "Initiator")
    credential = text_field(body, "SecurityCredential", max_len=4096)
    _command(body, "TransactionReversal")
    transaction_id = text_field(body, "TransactionID", max_len=32).strip()
    amount = amount_field(body.get("Amount"))
    receiver = digits(body.get("ReceiverParty"))
    if receiver is None or not 5 <= len(receiver) <= 7:
        raise bad_request("ReceiverParty")
    # The real key is misspelled; the correct spelling counts as missing (Daraja FAQ).
    if digits(body.get("RecieverIdentifierType")) != "11":
        raise bad_request("RecieverIdentifierType")
    result_url, timeout_url, remarks = _urls_and_remarks(sim, body, min_remarks=2)
    occasion = _optional_text(body, "Occasion", 100)
    org = OrgRequest(initiator, credential, result_url, timeout_url, remarks, occasion)
    outcome = parse_org_outcome(request.headers.get(OUTCOME_HEADER))
    faults = sim.faults_for("", request.headers.get(FAULT_HEADER))

    now = sim.config.clock()
    originator, conversation = sim.request_id(), sim.conversation_id(now)
    reference = {"Key": "QueueTimeoutURL", "Value": REVERSAL_QUEUE_REFERENCE}
    original = sim.receipts.get(transaction_id)
    code: int | str | None = outcome.code
    if code is None and not _initiator_ok(sim, org):
        code = 2001
    if code is None and (original is None or original.kind == "reversal" or original.shortcode != receiver):
        code = "R000002"
    if code is None and original is not None and original.reversed_by:
        code = "R000001"
    if code is None and original is not None and original.amount != amount:
        code = 2006
    if code is None and sim.balance(receiver) < amount:
        code = 1
    timeout = _queue_timeout(sim, originator, conversation, now)
    if code is not None or original is None or outcome.delivery == "timeout":
        result = _failure(sim, code or "R000002", originator, conversation, reference, now)
    else:
        result = _reverse(sim, original, originator, conversation, reference, now)
    _deliver(sim, outcome, org, conversation, result, timeout, faults)
    return _ack(originator, conversation)


def _reverse(
    sim: DarajaSimulator,
    original: LedgerEntry,
    originator: str,
    conversation: str,
    reference: dict[str, str],
    now: datetime,
) -> dict[str, Any]:
    completed = now + timedelta(milliseconds=sim.config.processing_ms)
    entry = sim.post(
        LedgerEntry(
            receipt=sim.receipt(now),
            kind="reversal",
            shortcode=original.shortcode,
            msisdn=original.msisdn,
            payer=original.payer,
            amount=original.amount,
            credit=False,
            initiated_at=now,
            completed_at=completed,
            reason_type="Reversal",
            account=original.account,
            linked_id=original.receipt,
            originator_id=originator,
        )
    )
    original.reversed_by = entry.receipt
    balance = f"{entry.balance_after:.2f}"
    # Amount, TransCompletedTime and Charge are JSON numbers here, unlike Transaction Status (§9).
    parameters: list[dict[str, Any]] = [
        {"Key": "DebitAccountBalance", "Value": f"Utility Account|KES|{balance}|{balance}|0.00|0.00"},
        {"Key": "Amount", "Value": float(entry.amount)},
        {"Key": "TransCompletedTime", "Value": int(_stamp(completed))},
        {"Key": "OriginalTransactionID", "Value": original.receipt},
        {"Key": "Charge", "Value": 0.0},
        {"Key": "CreditPartyPublicName", "Value": sim.customer_party(original)},
        {"Key": "DebitPartyPublicName", "Value": sim.organisation_party(original.shortcode)},
    ]
    return {
        "Result": {
            "ResultType": 0,
            "ResultCode": 0,
            "ResultDesc": ORG_RESULT_DESCS[0],
            "OriginatorConversationID": originator,
            "ConversationID": conversation,
            "TransactionID": entry.receipt,
            "ResultParameters": {"ResultParameter": parameters},
            "ReferenceData": {"ReferenceItem": reference},
        }
    }


ROUTES: dict[str, Handler] = {
    "/mpesa/transactionstatus/v1/query": transaction_status,
    "/mpesa/reversal/v1/request": reversal,
}


# ---- the statement (test-only) ----


def _money(shillings: int) -> str:
    return f"{shillings:,.2f}"


def statement_row(sim: DarajaSimulator, entry: LedgerEntry) -> dict[str, str]:
    """One ledger entry as a statement line."""
    party = sim.customer_party(entry)
    if entry.kind == "reversal":
        details = f"Reversal of {entry.linked_id} to {party}"
    else:
        details = f"{entry.reason_type} from {party}" + (f" Acc. {entry.account}" if entry.account else "")
    return {
        "Receipt No.": entry.receipt,
        "Completion Time": f"{entry.completed_at.astimezone(NAIROBI):{STATEMENT_TIME}}",
        "Initiation Time": f"{entry.initiated_at.astimezone(NAIROBI):{STATEMENT_TIME}}",
        "Details": details,
        "Transaction Status": "Completed",
        "Paid In": _money(entry.amount) if entry.credit else "",
        "Withdrawn": "" if entry.credit else _money(entry.amount),
        "Balance": _money(entry.balance_after),
        "Balance Confirmed": "true",
        "Reason Type": entry.reason_type,
        "Other Party Info": party,
        "Linked Transaction ID": entry.linked_id,
        "A/C No.": entry.account,
    }


def statement_csv(sim: DarajaSimulator, day: date, shortcode: str | None = None) -> str:
    """Every line completed on the Nairobi day ``day``, oldest first, as CSV with a header row."""
    lines: list[tuple[datetime, int, Mapping[str, str]]] = []
    for seq, entry in enumerate(sim.ledger):
        if entry.completed_at.astimezone(NAIROBI).date() == day and shortcode in (None, entry.shortcode):
            lines.append((entry.completed_at, seq, statement_row(sim, entry)))
    for seq, line in enumerate(sim.injected, start=len(sim.ledger)):
        if line.completed_at.astimezone(NAIROBI).date() == day and shortcode in (None, line.shortcode):
            lines.append((line.completed_at, seq, line.row))
    lines.sort(key=lambda line: (line[0], line[1]))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=STATEMENT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(row for _, _, row in lines)
    return out.getvalue()


def _sim_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def statement(request: web.Request) -> web.Response:
    """``GET /sim/statement?date=YYYY-MM-DD[&shortcode=...]``: the day's statement as CSV."""
    sim = request.app[daraja_simulator_key]
    raw = request.query.get("date", "")
    if not ISO_DATE.match(raw):
        return _sim_error("date must be YYYY-MM-DD")
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return _sim_error("date must be YYYY-MM-DD")
    text = statement_csv(sim, day, request.query.get("shortcode") or None)
    return web.Response(text=text, content_type="text/csv", charset="utf-8")


def _injected_line(raw: Any) -> InjectedLine:
    if not isinstance(raw, dict):
        raise ValueError("each line is an object keyed by statement column")
    unknown = set(raw) - {*STATEMENT_COLUMNS, "ShortCode"}
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}")
    if not all(isinstance(value, str) for value in raw.values()):
        raise ValueError("every value is a string, as in the CSV")
    if not raw.get("Receipt No."):
        raise ValueError("Receipt No. is required")
    completion = raw.get("Completion Time", "")
    try:
        completed_at = datetime.strptime(completion, STATEMENT_TIME).replace(tzinfo=NAIROBI)
    except ValueError:
        raise ValueError(f"Completion Time must be {STATEMENT_TIME}, on the Nairobi clock") from None
    row = dict.fromkeys(STATEMENT_COLUMNS, "")
    row |= {"Initiation Time": completion, "Transaction Status": "Completed", "Balance Confirmed": "true"}
    row |= {key: value for key, value in raw.items() if key != "ShortCode"}
    return InjectedLine(completed_at=completed_at, shortcode=raw.get("ShortCode"), row=row)


async def inject_statement(request: web.Request) -> web.Response:
    """``POST /sim/statement/inject``: add raw lines (statement only) to seed discrepancies."""
    sim = request.app[daraja_simulator_key]
    try:
        payload = json.loads(await request.read())
        lines = [_injected_line(raw) for raw in (payload if isinstance(payload, list) else [payload])]
    except (UnicodeDecodeError, ValueError) as exc:
        return _sim_error(str(exc))
    sim.injected.extend(lines)
    return web.json_response({"injected": len(lines)})
