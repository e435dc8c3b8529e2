"""The before_flush hook: every change to a synced row is stamped and lands in the outbox.

See ``lms_domain/changefeed/capture.py``. Sequence numbers are per scope (an institution,
the shared catalogue, or ``central``), contiguous, and on Postgres become visible in
order because the writer holding seq k keeps the scope's counter row locked until commit.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lms_domain.changefeed import CATALOG_SCOPE, NodeRole, SyncContext, install_change_capture
from lms_domain.changefeed.capture import CENTRAL_SCOPE
from lms_domain.changefeed.hlc import unpack
from lms_domain.changefeed.models import ChangeOp, OutboxEntry, SyncCounter
from lms_domain.clock import FixedClock
from lms_domain.db import make_sessionmaker
from lms_domain.ids import new_id
from lms_domain.tenancy.models import Learner, Phone, Role, User
from lms_domain.tenancy.service import account_no_for
from tests.conftest import T0
from tests.factories import make_course, make_institution, make_learner

Sessionmaker = async_sessionmaker[AsyncSession]


@pytest.fixture(autouse=True)
def _capture_installed() -> None:
    # Tests that build their own sessionmaker must not depend on another fixture installing the hook.
    install_change_capture()


async def outbox(
    sessionmaker: Sessionmaker, *, scope: str | None = None, row_id: uuid.UUID | None = None
) -> list[OutboxEntry]:
    """Outbox entries, read in a fresh session, ordered by scope then seq."""
    stmt = sa.select(OutboxEntry).order_by(OutboxEntry.scope, OutboxEntry.seq)
    if scope is not None:
        stmt = stmt.where(OutboxEntry.scope == scope)
    if row_id is not None:
        stmt = stmt.where(OutboxEntry.row_id == row_id)
    async with sessionmaker() as s:
        return list(await s.scalars(stmt))


async def counter(sessionmaker: Sessionmaker, scope: str) -> int | None:
    async with sessionmaker() as s:
        return await s.scalar(sa.select(SyncCounter.value).where(SyncCounter.scope == scope))


async def fresh(sessionmaker: Sessionmaker, learner_id: uuid.UUID) -> Learner:
    async with sessionmaker() as s:
        row = await s.get(Learner, learner_id)
    assert row is not None
    return row


# --- stamping and scopes ------------------------------------------------------------------------


async def test_insert_stamps_the_row_and_writes_an_outbox_entry(
    session: AsyncSession, sessionmaker: Sessionmaker, sync_context: SyncContext, clock: FixedClock
) -> None:
    learner = await make_learner(session)
    await session.commit()

    assert learner.hlc > 0
    assert learner.origin_node_id == sync_context.node_id
    assert learner.created_at == learner.updated_at == clock.now() == T0
    assert learner.change_seq is not None

    [entry] = await outbox(sessionmaker, row_id=learner.id)
    assert entry.table_name == "learners"
    assert entry.op is ChangeOp.UPSERT
    assert entry.hlc == learner.hlc
    assert entry.seq == learner.change_seq
    assert entry.scope == str(learner.institution_id)
    assert entry.origin_node_id == sync_context.node_id

    stored = await fresh(sessionmaker, learner.id)  # the stamps reached the database, not just the object
    assert (stored.hlc, stored.change_seq, stored.origin_node_id) == (
        learner.hlc,
        learner.change_seq,
        sync_context.node_id,
    )
    assert stored.created_at == T0


async def test_institution_is_its_own_scope(session: AsyncSession, sessionmaker: Sessionmaker) -> None:
    institution = await make_institution(session)
    await session.commit()

    [entry] = await outbox(sessionmaker, row_id=institution.id)
    assert (entry.scope, entry.table_name, entry.seq) == (str(institution.id), "institutions", 1)


async def test_catalogue_rows_land_in_the_catalog_scope(session: AsyncSession, sessionmaker: Sessionmaker) -> None:
    shared = await make_course(session, institution=None, lessons=2, questions=1)
    institution = await make_institution(session)
    own = await make_course(session, institution=institution, lessons=1, questions=0)
    await session.commit()

    catalog = await outbox(sessionmaker, scope=CATALOG_SCOPE)
    # course, section, 2 lessons, quiz, 1 question with 3 choices
    assert sorted(e.table_name for e in catalog) == sorted(
        ["courses", "sections", "lessons", "lessons", "quizzes", "questions"] + ["question_choices"] * 3
    )
    assert shared.course.id in {e.row_id for e in catalog}
    [own_entry] = await outbox(sessionmaker, row_id=own.course.id)
    assert own_entry.scope == str(institution.id)


async def test_platform_admin_goes_to_central_scope(session: AsyncSession, sessionmaker: Sessionmaker) -> None:
    institution = await make_institution(session)
    admin = User(id=new_id(), username="root", role=Role.PLATFORM_ADMIN, institution_id=None, password_hash="x")
    teacher = User(
        id=new_id(), username="mwalimu", role=Role.INSTRUCTOR, institution_id=institution.id, password_hash="x"
    )
    session.add_all([admin, teacher])
    await session.commit()

    [admin_entry] = await outbox(sessionmaker, row_id=admin.id)
    [teacher_entry] = await outbox(sessionmaker, row_id=teacher.id)
    assert admin_entry.scope == CENTRAL_SCOPE
    assert teacher_entry.scope == str(institution.id)


async def test_non_synced_rows_write_no_outbox_entry(session: AsyncSession, sessionmaker: Sessionmaker) -> None:
    session.add(Phone(id=new_id(), e164="+254712345678"))
    await session.commit()
    assert await outbox(sessionmaker) == []


# --- updates and deletes ------------------------------------------------------------------------


async def test_update_writes_a_later_entry(
    session: AsyncSession, sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    learner = await make_learner(session)
    await session.commit()
    first_hlc, first_seq = learner.hlc, learner.change_seq
    assert first_seq is not None

    clock.advance(timedelta(minutes=5))
    learner.display_name = "Wanjiku Renamed"
    await session.commit()

    first, second = await outbox(sessionmaker, row_id=learner.id)
    assert (first.seq, first.hlc) == (first_seq, first_hlc)
    assert second.op is ChangeOp.UPSERT
    assert second.seq == first_seq + 1
    assert second.hlc > first_hlc
    stored = await fresh(sessionmaker, learner.id)
    assert (stored.hlc, stored.change_seq) == (second.hlc, second.seq)
    assert stored.created_at == T0
    assert stored.updated_at == T0 + timedelta(minutes=5)


async def test_update_takes_updated_at_from_the_clock_even_when_it_has_not_moved(
    session: AsyncSession, sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    learner = await make_learner(session)
    await session.commit()

    learner.display_name = "Wanjiku Renamed"
    await session.commit()

    stored = await fresh(sessionmaker, learner.id)
    assert stored.updated_at == clock.now()


async def test_soft_delete_writes_a_delete_entry(
    session: AsyncSession, sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    learner = await make_learner(session)
    await session.commit()

    learner.deleted_at = clock.now()
    await session.commit()

    ops = [e.op for e in await outbox(sessionmaker, row_id=learner.id)]
    assert ops == [ChangeOp.UPSERT, ChangeOp.DELETE]


async def test_hard_delete_of_a_synced_row_is_refused(session: AsyncSession, sessionmaker: Sessionmaker) -> None:
    learner = await make_learner(session)
    await session.commit()
    learner_id = learner.id

    await session.delete(learner)
    with pytest.raises(RuntimeError, match="set deleted_at"):
        await session.flush()
    await session.rollback()

    assert (await fresh(sessionmaker, learner_id)).deleted_at is None
    assert len(await outbox(sessionmaker, row_id=learner_id)) == 1


async def test_update_that_changes_nothing_writes_no_entry(session: AsyncSession, sessionmaker: Sessionmaker) -> None:
    learner = await make_learner(session, name="Wanjiku Test")
    await session.commit()
    hlc = learner.hlc

    learner.display_name = "Wanjiku Test"  # the same value
    await session.commit()
    learner.display_name = "Someone Else"
    learner.display_name = "Wanjiku Test"  # changed and changed back before the flush
    await session.commit()

    assert len(await outbox(sessionmaker, row_id=learner.id)) == 1
    assert (await fresh(sessionmaker, learner.id)).hlc == hlc


# --- sequences ----------------------------------------------------------------------------------


async def test_seqs_are_contiguous_per_scope_across_transactions(
    session: AsyncSession, sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    north, south = await make_institution(session, code="NORTH"), await make_institution(session, code="SOUTH")
    await session.commit()
    learners = [await make_learner(session, institution=north, name=f"North {i}") for i in range(3)]
    other = await make_learner(session, institution=south)
    await session.commit()
    for learner in learners[:2]:
        learner.display_name += " Renamed"
    other.display_name = "South Renamed"
    await session.commit()
    learners[2].deleted_at = clock.now()
    await session.commit()

    for scope, expected in ((str(north.id), 1 + 3 + 2 + 1), (str(south.id), 1 + 1 + 1)):
        seqs = [e.seq for e in await outbox(sessionmaker, scope=scope)]
        assert seqs == list(range(1, expected + 1)), scope
        assert await counter(sessionmaker, scope) == expected


async def test_session_without_sync_context_refuses_synced_changes(session: AsyncSession, engine: AsyncEngine) -> None:
    learner = await make_learner(session)
    institution_id = learner.institution_id
    await session.commit()
    bare = async_sessionmaker(engine, expire_on_commit=False)

    async with bare() as s:
        row = await s.get(Learner, learner.id)
        assert row is not None
        row.display_name = "No Context"
        with pytest.raises(RuntimeError, match="without a SyncContext"):
            await s.flush()
    async with bare() as s:
        s.add(Learner(id=new_id(), institution_id=institution_id, display_name="New", account_no="00000001"))
        with pytest.raises(RuntimeError, match="without a SyncContext"):
            await s.flush()
    async with bare() as s:  # rows that are not synced need no context
        s.add(Phone(id=new_id(), e164="+254700000001"))
        await s.commit()

    async with bare() as s:
        assert (await s.get(Learner, learner.id)).display_name == "Wanjiku Test"  # type: ignore[union-attr]
        assert await s.scalar(sa.select(sa.func.count()).select_from(Learner)) == 1


async def test_edge_role_writes_outbox_but_assigns_no_change_seq(engine: AsyncEngine, clock: FixedClock) -> None:
    edge_node_id = new_id()
    edge = make_sessionmaker(engine, SyncContext(node_id=edge_node_id, role=NodeRole.EDGE, clock=clock))
    async with edge() as s:
        learner = await make_learner(s)
        await s.commit()
        learner.display_name = "Edited Offline"
        await s.commit()

    stored = await fresh(edge, learner.id)
    assert stored.change_seq is None
    assert stored.origin_node_id == edge_node_id
    entries = await outbox(edge, row_id=learner.id)
    assert [(e.seq, e.op) for e in entries] == [(2, ChangeOp.UPSERT), (3, ChangeOp.UPSERT)]  # after the institution
    assert {e.origin_node_id for e in entries} == {edge_node_id}
    assert entries[-1].hlc == stored.hlc


async def test_hlc_stays_monotonic_when_the_clock_goes_backwards(
    session: AsyncSession, sessionmaker: Sessionmaker, clock: FixedClock
) -> None:
    learner = await make_learner(session)
    await session.commit()
    before = learner.hlc

    clock.advance(timedelta(days=-400))  # a school server whose RTC battery died
    learner.display_name = "After Reset"
    await session.commit()
    after_reset = learner.hlc
    assert after_reset > before
    assert unpack(after_reset)[0] == unpack(before)[0]  # physical part holds at the highest time seen
    assert learner.updated_at == T0 - timedelta(days=400)  # timestamps follow the clock; only the HLC is versioned

    clock.advance(timedelta(days=800))
    learner.display_name = "Clock Fixed"
    await session.commit()
    assert learner.hlc > after_reset
    assert unpack(learner.hlc)[0] == int(clock.now().timestamp() * 1000)

    hlcs = [e.hlc for e in await outbox(sessionmaker, row_id=learner.id)]
    assert hlcs == sorted(hlcs)
    assert len(set(hlcs)) == 3


# --- concurrency --------------------------------------------------------------------------------


# Waiting on the counter's row lock is a Postgres concern; SQLite has one database-wide
# write lock, covered by test_db_sessions.py.
@pytest.mark.backend_only("postgres")
async def test_sequences_become_visible_in_order(session: AsyncSession, sessionmaker: Sessionmaker) -> None:
    institution = await make_institution(session)
    first = await make_learner(session, institution=institution, name="First")
    second = await make_learner(session, institution=institution, name="Second")
    await session.commit()
    scope = str(institution.id)

    async def rename(learner_id: uuid.UUID, name: str) -> int:
        async with sessionmaker() as s:
            row = await s.get(Learner, learner_id)
            assert row is not None
            row.display_name = name
            await s.commit()
            assert row.change_seq is not None
            return row.change_seq

    async with sessionmaker() as a:
        row_a = await a.get(Learner, first.id)
        assert row_a is not None
        row_a.display_name = "First Renamed"
        await a.flush()  # A now holds seq k and the scope's counter row lock
        k = row_a.change_seq
        assert k == 4

        b = asyncio.create_task(rename(second.id, "Second Renamed"))
        try:
            done, _ = await asyncio.wait({b}, timeout=0.3)
            assert not done, "B took a sequence number while A held a lower one uncommitted"
            assert [e.seq for e in await outbox(sessionmaker, scope=scope)] == [1, 2, 3]  # k is not visible yet
            await a.commit()
        finally:
            if not b.done():
                await a.rollback()
            seq_b = await asyncio.wait_for(b, timeout=10)

    assert seq_b == k + 1
    entries = await outbox(sessionmaker, scope=scope)
    assert [(e.seq, e.row_id) for e in entries[-2:]] == [(k, first.id), (k + 1, second.id)]


async def test_concurrent_writers_leave_no_gaps_or_duplicates(
    session: AsyncSession, sessionmaker: Sessionmaker
) -> None:
    # On SQLite this also proves writers wait for the lock (BEGIN IMMEDIATE) instead of
    # failing with "database is locked".
    institution = await make_institution(session)
    await session.commit()
    writers, renames = 8, 3

    async def writer(n: int) -> uuid.UUID:
        async with sessionmaker() as s:
            learner = await make_learner(s, institution=institution, name=f"Writer {n}", pin=None)
            await s.commit()
        for i in range(renames):
            async with sessionmaker() as s:
                row = await s.get(Learner, learner.id)
                assert row is not None
                row.display_name = f"Writer {n} v{i + 1}"
                await s.commit()
        return learner.id

    # Every writer runs to its end (success or failure) before anything is checked, so none outlives the test.
    results = await asyncio.gather(*(writer(n) for n in range(writers)), return_exceptions=True)

    scope = str(institution.id)
    entries = await outbox(sessionmaker, scope=scope)
    # Holds even if a writer failed: a rolled-back transaction gives its numbers back.
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert await counter(sessionmaker, scope) == len(entries)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]

    learner_ids = [r for r in results if isinstance(r, uuid.UUID)]
    assert len(entries) == 1 + writers * (1 + renames)
    for n, learner_id in enumerate(learner_ids):
        mine = [e for e in entries if e.row_id == learner_id]
        assert len(mine) == 1 + renames
        stored = await fresh(sessionmaker, learner_id)
        assert (stored.change_seq, stored.hlc) == (mine[-1].seq, mine[-1].hlc)
        assert stored.display_name == f"Writer {n} v{renames}"


# --- property -----------------------------------------------------------------------------------

NAMES = ("Amina Wanjiru", "Baraka Otieno", "Chebet Kiprop")


@dataclass(frozen=True)
class LearnerState:
    name: str
    deleted: bool = False


# (operation, which learner, new name, commit after it? None = no, else seconds to move the clock by)
Op = tuple[str, int, str, int | None]
OPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "rename", "delete"]),
        st.integers(min_value=0, max_value=1_000),
        st.sampled_from(NAMES),
        st.none() | st.integers(min_value=-3_600, max_value=3_600),
    ),
    min_size=1,
    max_size=25,
)


def _expected_changes(
    committed: dict[uuid.UUID, LearnerState], staged: dict[uuid.UUID, LearnerState]
) -> dict[uuid.UUID, ChangeOp]:
    """One entry per row whose state at commit differs from the last committed state."""
    changes: dict[uuid.UUID, ChangeOp] = {}
    for learner_id, state in staged.items():
        before = committed.get(learner_id)
        if state == before:
            continue
        newly_deleted = state.deleted and (before is None or not before.deleted)
        changes[learner_id] = ChangeOp.DELETE if newly_deleted else ChangeOp.UPSERT
    return changes


# Safe to share the function-scoped fixtures across examples: each example creates its own
# institution (so its own scope) and only ever reads that scope back; the clock and HLC may
# carry over, which the properties must tolerate anyway.
@settings(
    max_examples=25,
    suppress_health_check=[*settings().suppress_health_check, HealthCheck.function_scoped_fixture],
)
@given(ops=OPS)
async def test_outbox_matches_the_effective_changes(
    sessionmaker: Sessionmaker, clock: FixedClock, ops: list[Op]
) -> None:
    async with sessionmaker() as s:
        institution = await make_institution(s)
        await s.commit()
        rows: dict[uuid.UUID, Learner] = {}
        committed: dict[uuid.UUID, LearnerState] = {}
        staged: dict[uuid.UUID, LearnerState] = {}
        batches: list[dict[uuid.UUID, ChangeOp]] = []

        async def commit() -> None:
            await s.commit()
            batches.append(_expected_changes(committed, staged))
            committed.update(staged)

        # No query runs between operations, so each batch is exactly one flush.
        for kind, target, name, commit_after in ops:
            live = [i for i, state in staged.items() if not state.deleted]
            if kind == "create":
                learner_id = new_id()
                rows[learner_id] = Learner(
                    id=learner_id,
                    institution_id=institution.id,
                    display_name=name,
                    account_no=account_no_for(learner_id),
                )
                s.add(rows[learner_id])
                staged[learner_id] = LearnerState(name)
            elif live and kind == "rename":
                learner_id = live[target % len(live)]
                rows[learner_id].display_name = name
                staged[learner_id] = replace(staged[learner_id], name=name)
            elif live and kind == "delete":
                learner_id = live[target % len(live)]
                rows[learner_id].deleted_at = clock.now()
                staged[learner_id] = replace(staged[learner_id], deleted=True)
            if commit_after is not None:
                await commit()
                clock.advance(timedelta(seconds=commit_after))
        await commit()

    entries = await outbox(sessionmaker, scope=str(institution.id))
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    hlcs = [e.hlc for e in entries]
    assert hlcs == sorted(set(hlcs)), "one writer's versions must rise with seq, whatever its clock does"
    assert entries[0].row_id == institution.id
    position = 1
    for expected in batches:
        batch = entries[position : position + len(expected)]
        assert {e.row_id: e.op for e in batch} == expected
        assert len(batch) == len(expected)
        position += len(expected)
    assert position == len(entries)

    latest = {e.row_id: e for e in entries}
    async with sessionmaker() as s:
        stored = {row.id: row for row in await s.scalars(sa.select(Learner).where(Learner.id.in_(rows)))}
    assert set(stored) == set(rows)
    for learner_id, row in stored.items():
        assert row.hlc == latest[learner_id].hlc
        assert row.change_seq == latest[learner_id].seq
        assert (row.display_name, row.deleted_at is not None) == (staged[learner_id].name, staged[learner_id].deleted)
