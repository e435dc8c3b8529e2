"""The ledger: balanced entries only, each business key posted once, history never rewritten.

Every test runs on SQLite and Postgres; the append-only rule is checked against the
database itself (raw SQL), not the service, since the service never updates anyway.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.errors import Conflict, InvalidInput
from lms_domain.ids import natural_id, new_id
from lms_domain.ledger.accounts import CHART, as_reported, ensure_accounts
from lms_domain.ledger.models import JournalEntry, LedgerAccount, Posting
from lms_domain.ledger.service import balance, entry_postings, post_entry, trial_balance
from lms_domain.money import Money, split_vat
from tests.conftest import T0
from tests.factories import make_institution

Sessionmaker = async_sessionmaker[AsyncSession]
CODES = [spec.code for spec in CHART]


@dataclass
class Key:
    source_type: str
    source_id: uuid.UUID
    kind: str


def settlement_postings(shillings: int) -> list[tuple[str, int]]:
    vat = split_vat(Money.kes(shillings))
    return [
        ("mpesa_clearing", vat.total.amount_minor),
        ("revenue", -vat.net.amount_minor),
        ("vat_payable", -vat.vat.amount_minor),
    ]


async def _institution(sessionmaker: Sessionmaker) -> uuid.UUID:
    async with sessionmaker() as s:
        institution = await make_institution(s)
        await s.commit()
    return institution.id


async def _post(
    sessionmaker: Sessionmaker,
    institution_id: uuid.UUID,
    key: Key,
    postings: list[tuple[str, int]],
    *,
    currency: str = "KES",
    occurred_at: datetime | None = None,
) -> JournalEntry:
    """One unit of work: post, then commit (or roll back on a domain error)."""
    async with sessionmaker() as s:
        entry = await post_entry(
            s,
            institution_id=institution_id,
            kind=key.kind,
            source_type=key.source_type,
            source_id=key.source_id,
            occurred_at=occurred_at or T0,
            description="test entry",
            postings=postings,
            currency=currency,
        )
        await s.commit()
    return entry


async def _counts(sessionmaker: Sessionmaker) -> tuple[int, int]:
    async with sessionmaker() as s:
        entries = await s.scalar(sa.select(sa.func.count()).select_from(JournalEntry))
        postings = await s.scalar(sa.select(sa.func.count()).select_from(Posting))
    return int(entries or 0), int(postings or 0)


def _key(kind: str = "settlement") -> Key:
    return Key("payment", new_id(), kind)


async def test_chart_is_created_once_with_natural_ids(sessionmaker: Sessionmaker) -> None:
    institution_id = await _institution(sessionmaker)
    async with sessionmaker() as s:
        first = await ensure_accounts(s, institution_id)
        await s.commit()
    async with sessionmaker() as s:
        again = await ensure_accounts(s, institution_id)
        usd = await ensure_accounts(s, institution_id, "USD")
        await s.commit()
        rows = list(await s.scalars(sa.select(LedgerAccount).where(LedgerAccount.institution_id == institution_id)))
    assert set(first) == set(again) == set(usd) == set(CODES)
    assert {a.id for a in first.values()} == {a.id for a in again.values()}
    assert len(rows) == 2 * len(CODES)
    for account in rows:
        assert account.id == natural_id("ledger_account", institution_id, account.code, account.currency)


async def test_an_mpesa_settlement_posts_and_balances(sessionmaker: Sessionmaker) -> None:
    institution_id = await _institution(sessionmaker)
    postings = settlement_postings(300)
    assert postings == [("mpesa_clearing", 30_000), ("revenue", -25_862), ("vat_payable", -4_138)]
    entry = await _post(sessionmaker, institution_id, _key(), postings)

    async with sessionmaker() as s:
        assert await entry_postings(s, entry.id) == [
            ("mpesa_clearing", "KES", 30_000),
            ("revenue", "KES", -25_862),
            ("vat_payable", "KES", -4_138),
        ]
        assert await balance(s, institution_id, "mpesa_clearing") == 30_000
        assert await balance(s, institution_id, "revenue") == -25_862
        assert await balance(s, institution_id, "vat_payable") == -4_138
        assert await balance(s, institution_id, "suspense") == 0
        trial = await trial_balance(s, institution_id)
    assert trial == {
        "mpesa_clearing": 30_000,
        "airtel_clearing": 0,
        "revenue": -25_862,
        "vat_payable": -4_138,
        "refunds": 0,
        "suspense": 0,
        "cash": 0,
    }
    assert sum(trial.values()) == 0
    assert as_reported("revenue", trial["revenue"]) == 25_862
    assert as_reported("mpesa_clearing", trial["mpesa_clearing"]) == 30_000


async def test_a_refund_reverses_revenue_and_vat(sessionmaker: Sessionmaker) -> None:
    institution_id = await _institution(sessionmaker)
    payment_id = new_id()
    await _post(sessionmaker, institution_id, Key("payment", payment_id, "settlement"), settlement_postings(300))
    refund = [(code if code != "revenue" else "refunds", -amount) for code, amount in settlement_postings(300)]
    await _post(sessionmaker, institution_id, Key("payment", payment_id, "refund"), refund)
    async with sessionmaker() as s:
        trial = await trial_balance(s, institution_id)
    assert trial["mpesa_clearing"] == trial["vat_payable"] == 0
    assert trial["revenue"] + trial["refunds"] == 0  # net revenue after a full refund
    assert as_reported("refunds", trial["refunds"]) == 25_862


async def test_balance_as_of_a_time_and_per_currency(sessionmaker: Sessionmaker) -> None:
    institution_id = await _institution(sessionmaker)
    await _post(sessionmaker, institution_id, _key(), [("mpesa_clearing", 1_000), ("revenue", -1_000)])
    later = T0 + timedelta(days=1)
    await _post(sessionmaker, institution_id, _key(), [("mpesa_clearing", 500), ("revenue", -500)], occurred_at=later)
    await _post(sessionmaker, institution_id, _key(), [("airtel_clearing", 7), ("revenue", -7)], currency="USD")
    async with sessionmaker() as s:
        assert await balance(s, institution_id, "mpesa_clearing") == 1_500
        assert await balance(s, institution_id, "mpesa_clearing", at=T0) == 1_000
        assert await balance(s, institution_id, "mpesa_clearing", at=T0 - timedelta(seconds=1)) == 0
        assert await balance(s, institution_id, "revenue", "USD") == -7
        assert (await trial_balance(s, institution_id, at=T0))["revenue"] == -1_000
        assert sum((await trial_balance(s, institution_id, "USD")).values()) == 0


@pytest.mark.parametrize(
    ("postings", "code"),
    [
        pytest.param([("mpesa_clearing", 100), ("revenue", -99)], "ledger_unbalanced", id="unbalanced"),
        pytest.param([("mpesa_clearing", 0), ("revenue", 0)], "ledger_zero_posting", id="zero-sum-of-zeros"),
        pytest.param(
            [("mpesa_clearing", 100), ("revenue", -100), ("suspense", 0)], "ledger_zero_posting", id="one-zero"
        ),
        pytest.param([("mpesa_clearing", 100)], "ledger_too_few_postings", id="one-posting"),
        pytest.param([], "ledger_too_few_postings", id="no-postings"),
        pytest.param([("petty_cash", 100), ("revenue", -100)], "ledger_unknown_account", id="unknown-account"),
        pytest.param([("mpesa_clearing", True), ("revenue", -1)], "ledger_invalid_amount", id="bool-amount"),
    ],
)
async def test_invalid_entries_are_refused_and_write_nothing(
    sessionmaker: Sessionmaker, postings: list[tuple[str, int]], code: str
) -> None:
    institution_id = await _institution(sessionmaker)
    key = _key()
    with pytest.raises(InvalidInput) as excinfo:
        await _post(sessionmaker, institution_id, key, postings)
    assert excinfo.value.code == code
    assert await _counts(sessionmaker) == (0, 0)
    # The refused attempt did not burn the key: a valid entry under it still posts.
    await _post(sessionmaker, institution_id, key, [("mpesa_clearing", 100), ("revenue", -100)])
    assert await _counts(sessionmaker) == (1, 2)


async def test_same_key_same_content_is_a_no_op(sessionmaker: Sessionmaker) -> None:
    institution_id = await _institution(sessionmaker)
    key = _key()
    first = await _post(sessionmaker, institution_id, key, settlement_postings(300))
    # Order of postings, description and occurred_at are not part of the content.
    again = await _post(
        sessionmaker, institution_id, key, settlement_postings(300)[::-1], occurred_at=T0 + timedelta(minutes=5)
    )
    assert again.id == first.id
    assert again.occurred_at == T0
    assert await _counts(sessionmaker) == (1, 3)
    async with sessionmaker() as s:
        assert await balance(s, institution_id, "mpesa_clearing") == 30_000


async def test_same_key_in_one_unit_of_work_is_a_no_op(sessionmaker: Sessionmaker) -> None:
    institution_id = await _institution(sessionmaker)
    key = _key()
    async with sessionmaker() as s:
        ids = [
            (
                await post_entry(
                    s,
                    institution_id=institution_id,
                    kind=key.kind,
                    source_type=key.source_type,
                    source_id=key.source_id,
                    occurred_at=T0,
                    description="twice in one transaction",
                    postings=settlement_postings(100),
                )
            ).id
            for _ in range(2)
        ]
        await s.commit()
    assert ids[0] == ids[1]
    assert await _counts(sessionmaker) == (1, 3)


@pytest.mark.parametrize(
    "different",
    [
        pytest.param(settlement_postings(301), id="other-amounts"),
        pytest.param([("airtel_clearing", 30_000), ("revenue", -25_862), ("vat_payable", -4_138)], id="other-account"),
        pytest.param(
            [("mpesa_clearing", 30_000), ("revenue", -25_862), ("vat_payable", -4_000), ("vat_payable", -138)],
            id="split-posting",
        ),
    ],
)
async def test_same_key_different_content_is_a_conflict(
    sessionmaker: Sessionmaker, different: list[tuple[str, int]]
) -> None:
    institution_id = await _institution(sessionmaker)
    key = _key()
    first = await _post(sessionmaker, institution_id, key, settlement_postings(300))
    with pytest.raises(Conflict) as excinfo:
        await _post(sessionmaker, institution_id, key, different)
    assert excinfo.value.code == "ledger_key_conflict"
    assert excinfo.value.extra["entry_id"] == str(first.id)
    assert await _counts(sessionmaker) == (1, 3)


async def test_same_key_from_another_institution_is_a_conflict(sessionmaker: Sessionmaker) -> None:
    school_a, school_b = await _institution(sessionmaker), await _institution(sessionmaker)
    key = _key()
    await _post(sessionmaker, school_a, key, settlement_postings(300))
    with pytest.raises(Conflict):
        await _post(sessionmaker, school_b, key, settlement_postings(300))


async def test_same_key_different_currency_is_a_conflict(sessionmaker: Sessionmaker) -> None:
    institution_id = await _institution(sessionmaker)
    key = _key()
    await _post(sessionmaker, institution_id, key, [("mpesa_clearing", 100), ("revenue", -100)])
    with pytest.raises(Conflict):
        await _post(sessionmaker, institution_id, key, [("mpesa_clearing", 100), ("revenue", -100)], currency="USD")


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("UPDATE postings SET amount_minor = amount_minor + 1", id="update-postings"),
        pytest.param("DELETE FROM postings", id="delete-postings"),
        pytest.param("UPDATE journal_entries SET description = 'rewritten'", id="update-entries"),
        pytest.param("DELETE FROM journal_entries", id="delete-entries"),
    ],
)
async def test_the_database_refuses_to_rewrite_history(sessionmaker: Sessionmaker, statement: str) -> None:
    institution_id = await _institution(sessionmaker)
    entry = await _post(sessionmaker, institution_id, _key(), settlement_postings(300))
    async with sessionmaker() as s:
        before = await entry_postings(s, entry.id)
        with pytest.raises(DBAPIError) as excinfo:  # IntegrityError on both backends, a DBAPIError subclass
            await s.execute(sa.text(statement))
        await s.rollback()
    assert "append-only" in str(excinfo.value.orig)
    async with sessionmaker() as s:
        assert await entry_postings(s, entry.id) == before
        stored = await s.get(JournalEntry, entry.id)
        assert stored is not None and stored.description == "test entry"
    assert await _counts(sessionmaker) == (1, 3)


async def test_a_bulk_delete_matching_nothing_still_runs(sessionmaker: Sessionmaker) -> None:
    """Row-level triggers: ``clear_demo`` deleting an institution's (absent) postings is not refused."""
    institution_id = await _institution(sessionmaker)
    await _post(sessionmaker, institution_id, _key(), settlement_postings(300))
    async with sessionmaker() as s:
        entries = sa.select(JournalEntry.id).where(JournalEntry.institution_id == new_id())
        await s.execute(sa.delete(Posting).where(Posting.entry_id.in_(entries)))
        await s.commit()
    assert await _counts(sessionmaker) == (1, 3)


