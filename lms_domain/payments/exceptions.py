"""Reconciliation runs, kept, and the exceptions queue a person works through.

``reconcile_day`` only reports; ``record_run`` keeps each report (``ReconciliationRun``) and
files every discrepancy it left open as a ``ReconciliationException``. A discrepancy has a
stable fingerprint (provider, class, and the receipt, CheckoutRequestID or payment it is
about), so the nightly run finding it again bumps ``times_seen`` instead of adding a row, and a
later run that heals it closes it (resolution ``healed``). Everything else is closed by an
admin, with a resolution and, for a write-off, a note.

Exceptions belong to the school of the payment or intent they are about; one about money we
cannot place (a paybill payment nobody claimed) has no school, and only platform admins see it.
Runs cover every school at once, so only platform admins read them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.access import Actor, ensure_visible, tenant_filter
from lms_domain.db import Base, IdMixin, TimestampMixin
from lms_domain.errors import Conflict, InvalidInput, NotFound
from lms_domain.pagination import DEFAULT_LIMIT, MAX_LIMIT, keyset_page
from lms_domain.payments.models import Payment, PaymentIntent
from lms_domain.payments.reconciliation import Discrepancy, DiscrepancyClass, ReconciliationReport
from lms_domain.tenancy.models import Institution, User
from lms_domain.types import enum_column

LOOKUP_CHUNK = 500
NOTE_MAX = 2000


class ExceptionStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Resolution(StrEnum):
    MATCHED_MANUALLY = "matched_manually"  # a person found and booked the other side
    REFUNDED = "refunded"
    WRITTEN_OFF = "written_off"
    PROVIDER_ERROR = "provider_error"  # the provider's statement or callback was wrong
    NOT_AN_ISSUE = "not_an_issue"
    HEALED = "healed"  # a later run settled it; never chosen by a person


MANUAL_RESOLUTIONS = tuple(r for r in Resolution if r is not Resolution.HEALED)
NOTE_REQUIRED = frozenset({Resolution.WRITTEN_OFF})


# Models ---------------------------------------------------------------------------------------


class ReconciliationRun(Base, IdMixin):
    """One reconciliation of one Nairobi day, as it was reported. Central-only."""

    __tablename__ = "reconciliation_runs"

    day: Mapped[date] = mapped_column(index=True)
    providers: Mapped[list[str]] = mapped_column(default=list)
    heal: Mapped[bool] = mapped_column(default=True)
    checked_missing_at_provider: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    provider_records: Mapped[int] = mapped_column(default=0)
    records_received: Mapped[int] = mapped_column(default=0)
    ledger_payments: Mapped[int] = mapped_column(default=0)
    matched: Mapped[int] = mapped_column(default=0)
    found: Mapped[int] = mapped_column(default=0)
    healed: Mapped[int] = mapped_column(default=0)
    open: Mapped[int] = mapped_column(default=0)
    # The report without its discrepancies (those are rows of the queue), plus what fed it.
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ReconciliationException(Base, IdMixin, TimestampMixin):
    """A discrepancy a person must look at, filed once however often the runs find it."""

    __tablename__ = "reconciliation_exceptions"

    fingerprint: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # NULL: money no school can be named for; only platform admins see those.
    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("institutions.id", ondelete="RESTRICT"), default=None, index=True
    )
    category: Mapped[DiscrepancyClass] = mapped_column(enum_column(DiscrepancyClass, "category"))
    reason: Mapped[str] = mapped_column(sa.Text)
    provider: Mapped[str] = mapped_column(sa.String(16))
    receipt: Mapped[str | None] = mapped_column(sa.String(64), default=None, index=True)
    checkout_request_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    provider_amount_minor: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    ledger_amount_minor: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    occurred_at: Mapped[datetime | None] = mapped_column(default=None)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("payments.id", ondelete="SET NULL"), default=None
    )
    intent_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("payment_intents.id", ondelete="SET NULL"), default=None
    )
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[ExceptionStatus] = mapped_column(
        enum_column(ExceptionStatus, "status"), default=ExceptionStatus.OPEN
    )
    resolution: Mapped[Resolution | None] = mapped_column(enum_column(Resolution, "resolution"), default=None)
    note: Mapped[str | None] = mapped_column(sa.Text, default=None)
    resolved_by_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    first_seen_run_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("reconciliation_runs.id", ondelete="SET NULL"), default=None
    )
    first_seen_at: Mapped[datetime]
    last_seen_run_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("reconciliation_runs.id", ondelete="SET NULL"), default=None
    )
    last_seen_at: Mapped[datetime]
    times_seen: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        sa.Index("ix_reconciliation_exceptions_status_institution", "status", "institution_id"),
        sa.CheckConstraint(
            "(status = 'open') = (resolution IS NULL AND resolved_at IS NULL)", name="resolved_has_resolution"
        ),
    )


# Schemas --------------------------------------------------------------------------------------


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    day: date
    providers: list[str]
    heal: bool
    checked_missing_at_provider: bool
    started_at: datetime
    finished_at: datetime
    provider_records: int
    records_received: int
    ledger_payments: int
    matched: int
    found: int
    healed: int
    open: int
    summary: dict[str, Any]


class RunQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    day_from: date | None = None
    day_until: date | None = Field(default=None, description="exclusive")
    cursor: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class ExceptionSort(StrEnum):
    OCCURRED = "occurred_at"
    AMOUNT = "amount"
    TIMES_SEEN = "times_seen"


class ExceptionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: ExceptionStatus | None = None
    category: DiscrepancyClass | None = None
    provider: str | None = Field(default=None, max_length=16)
    search: str | None = Field(default=None, max_length=64, description="receipt or CheckoutRequestID")
    since: datetime | None = None
    until: datetime | None = None
    sort: ExceptionSort = ExceptionSort.OCCURRED
    descending: bool = True
    cursor: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_=-]+$")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class ExceptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID | None
    institution_name: str | None = None
    category: DiscrepancyClass
    reason: str
    provider: str
    receipt: str | None
    checkout_request_id: str | None
    provider_amount_minor: int | None
    ledger_amount_minor: int | None
    currency: str
    occurred_at: datetime | None
    payment_id: uuid.UUID | None
    intent_id: uuid.UUID | None
    details: dict[str, Any]
    status: ExceptionStatus
    resolution: Resolution | None
    note: str | None
    resolved_by_id: uuid.UUID | None
    resolved_by_username: str | None = None
    resolved_at: datetime | None
    first_seen_run_id: uuid.UUID | None
    first_seen_at: datetime
    last_seen_run_id: uuid.UUID | None
    last_seen_at: datetime
    times_seen: int


class ResolveRequest(BaseModel):
    """A person's verdict on an open exception."""

    model_config = ConfigDict(extra="forbid")

    resolution: Resolution
    note: str | None = Field(default=None, max_length=NOTE_MAX)


