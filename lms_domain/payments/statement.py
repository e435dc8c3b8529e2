"""The M-Pesa org-portal statement (CSV) as provider records for reconciliation.

The portal's columns are ``Receipt No., Completion Time, Initiation Time, Details,
Transaction Status, Paid In, Withdrawn, Balance, Balance Confirmed, Reason Type, Other Party
Info, Linked Transaction ID, A/C No.``. Times are on the Nairobi wall clock; amounts look like
``1,200.00`` and are empty when not applicable. Exports carry a preamble (account name, period)
before the header, a byte-order mark, quoted fields and blank lines: all of that is tolerated.

A statement is evidence, so one bad line must not hide the others: parsing never raises. Lines
it cannot use are returned as ``BadLine`` with the reason, for a person to look at.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lms_domain.clock import NAIROBI
from lms_domain.money import MINOR_PER_MAJOR
from lms_domain.payments.reconciliation import ProviderRecord, RecordKind, RecordSource

# The M-Pesa organisation portal's statement export, column by column, and its time format
# (Nairobi wall clock). The simulator writes this shape; the parser below reads it.
STATEMENT_COLUMNS = (
    "Receipt No.",
    "Completion Time",
    "Initiation Time",
    "Details",
    "Transaction Status",
    "Paid In",
    "Withdrawn",
    "Balance",
    "Balance Confirmed",
    "Reason Type",
    "Other Party Info",
    "Linked Transaction ID",
    "A/C No.",
)
STATEMENT_TIME = "%Y-%m-%d %H:%M:%S"

# Normalised header name -> our field. Normalising (case, spaces, dots) absorbs the small
# spelling drift between portal versions ("Receipt No." / "Receipt No").
_COLUMNS = {
    "receiptno": "receipt",
    "completiontime": "completed",
    "initiationtime": "initiated",
    "details": "details",
    "transactionstatus": "status",
    "paidin": "paid_in",
    "withdrawn": "withdrawn",
    "reasontype": "reason",
    "otherpartyinfo": "other_party",
    "linkedtransactionid": "linked",
    "acno": "account",
}
_REQUIRED = ("receipt", "completed", "status", "paid_in", "withdrawn")
_TIME_FORMATS = (STATEMENT_TIME, "%Y-%m-%d %H:%M", "%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S")
_RECEIPT = re.compile(r"^[A-Z0-9]{6,64}$")
_AMOUNT = re.compile(r"^-?(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<fraction>\d+))?$")
_ISO_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)$")
_MSISDN = re.compile(r"^\+?(\d{9,15})$")
_COMPLETED = "completed"
MAX_RAW = 200  # characters of a bad line kept for the report


@dataclass(frozen=True, slots=True)
class BadLine:
    """A statement line that could not be used; ``line`` is 1-based in the file."""

    line: int
    reason: str
    raw: str


@dataclass(slots=True)
class Statement:
    """What a statement yielded: the usable records, the bad lines, and lines skipped on purpose
    (not completed, or money movements reconciliation does not compare)."""

    records: list[ProviderRecord] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    skipped: int = 0


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _decode(data: bytes | str) -> str:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    # NUL makes the csv module refuse the whole line; nothing legitimate contains it.
    return text.lstrip("\ufeff").replace("\x00", "")


def _amount_minor(text: str, per_major: int) -> int | None:
    """``1,200.00`` -> 120000 minor units; ``None`` for empty; ``ValueError`` for nonsense."""
    text = text.strip().replace(" ", "")
    if not text:
        return None
    match = _AMOUNT.match(text)
    if match is None:
        raise ValueError(f"not an amount: {text[:40]!r}")
    # Integer arithmetic, not Decimal: a statement has 100,000 of these.
    whole, fraction = match.group("whole").replace(",", ""), match.group("fraction") or ""
    scale = len(str(per_major)) - 1  # 100 -> 2 decimals, 1 -> none
    if len(fraction) > scale and fraction[scale:].strip("0"):
        raise ValueError(f"{text} has more decimals than the currency allows")
    return int(whole) * per_major + int((fraction[:scale] or "0").ljust(scale, "0") or "0")


def _time(text: str) -> datetime:
    text = " ".join(text.split())
    # The portal's own format first, without strptime (slow, and a statement has 100,000 lines).
    if match := _ISO_TIME.match(text):
        try:
            year, month, day, hour, minute, second = (int(part) for part in match.groups())
            local = datetime(year, month, day, hour, minute, second, tzinfo=NAIROBI)
        except ValueError:
            raise ValueError(f"not a time: {text[:40]!r}") from None
        return local.astimezone(UTC)
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=NAIROBI).astimezone(UTC)
        except ValueError:
            continue
    raise ValueError(f"not a time: {text[:40]!r}")


def _msisdn(other_party: str) -> str | None:
    # "254708374149 - JOHN DOE"; masked ("2547 ***** 126") or hashed values are no use as a
    # number, so they are dropped rather than half-kept (never a join key anyway).
    party = other_party.split(" - ", 1)[0].strip()
    match = _MSISDN.match(party)
    return match.group(1) if match else None


def _kind(paid_in: int | None, withdrawn: int | None, reason: str, details: str, linked: str) -> str:
    # Reason Type names the product ("Pay Bill Online" is STK, "Pay Bill" is C2B); Details also
    # carries the payer's name, so it is read only when Reason Type is empty.
    text = (reason.strip() or details).lower()
    if withdrawn:
        return RecordKind.REVERSAL if "reversal" in text else RecordKind.OTHER
    if "reversal" in text:
        return RecordKind.OTHER  # money coming back to us from a reversed payout: not a collection
    if linked.startswith("ws_CO_") or "online" in text or "express" in text:
        return RecordKind.STK
    return RecordKind.C2B


def _rows(text: str) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line number, cells or None, error) for every CSV record, surviving csv errors."""
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, None, f"unreadable CSV: {exc}"
            continue
        yield start, cells, ""


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each field sits in a row; a column the header lacks points at ``width``, the
    empty cell every row is padded with."""

    width: int
    required: int  # a data row needs at least this many cells
    receipt: int
    completed: int
    initiated: int
    details: int
    status: int
    paid_in: int
    withdrawn: int
    reason: int
    other_party: int
    linked: int
    account: int

    @classmethod
    def of(cls, found: dict[str, int], width: int) -> _Layout:
        positions = {name: found.get(name, width) for name in set(_COLUMNS.values())}
        return cls(width=width, required=1 + max(found[name] for name in _REQUIRED), **positions)


def parse_statement(data: bytes | str, *, provider: str = "mpesa", currency: str = "KES") -> Statement:
    """Parse an org-portal statement export; never raises, bad lines are reported."""
    result = Statement()
    per_major = MINOR_PER_MAJOR.get(currency, 100)
    layout: _Layout | None = None
    text = _decode(data)
    lines = text.splitlines()
    for line_no, cells, error in _rows(text):
        if cells is None:
            raw = lines[line_no - 1] if 0 < line_no <= len(lines) else ""
            result.bad_lines.append(BadLine(line_no, error, raw[:MAX_RAW]))
            continue
        if not any(cells) or not "".join(cells).strip():
            continue  # blank line
        if layout is None:
            found = {_COLUMNS[n]: i for i, cell in enumerate(cells) if (n := _normalise(cell)) in _COLUMNS}
            if "receipt" in found:
                missing = [name for name in _REQUIRED if name not in found]
                if missing:
                    raw = ",".join(cells)[:MAX_RAW]
                    result.bad_lines.append(BadLine(line_no, f"header lacks {', '.join(missing)}", raw))
                    return result
                layout = _Layout.of(found, len(cells))
            # Lines before the header are the export's preamble (account, period): not data.
            continue
        try:
            record = _record(cells, layout, provider=provider, currency=currency, per_major=per_major)
        except ValueError as exc:
            result.bad_lines.append(BadLine(line_no, str(exc), ",".join(cells)[:MAX_RAW]))
            continue
        if record is None:
            result.skipped += 1
        elif record is not _HEADER_AGAIN:
            result.records.append(record)
    if layout is None and text.strip():
        result.bad_lines.append(BadLine(0, "no header line with 'Receipt No.' found", ""))
    return result


# Returned for a repeated header line (two exports pasted into one file): neither data nor bad.
_HEADER_AGAIN = ProviderRecord("", "", 0, "", datetime(2000, 1, 1, tzinfo=UTC))


def _record(cells: list[str], at: _Layout, *, provider: str, currency: str, per_major: int) -> ProviderRecord | None:
    if len(cells) < at.required:
        raise ValueError(f"{len(cells)} fields, fewer than the header's")
    if len(cells) <= at.width:
        cells = cells + [""] * (at.width + 1 - len(cells))
    status = cells[at.status].strip().lower()
    if status != _COMPLETED:
        return _HEADER_AGAIN if _normalise(cells[at.receipt]) == "receiptno" else None
    receipt = cells[at.receipt].strip().upper()
    if not _RECEIPT.match(receipt):
        raise ValueError(f"not a receipt number: {receipt[:40]!r}")
    paid_in = _amount_minor(cells[at.paid_in], per_major)
    withdrawn = _amount_minor(cells[at.withdrawn], per_major)
    if bool(paid_in) == bool(withdrawn):
        raise ValueError("exactly one of Paid In and Withdrawn must be a non-zero amount")
    occurred_at = _time(cells[at.completed].strip() or cells[at.initiated])
    linked = cells[at.linked].strip()
    kind = _kind(paid_in, withdrawn, cells[at.reason], cells[at.details], linked)
    if kind == RecordKind.OTHER:
        return None  # payouts and charges: not compared
    amount = paid_in or withdrawn
    assert amount is not None
    return ProviderRecord(
        provider=provider,
        receipt=receipt,
        amount_minor=amount,
        currency=currency,
        occurred_at=occurred_at,
        msisdn=_msisdn(cells[at.other_party]),
        account_reference=cells[at.account].strip() or None,
        checkout_request_id=(linked or None) if kind == RecordKind.STK else None,
        kind=kind,
        source=RecordSource.STATEMENT,
        original_receipt=(linked.upper() or None) if kind == RecordKind.REVERSAL else None,
    )