# One operation: (key slot, postings) or, with ``replay``, a repeat of an earlier
# operation (same key, same postings, shuffled) so duplicates are common, not luck.
# Non-zero draws; a zero posting can still arise from the balancing posting, and is refused.
amounts = st.integers(min_value=1, max_value=10**9) | st.integers(min_value=-(10**9), max_value=-1)
postings_strategy = st.lists(st.tuples(st.sampled_from(CODES), amounts), min_size=1, max_size=4).flatmap(
    # Usually balance the entry with a last posting; sometimes leave it as drawn (mostly refused).
    lambda drawn: st.sampled_from(CODES).flatmap(
        lambda last_code: st.sampled_from(
            [[*drawn, (last_code, -sum(a for _, a in drawn))], [*drawn, (last_code, -sum(a for _, a in drawn))], drawn]
        )
    )
)
operations = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),  # key slot
        postings_strategy,
        st.booleans(),  # replay an earlier operation?
        st.integers(min_value=0, max_value=1_000),  # which one
        st.randoms(use_true_random=False),
    ),
    min_size=1,
    max_size=12,
)


def _expected_refusal(postings: list[tuple[str, int]]) -> bool:
    return len(postings) < 2 or any(a == 0 for _, a in postings) or sum(a for _, a in postings) != 0