class QueueSummary(BaseModel):
    """Open exceptions per class, in the actor's scope."""

    open_by_category: dict[DiscrepancyClass, int]
    open_total: int
    oldest_open_at: datetime | None


@dataclass(slots=True)
class RecordedRun:
    """What ``record_run`` did to the queue."""

    run: ReconciliationRun
    filed: int = 0  # new open exceptions
    seen_again: int = 0
    closed: int = 0  # open ones a heal closed
    healed_filed: int = 0  # healed at first sight: filed already resolved, for the record


# Recording a run ------------------------------------------------------------------------------


def fingerprint(discrepancy: Discrepancy) -> str:
    """Stable across runs: provider, class, and what the discrepancy is about."""
    subject = (
        discrepancy.receipt
        or discrepancy.checkout_request_id
        or (str(discrepancy.payment_id) if discrepancy.payment_id else None)
        or (str(discrepancy.intent_id) if discrepancy.intent_id else None)
        or f"{discrepancy.reason}@{discrepancy.occurred_at.isoformat() if discrepancy.occurred_at else ''}"
    )
    key = f"{discrepancy.provider}|{discrepancy.category.value}|{subject}"
    return hashlib.sha256(key.encode()).hexdigest()


def _chunks(items: Sequence[Any], size: int = LOOKUP_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _owners(session: AsyncSession, discrepancies: Sequence[Discrepancy]) -> dict[uuid.UUID, uuid.UUID]:
    """The school of every payment and intent the discrepancies name."""
    payment_ids = sorted(
        {p for d in discrepancies for p in (d.payment_id, *d.related_payment_ids) if p is not None}, key=str
    )
    intent_ids = sorted({d.intent_id for d in discrepancies if d.intent_id is not None}, key=str)
    owners: dict[uuid.UUID, uuid.UUID] = {}
    for model, ids in ((Payment, payment_ids), (PaymentIntent, intent_ids)):
        for chunk in _chunks(ids):
            rows = await session.execute(sa.select(model.id, model.institution_id).where(model.id.in_(chunk)))
            owners.update({row[0]: row[1] for row in rows})
    return owners


def _institution_of(discrepancy: Discrepancy, owners: dict[uuid.UUID, uuid.UUID]) -> uuid.UUID | None:
    for candidate in (discrepancy.payment_id, discrepancy.intent_id, *discrepancy.related_payment_ids):
        if candidate is not None and candidate in owners:
            return owners[candidate]
    return None


def _details(discrepancy: Discrepancy) -> dict[str, Any]:
    raw = discrepancy.to_dict()
    return {
        k: raw[k] for k in ("record_kind", "sources", "related_payment_ids", "healable", "heal_error") if raw.get(k)
    }


def _summary(report: ReconciliationReport, extra: dict[str, Any] | None) -> dict[str, Any]:
    summary = report.to_dict()
    summary.pop("discrepancies", None)
    return summary | (extra or {})


async def record_run(
    *,
    session: AsyncSession,
    report: ReconciliationReport,
    now: datetime,
    started_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> RecordedRun:
    """Keep ``report`` and bring the queue up to date with it, in the caller's unit of work.

    A dry run (``report.heal`` false) is kept but files nothing: the queue holds only what a
    healing run left for a person, never what the next real run would settle by itself.
    """
    run = ReconciliationRun(
        day=report.day,
        providers=[str(p) for p in report.providers],
        heal=report.heal,
        checked_missing_at_provider=report.checked_missing_at_provider,
        started_at=started_at or now,
        finished_at=now,
        provider_records=report.provider_records,
        records_received=report.records_received,
        ledger_payments=report.ledger_payments,
        matched=report.matched,
        found=len(report.discrepancies),
        healed=len(report.healed),
        open=len(report.open),
        summary=_summary(report, extra),
    )
    session.add(run)
    await session.flush()
    outcome = RecordedRun(run)
    if not report.heal or not report.discrepancies:
        return outcome

    by_print: dict[str, Discrepancy] = {}
    for discrepancy in report.discrepancies:
        # Should one report name a thing twice, the open sighting wins over a healed one.
        key = fingerprint(discrepancy)
        if key not in by_print or not discrepancy.healed:
            by_print[key] = discrepancy
    existing: dict[str, ReconciliationException] = {}
    for chunk in _chunks(sorted(by_print)):
        found = await session.scalars(
            sa.select(ReconciliationException).where(ReconciliationException.fingerprint.in_(chunk))
        )
        existing.update({row.fingerprint: row for row in found})
    owners = await _owners(session, [d for k, d in by_print.items() if k not in existing])

    for key, discrepancy in by_print.items():
        row = existing.get(key)
        if row is not None:
            row.times_seen += 1
            row.last_seen_run_id, row.last_seen_at = run.id, now
            if discrepancy.healed and row.status is ExceptionStatus.OPEN:
                row.status, row.resolution, row.resolved_at = ExceptionStatus.RESOLVED, Resolution.HEALED, now
                row.note = f"healed by the reconciliation of {report.day.isoformat()}"
                outcome.closed += 1
            elif not discrepancy.healed and row.resolution is Resolution.HEALED:
                # Healed once, open again: the heal did not hold, so a person must look.
                row.status, row.resolution, row.resolved_at, row.note = ExceptionStatus.OPEN, None, None, None
                outcome.filed += 1
            else:
                outcome.seen_again += 1
            row.reason = discrepancy.reason
            row.provider_amount_minor = discrepancy.provider_amount_minor
            row.ledger_amount_minor = discrepancy.ledger_amount_minor
            row.payment_id = row.payment_id or discrepancy.payment_id
            row.intent_id = row.intent_id or discrepancy.intent_id
            row.details = _details(discrepancy)
            continue
        session.add(
            ReconciliationException(
                fingerprint=key,
                institution_id=_institution_of(discrepancy, owners),
                category=discrepancy.category,
                reason=discrepancy.reason,
                provider=str(discrepancy.provider),
                receipt=discrepancy.receipt,
                checkout_request_id=discrepancy.checkout_request_id,
                provider_amount_minor=discrepancy.provider_amount_minor,
                ledger_amount_minor=discrepancy.ledger_amount_minor,
                currency=discrepancy.currency,
                occurred_at=discrepancy.occurred_at,
                payment_id=discrepancy.payment_id,
                intent_id=discrepancy.intent_id,
                details=_details(discrepancy),
                status=ExceptionStatus.RESOLVED if discrepancy.healed else ExceptionStatus.OPEN,
                resolution=Resolution.HEALED if discrepancy.healed else None,
                resolved_at=now if discrepancy.healed else None,
                note=f"healed by the reconciliation of {report.day.isoformat()}" if discrepancy.healed else None,
                first_seen_run_id=run.id,
                first_seen_at=now,
                last_seen_run_id=run.id,
                last_seen_at=now,
                times_seen=1,
            )
        )
        if discrepancy.healed:
            outcome.healed_filed += 1
        else:
            outcome.filed += 1
    await session.flush()
    return outcome


# Reading --------------------------------------------------------------------------------------


async def list_runs(*, session: AsyncSession, actor: Actor, query: RunQuery) -> tuple[list[RunOut], str | None]:
    """Newest first. Platform admins only: a run covers every school."""
    actor.require_admin()
    if not actor.is_platform_admin:
        return [], None
    stmt = sa.select(ReconciliationRun)
    if query.day_from:
        stmt = stmt.where(ReconciliationRun.day >= query.day_from)
    if query.day_until:
        stmt = stmt.where(ReconciliationRun.day < query.day_until)
    rows, cursor = await keyset_page(
        session, stmt, ReconciliationRun, descending=True, cursor=query.cursor, limit=query.limit
    )
    return [RunOut.model_validate(run) for (run,) in rows], cursor


async def get_run(*, session: AsyncSession, actor: Actor, run_id: uuid.UUID) -> RunOut:
    actor.require_admin()
    run = await session.get(ReconciliationRun, run_id)
    if run is None or not actor.is_platform_admin:
        raise NotFound("reconciliation run not found")
    return RunOut.model_validate(run)


def _sort_column(sort: ExceptionSort) -> sa.ColumnElement[Any]:
    if sort is ExceptionSort.AMOUNT:
        return sa.func.coalesce(
            ReconciliationException.provider_amount_minor, ReconciliationException.ledger_amount_minor, 0
        )
    if sort is ExceptionSort.TIMES_SEEN:
        return ReconciliationException.times_seen.expression
    return sa.func.coalesce(ReconciliationException.occurred_at, ReconciliationException.first_seen_at)


def _encode_keyset(sort: ExceptionSort, value: Any, row_id: uuid.UUID) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([sort.value, value, row_id.hex], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_keyset(cursor: str, sort: ExceptionSort) -> tuple[Any, uuid.UUID]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        name, value, row_id = raw
        if name != sort.value:
            raise ValueError("cursor of another sort")
        if sort is ExceptionSort.OCCURRED:
            value = datetime.fromisoformat(value)
        elif not isinstance(value, int):
            raise ValueError("not a number")
        return value, uuid.UUID(hex=row_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one we issued", code="invalid_cursor") from None


def _out(row: ReconciliationException, institution_name: str | None, username: str | None) -> ExceptionOut:
    out = ExceptionOut.model_validate(row)
    out.institution_name, out.resolved_by_username = institution_name, username
    return out


def _scoped(actor: Actor) -> sa.Select[ReconciliationException, str | None, str | None]:
    stmt = tenant_filter(sa.select(ReconciliationException), ReconciliationException.institution_id, actor)
    return (
        stmt.add_columns(Institution.name, User.username)
        .outerjoin(Institution, Institution.id == ReconciliationException.institution_id)
        .outerjoin(User, User.id == ReconciliationException.resolved_by_id)
    )


async def list_exceptions(
    *, session: AsyncSession, actor: Actor, query: ExceptionQuery
) -> tuple[list[ExceptionOut], str | None]:
    """The queue in the actor's scope, filtered and sorted; keyset-paginated on (sort, id)."""
    actor.require_admin()
    stmt = _scoped(actor)
    if query.status:
        stmt = stmt.where(ReconciliationException.status == query.status)
    if query.category:
        stmt = stmt.where(ReconciliationException.category == query.category)
    if query.provider:
        stmt = stmt.where(ReconciliationException.provider == query.provider)
    if query.search:
        term = query.search.strip()
        stmt = stmt.where(
            sa.or_(ReconciliationException.receipt == term, ReconciliationException.checkout_request_id == term)
        )
    when = _sort_column(ExceptionSort.OCCURRED)
    if query.since:
        stmt = stmt.where(when >= query.since)
    if query.until:
        stmt = stmt.where(when < query.until)
    key = _sort_column(query.sort)
    row_id = ReconciliationException.id
    if query.cursor:
        value, after = _decode_keyset(query.cursor, query.sort)
        bound = sa.literal(value, key.type)
        if query.descending:
            stmt = stmt.where(sa.or_(key < bound, sa.and_(key == bound, row_id < after)))
        else:
            stmt = stmt.where(sa.or_(key > bound, sa.and_(key == bound, row_id > after)))
    order = (key.desc(), row_id.desc()) if query.descending else (key.asc(), row_id.asc())
    rows = (
        await session.execute(stmt.add_columns(key.label("sort_key")).order_by(*order).limit(query.limit + 1))
    ).all()
    cursor = None
    if len(rows) > query.limit:
        last = rows[query.limit - 1]
        cursor = _encode_keyset(query.sort, last.sort_key, last[0].id)
    return [_out(row, name, username) for row, name, username, _ in rows[: query.limit]], cursor


async def get_exception(*, session: AsyncSession, actor: Actor, exception_id: uuid.UUID) -> ExceptionOut:
    """One exception; another school's (or an unplaced one, for a school admin) is ``NotFound``."""
    actor.require_admin()
    found = (await session.execute(_scoped(actor).where(ReconciliationException.id == exception_id))).first()
    if found is None:
        raise NotFound("reconciliation exception not found")
    row, name, username = found
    return _out(row, name, username)


async def queue_summary(*, session: AsyncSession, actor: Actor) -> QueueSummary:
    """Open exceptions per class in the actor's scope."""
    actor.require_admin()
    scoped = tenant_filter(sa.select(ReconciliationException.category), ReconciliationException.institution_id, actor)
    stmt = (
        scoped.add_columns(sa.func.count(), sa.func.min(_sort_column(ExceptionSort.OCCURRED)))
        .where(ReconciliationException.status == ExceptionStatus.OPEN)
        .group_by(ReconciliationException.category)
    )
    counts = dict.fromkeys(DiscrepancyClass, 0)
    oldest: datetime | None = None
    for category, count, first in await session.execute(stmt):
        counts[DiscrepancyClass(category)] = count
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    return QueueSummary(open_by_category=counts, open_total=sum(counts.values()), oldest_open_at=oldest)


# Resolving ------------------------------------------------------------------------------------


async def resolve_exception(
    *,
    session: AsyncSession,
    actor: Actor,
    exception_id: uuid.UUID,
    resolution: Resolution,
    note: str | None,
    now: datetime,
) -> ExceptionOut:
    """Close an open exception with a person's resolution (admins of its school, or platform)."""
    actor.require_admin()
    row = await session.get(ReconciliationException, exception_id)
    ensure_visible(row, actor, what="reconciliation exception")
    assert row is not None
    resolution = Resolution(resolution)
    if resolution not in MANUAL_RESOLUTIONS:
        raise InvalidInput(f"{resolution.value} is not a resolution a person can choose", code="invalid_resolution")
    note = (note or "").strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise InvalidInput(f"the note is longer than {NOTE_MAX} characters", code="note_too_long")
    if resolution in NOTE_REQUIRED and note is None:
        raise InvalidInput("a write-off needs a note saying why", code="note_required")
    # Conditional on still being open, so two people resolving at once cannot both succeed.
    result = await session.execute(
        sa.update(ReconciliationException)
        .where(ReconciliationException.id == exception_id, ReconciliationException.status == ExceptionStatus.OPEN)
        .values(
            status=ExceptionStatus.RESOLVED,
            resolution=resolution,
            note=note,
            resolved_by_id=actor.user_id,
            resolved_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise Conflict("this exception is already resolved", code="already_resolved")
    await session.refresh(row)
    return await get_exception(session=session, actor=actor, exception_id=exception_id)
