"""The kept reconciliation runs and the exceptions queue: filed once however often a run finds
a discrepancy, closed when a later run heals it, scoped to the school of its payment, and
resolved by an admin under the rules."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.access import Actor
from lms_domain.clock import FixedClock
from lms_domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from lms_domain.ids import new_id
from lms_domain.payments.exceptions import (
    ExceptionQuery,
    ExceptionSort,
    ExceptionStatus,
    ReconciliationException,
    ReconciliationRun,
    Resolution,
    RunQuery,
    fingerprint,
    get_exception,
    get_run,
    list_exceptions,
    list_runs,
    queue_summary,
    record_run,
    resolve_exception,
)
from lms_domain.payments.models import Payment, Provider
from lms_domain.payments.reconciliation import Discrepancy, DiscrepancyClass, ReconciliationReport, day_window
from lms_domain.tenancy.models import Institution, Role
from lms_domain.tenancy.service import create_user
from server.reconcile import run_reconciliation
from server.settings import DatabaseSettings, Settings
from tests.conftest import T0
from tests.factories import FAST_HASHER, make_institution
from tests.payments.test_reconciliation import DAY, seed_day

Sessionmaker = async_sessionmaker[AsyncSession]
MISSING = DiscrepancyClass.MISSING_IN_LEDGER
AMOUNT = DiscrepancyClass.AMOUNT_MISMATCH
DUPLICATE = DiscrepancyClass.DUPLICATE


# Helpers shared with the console tests -----------------------------------------------------------


async def make_payment(
    session: AsyncSession, institution: Institution, receipt: str, amount_minor: int = 30_000, *, at: datetime = T0
) -> Payment:
    """A settled payment of ``institution`` (no journal: reconciliation only names it)."""
    payment = Payment(
        id=new_id(),
        institution_id=institution.id,
        provider=Provider.MPESA,
        provider_receipt=receipt,
        amount_minor=amount_minor,
        paid_at=at,
    )
    session.add(payment)
    await session.flush()
    return payment


def report_of(*discrepancies: Discrepancy, day: date = DAY, heal: bool = True) -> ReconciliationReport:
    start, end = day_window(day)
    return ReconciliationReport(
        day=day,
        window_start=start,
        window_end=end,
        providers=(Provider.MPESA,),
        heal=heal,
        checked_missing_at_provider=True,
        provider_records=len(discrepancies),
        discrepancies=list(discrepancies),
    )


def amount_mismatch(payment: Payment, provider_amount: int, *, at: datetime = T0) -> Discrepancy:
    return Discrepancy(
        AMOUNT,
        "the statement and the ledger disagree on the amount",
        Provider.MPESA,
        receipt=payment.provider_receipt,
        provider_amount_minor=provider_amount,
        ledger_amount_minor=payment.amount_minor,
        occurred_at=at,
        payment_id=payment.id,
    )


def unplaced(receipt: str, amount: int = 50_000, *, healed: bool = False) -> Discrepancy:
    return Discrepancy(
        MISSING,
        "a paybill payment no intent or payment explains",
        Provider.MPESA,
        receipt=receipt,
        provider_amount_minor=amount,
        occurred_at=T0,
        healable=healed,
        healed=healed,
    )


async def make_admin(session: AsyncSession, institution: Institution | None, name: str) -> Actor:
    role = Role.INSTITUTION_ADMIN if institution else Role.PLATFORM_ADMIN
    user = await create_user(
        session=session,
        username=name,
        password="correct-horse-battery",
        role=role,
        institution_id=institution.id if institution else None,
        hasher=FAST_HASHER,
    )
    return Actor(user_id=user.id, role=role, institution_id=user.institution_id)


async def _rows(sessions: Sessionmaker) -> list[ReconciliationException]:
    async with sessions() as session:
        return list((await session.scalars(sa.select(ReconciliationException))).all())


# Recording runs ---------------------------------------------------------------------------------


async def test_a_rerun_files_nothing_twice_and_a_heal_closes_the_exception(
    sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    async with sessionmaker() as session, session.begin():
        school = await make_institution(session)
        payment = await make_payment(session, school, "SKR2000001")
    stuck = Discrepancy(
        MISSING,
        "the statement confirms a push we hold as pending",
        Provider.MPESA,
        receipt="SKR2000002",
        checkout_request_id="ws_CO_1",
        provider_amount_minor=30_000,
        occurred_at=T0,
        intent_id=None,
        healable=True,
    )
    report = report_of(amount_mismatch(payment, 25_000), stuck, unplaced("SKR2000003"))

    async with sessionmaker() as session, session.begin():
        first = await record_run(session=session, report=report, now=clock.now())
    assert (first.filed, first.seen_again, first.closed) == (3, 0, 0)

    clock.advance(timedelta(days=1))
    async with sessionmaker() as session, session.begin():
        again = await record_run(session=session, report=report, now=clock.now())
    assert (again.filed, again.seen_again, again.closed) == (0, 3, 0)
    rows = {r.receipt: r for r in await _rows(sessionmaker)}
    assert len(rows) == 3
    assert all(r.times_seen == 2 and r.status is ExceptionStatus.OPEN for r in rows.values())
    mismatch = rows["SKR2000001"]
    assert mismatch.institution_id == school.id and mismatch.payment_id == payment.id
    assert (mismatch.provider_amount_minor, mismatch.ledger_amount_minor) == (25_000, 30_000)
    assert mismatch.first_seen_run_id == first.run.id and mismatch.last_seen_run_id == again.run.id
    assert mismatch.first_seen_at == T0 and mismatch.last_seen_at == T0 + timedelta(days=1)
    assert mismatch.first_seen_at.tzinfo is not None
    assert rows["SKR2000003"].institution_id is None  # nobody's money yet: platform admins only

    # The third run heals the stuck push: that exception closes by itself.
    stuck.healed = True
    clock.advance(timedelta(hours=1))
    async with sessionmaker() as session, session.begin():
        healed = await record_run(session=session, report=report, now=clock.now())
    assert (healed.filed, healed.seen_again, healed.closed) == (0, 2, 1)
    closed = {r.receipt: r for r in await _rows(sessionmaker)}["SKR2000002"]
    assert closed.status is ExceptionStatus.RESOLVED and closed.resolution is Resolution.HEALED
    assert closed.resolved_at == clock.now() and closed.resolved_by_id is None and closed.times_seen == 3

    async with sessionmaker() as session:
        runs = (await session.scalars(sa.select(ReconciliationRun).order_by(ReconciliationRun.id))).all()
    assert [(r.found, r.healed, r.open) for r in runs] == [(3, 0, 3), (3, 0, 3), (3, 1, 2)]
    assert runs[0].day == DAY and "discrepancies" not in runs[0].summary
    assert runs[0].summary["counts"]["amount_mismatch"] == {"found": 1, "healed": 0, "open": 1}


async def test_a_dry_run_is_kept_but_files_nothing(sessionmaker: Sessionmaker, clock: FixedClock) -> None:
    async with sessionmaker() as session, session.begin():
        recorded = await record_run(session=session, report=report_of(unplaced("SKR2000010"), heal=False), now=T0)
    assert recorded.filed == 0 and await _rows(sessionmaker) == []
    async with sessionmaker() as session:
        run = await session.get(ReconciliationRun, recorded.run.id)
    assert run is not None and run.heal is False and run.open == 1


def test_the_fingerprint_is_stable_and_tells_classes_apart() -> None:
    one = unplaced("SKR2000020")
    assert fingerprint(one) == fingerprint(unplaced("SKR2000020", amount=1))
    assert fingerprint(one) != fingerprint(unplaced("SKR2000021"))
    other = Discrepancy(DUPLICATE, "x", Provider.MPESA, receipt="SKR2000020")
    assert fingerprint(one) != fingerprint(other)
    by_checkout = Discrepancy(MISSING, "x", Provider.MPESA, checkout_request_id="ws_CO_9")
    same = Discrepancy(MISSING, "y", Provider.MPESA, checkout_request_id="ws_CO_9")
    assert fingerprint(by_checkout) == fingerprint(same)


async def test_the_nightly_run_keeps_its_report_and_feeds_the_queue(
    sessionmaker: Sessionmaker, clock: FixedClock, database_url: str, tmp_path: Path
) -> None:
    """Through ``server.reconcile`` (what the job and ``somo reconcile`` run), on a seeded day."""
    day = await seed_day(sessionmaker, clock)
    path = tmp_path / "statement.csv"
    path.write_text(day.statement(), encoding="utf-8")
    settings = Settings(database=DatabaseSettings(url=database_url))

    dry = await run_reconciliation(sessionmaker, settings, DAY, statements=[str(path)], heal=False, clock=clock)
    assert dry.run_id is not None and await _rows(sessionmaker) == []

    healing = await run_reconciliation(sessionmaker, settings, DAY, statements=[str(path)], clock=clock)
    rows = await _rows(sessionmaker)
    opened = {r.receipt or r.checkout_request_id for r in rows if r.status is ExceptionStatus.OPEN}
    assert opened == {d.receipt for d in healing.report.open}
    assert {r.receipt for r in rows if r.resolution is Resolution.HEALED} == {"SKR1000003", "SKR1000004"}
    # Each names the seeded school, except the paybill payment nobody claimed.
    assert {r.receipt for r in rows if r.institution_id is None} == {"SKR1000006"}
    assert {r.institution_id for r in rows if r.receipt != "SKR1000006"} == {day.institution.id}

    await run_reconciliation(sessionmaker, settings, DAY, statements=[str(path)], clock=clock)
    again = await _rows(sessionmaker)
    assert len(again) == len(rows)
    assert all(r.times_seen == 2 for r in again if r.status is ExceptionStatus.OPEN)

    async with sessionmaker() as session:
        runs = (await session.scalars(sa.select(ReconciliationRun).order_by(ReconciliationRun.id))).all()
    assert [r.heal for r in runs] == [False, True, True]
    assert runs[1].id == healing.run_id and runs[1].healed == 2 and runs[1].open == 5
    assert runs[1].summary["statements"][0]["location"] == str(path)


# Reading, scoped ---------------------------------------------------------------------------------


async def _two_schools(sessions: Sessionmaker, clock: FixedClock) -> tuple[Actor, Actor, Actor, dict[str, uuid.UUID]]:
    async with sessions() as session, session.begin():
        alpha = await make_institution(session, name="Alpha")
        beta = await make_institution(session, name="Beta")
        a_admin = await make_admin(session, alpha, f"a-{uuid.uuid4().hex[:6]}")
        b_admin = await make_admin(session, beta, f"b-{uuid.uuid4().hex[:6]}")
        root = await make_admin(session, None, f"root-{uuid.uuid4().hex[:6]}")
        pa = await make_payment(session, alpha, "SKR3000001")
        pb = await make_payment(session, beta, "SKR3000002")
        await record_run(
            session=session,
            report=report_of(amount_mismatch(pa, 1_000), amount_mismatch(pb, 2_000), unplaced("SKR3000003")),
            now=clock.now(),
        )
        ids = {r.receipt or "": r.id for r in (await session.scalars(sa.select(ReconciliationException))).all()}
    return a_admin, b_admin, root, ids


async def test_each_school_sees_only_its_own_exceptions(sessionmaker: Sessionmaker, clock: FixedClock) -> None:
    a_admin, b_admin, root, ids = await _two_schools(sessionmaker, clock)
    async with sessionmaker() as session:
        mine, _ = await list_exceptions(session=session, actor=a_admin, query=ExceptionQuery())
        assert [e.receipt for e in mine] == ["SKR3000001"]
        every, _ = await list_exceptions(session=session, actor=root, query=ExceptionQuery())
        assert {e.receipt for e in every} == {"SKR3000001", "SKR3000002", "SKR3000003"}
        assert {e.institution_name for e in every} == {"Alpha", "Beta", None}
        with pytest.raises(NotFound):
            await get_exception(session=session, actor=b_admin, exception_id=ids["SKR3000001"])
        with pytest.raises(NotFound):  # money no school is named for: platform admins only
            await get_exception(session=session, actor=a_admin, exception_id=ids["SKR3000003"])
        unowned = await get_exception(session=session, actor=root, exception_id=ids["SKR3000003"])
        assert unowned.receipt == "SKR3000003"
        summary = await queue_summary(session=session, actor=b_admin)
        assert summary.open_total == 1 and summary.open_by_category[AMOUNT] == 1
        assert (await queue_summary(session=session, actor=root)).open_total == 3
        # Runs cover every school: platform admins only.
        assert (await list_runs(session=session, actor=a_admin, query=RunQuery()))[0] == []
        [run], _ = await list_runs(session=session, actor=root, query=RunQuery())
        with pytest.raises(NotFound):
            await get_run(session=session, actor=a_admin, run_id=run.id)
        instructor = Actor(user_id=None, role=Role.INSTRUCTOR, institution_id=a_admin.institution_id)
        with pytest.raises(PermissionDenied):
            await list_exceptions(session=session, actor=instructor, query=ExceptionQuery())


async def test_filters_sorting_and_keyset_pages(sessionmaker: Sessionmaker, clock: FixedClock) -> None:
    async with sessionmaker() as session, session.begin():
        root = await make_admin(session, None, "root-sort")
        discrepancies = [
            unplaced(f"SKR40000{i:02d}", amount=(i % 4) * 1_000 + 1_000)
            for i in range(7)  # amounts repeat: ties are broken by id
        ]
        for i, d in enumerate(discrepancies):
            d.occurred_at = T0 + timedelta(hours=i * 6)
        discrepancies.append(Discrepancy(DUPLICATE, "paid twice", Provider.AIRTEL, receipt="AIR1", occurred_at=T0))
        await record_run(session=session, report=report_of(*discrepancies), now=clock.now())

    async def walk(query: ExceptionQuery) -> list[str]:
        seen: list[str] = []
        cursor = None
        async with sessionmaker() as session:
            while True:
                page, cursor = await list_exceptions(
                    session=session, actor=root, query=query.model_copy(update={"cursor": cursor, "limit": 3})
                )
                seen += [e.receipt or "" for e in page]
                if cursor is None:
                    return seen

    async with sessionmaker() as session:
        everything, _ = await list_exceptions(
            session=session, actor=root, query=ExceptionQuery(sort=ExceptionSort.AMOUNT, limit=100)
        )
    by_amount = [e.receipt for e in everything]
    assert await walk(ExceptionQuery(sort=ExceptionSort.AMOUNT)) == by_amount
    amounts = [e.provider_amount_minor or 0 for e in everything]
    assert amounts == sorted(amounts, reverse=True)
    oldest_first = await walk(ExceptionQuery(descending=False))
    assert oldest_first[-1] == "SKR4000006" and len(oldest_first) == 8 == len(set(oldest_first))
    assert await walk(ExceptionQuery(provider="airtel")) == ["AIR1"]
    assert await walk(ExceptionQuery(category=DUPLICATE)) == ["AIR1"]
    assert await walk(ExceptionQuery(search="SKR4000003")) == ["SKR4000003"]
    window = ExceptionQuery(since=T0 + timedelta(hours=11), until=T0 + timedelta(hours=25), descending=False)
    assert await walk(window) == ["SKR4000002", "SKR4000003", "SKR4000004"]
    assert await walk(ExceptionQuery(status=ExceptionStatus.RESOLVED)) == []
    with pytest.raises(InvalidInput):
        async with sessionmaker() as session:
            await list_exceptions(session=session, actor=root, query=ExceptionQuery(cursor="bm90LWEtY3Vyc29y"))


# Resolving ----------------------------------------------------------------------------------------


async def test_resolving_follows_the_rules(sessionmaker: Sessionmaker, clock: FixedClock) -> None:
    a_admin, b_admin, root, ids = await _two_schools(sessionmaker, clock)
    target = ids["SKR3000001"]

    async def resolve(actor: Actor, resolution: Resolution, note: str | None = None) -> None:
        async with sessionmaker() as session, session.begin():
            await resolve_exception(
                session=session, actor=actor, exception_id=target, resolution=resolution, note=note, now=clock.now()
            )

    with pytest.raises(NotFound):
        await resolve(b_admin, Resolution.NOT_AN_ISSUE)
    with pytest.raises(InvalidInput, match="note"):
        await resolve(a_admin, Resolution.WRITTEN_OFF, "   ")
    with pytest.raises(InvalidInput):
        await resolve(a_admin, Resolution.HEALED)
    instructor = Actor(user_id=None, role=Role.INSTRUCTOR, institution_id=a_admin.institution_id)
    with pytest.raises(PermissionDenied):
        await resolve(instructor, Resolution.NOT_AN_ISSUE)
    assert all(r.status is ExceptionStatus.OPEN for r in await _rows(sessionmaker))

    clock.advance(timedelta(minutes=5))
    await resolve(a_admin, Resolution.WRITTEN_OFF, "  KES 10 short; below the threshold  ")
    async with sessionmaker() as session:
        row = await session.get(ReconciliationException, target)
        assert row is not None and row.status is ExceptionStatus.RESOLVED
        assert row.resolution is Resolution.WRITTEN_OFF and row.note == "KES 10 short; below the threshold"
        assert row.resolved_by_id == a_admin.user_id and row.resolved_at == clock.now()
        shown = await get_exception(session=session, actor=a_admin, exception_id=target)
        assert shown.resolved_by_username is not None and shown.resolved_by_username.startswith("a-")

    with pytest.raises(Conflict):
        await resolve(a_admin, Resolution.NOT_AN_ISSUE)
    with pytest.raises(Conflict):
        await resolve(root, Resolution.NOT_AN_ISSUE)

    # A later run finding it again does not reopen a person's verdict.
    async with sessionmaker() as session, session.begin():
        payment = (await session.scalars(sa.select(Payment).where(Payment.provider_receipt == "SKR3000001"))).one()
        await record_run(session=session, report=report_of(amount_mismatch(payment, 1_000)), now=clock.now())
    async with sessionmaker() as session:
        row = await session.get(ReconciliationException, target)
        assert row is not None and row.status is ExceptionStatus.RESOLVED and row.times_seen == 2

    # Platform admins resolve what no school can see.
    async with sessionmaker() as session, session.begin():
        done = await resolve_exception(
            session=session,
            actor=root,
            exception_id=ids["SKR3000003"],
            resolution=Resolution.MATCHED_MANUALLY,
            note=None,
            now=datetime(2026, 11, 28, tzinfo=UTC),
        )
    assert done.status is ExceptionStatus.RESOLVED and done.note is None