# The function-scoped fixtures (sessionmaker, its database) are shared across examples on
# purpose: a fresh database per example would cost seconds each. Each example creates its
# own institution and fresh source ids, and only reads those back, so examples never see
# each other's rows.
@settings(
    max_examples=30,
    suppress_health_check=[*settings().suppress_health_check, HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
async def test_any_sequence_of_entries_keeps_the_books_balanced(
    sessionmaker: Sessionmaker, ops: list[tuple[int, list[tuple[str, int]], bool, int, random.Random]]
) -> None:
    institution_id = await _institution(sessionmaker)
    slots = [Key("payment", new_id(), "settlement" if n % 2 else "refund") for n in range(6)]
    accepted: dict[int, tuple[uuid.UUID, list[tuple[str, int]]]] = {}
    history: list[tuple[int, list[tuple[str, int]]]] = []
    for slot, drawn, replay, which, rnd in ops:
        if replay and history:
            slot, original = history[which % len(history)]
            postings = list(original)
            rnd.shuffle(postings)
        else:
            postings = drawn
        history.append((slot, postings))
        try:
            entry = await _post(sessionmaker, institution_id, slots[slot], postings)
        except InvalidInput:
            event("refused")
            assert _expected_refusal(postings)
            continue
        except Conflict:
            event("conflict")
            assert slot in accepted and sorted(accepted[slot][1]) != sorted(postings)
            continue
        assert not _expected_refusal(postings)
        if slot in accepted:
            event("replayed")
            assert entry.id == accepted[slot][0]
            assert sorted(accepted[slot][1]) == sorted(postings)
        else:
            event("accepted")
            accepted[slot] = (entry.id, postings)

    expected = dict.fromkeys(CODES, 0)
    for _, postings in accepted.values():
        for code, amount in postings:
            expected[code] += amount
    async with sessionmaker() as s:
        trial = await trial_balance(s, institution_id)
        balances = {code: await balance(s, institution_id, code) for code in CODES}
        per_key = (
            await s.execute(
                sa.select(JournalEntry.source_id, JournalEntry.kind, sa.func.count())
                .where(JournalEntry.institution_id == institution_id)
                .group_by(JournalEntry.source_id, JournalEntry.kind)
            )
        ).all()
        stored = {
            entry_id: sorted((code, amount) for code, _, amount in await entry_postings(s, entry_id))
            for entry_id, _ in accepted.values()
        }
    assert sum(trial.values()) == 0
    assert trial == balances == expected
    assert sorted((source_id, kind) for source_id, kind, _ in per_key) == sorted(
        (slots[slot].source_id, slots[slot].kind) for slot in accepted
    )
    assert all(count == 1 for _, _, count in per_key)
    assert stored == {entry_id: sorted(postings) for entry_id, postings in accepted.values()}


@pytest.mark.backend_only("postgres")
async def test_concurrent_posts_of_one_key_make_one_entry(sessionmaker: Sessionmaker) -> None:
    institution_id = await _institution(sessionmaker)
    async with sessionmaker() as s:
        await ensure_accounts(s, institution_id)  # so all ten race on the entry itself
        await s.commit()
    key = _key()
    start = asyncio.Barrier(10)

    async def post_once() -> uuid.UUID:
        async with sessionmaker() as s:
            await start.wait()
            entry = await post_entry(
                s,
                institution_id=institution_id,
                kind=key.kind,
                source_type=key.source_type,
                source_id=key.source_id,
                occurred_at=T0,
                description="raced",
                postings=settlement_postings(300),
            )
            await s.commit()
            return entry.id

    ids = await asyncio.gather(*(post_once() for _ in range(10)))
    assert len(set(ids)) == 1
    assert await _counts(sessionmaker) == (1, 3)
    async with sessionmaker() as s:
        assert await balance(s, institution_id, "mpesa_clearing") == 30_000
