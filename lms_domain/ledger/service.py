"""Posting balanced, idempotent journal entries and reading balances back.

Sign convention: a posting's ``amount_minor`` is debit-positive and credit-negative, in
integer minor units. ``balance`` is the plain sum of an account's postings, so debit-normal
accounts (clearing assets, contra-revenue ``refunds``) read positive and credit-normal
ones (``revenue``, ``vat_payable``, ``suspense``) read negative; every entry sums to zero,
so the trial balance always does too. ``accounts.as_reported`` gives the sign people expect.

Entries are idempotent on their business key ``(source_type, source_id, kind)``: replaying
a settlement returns the entry already posted, and the database (a unique constraint, and
append-only triggers) is what finally guarantees it, not this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.errors import Conflict, InvalidInput
from lms_domain.ids import new_id
from lms_domain.ledger.accounts import CHART, account_id, check_currency, ensure_accounts, spec_of
from lms_domain.ledger.models import JournalEntry, LedgerAccount, Posting

KEY_MAX_LENGTH = 32  # kind and source_type are VARCHAR(32)
DESCRIPTION_MAX_LENGTH = 255

# What makes two postings of one business key "the same entry": who, in which currency,
# and the multiset of (account, amount). Order does not matter; description and
# occurred_at do not either (a callback and a poll may see the same payment at
# slightly different times).
_Content = tuple[uuid.UUID | None, str, tuple[tuple[str, int], ...]]


def _content(institution_id: uuid.UUID | None, currency: str, postings: Sequence[tuple[str, int]]) -> _Content:
    return institution_id, currency, tuple(sorted(postings))


def _validate(
    *, kind: str, source_type: str, occurred_at: datetime, currency: str, postings: Sequence[tuple[str, int]]
) -> None:
    check_currency(currency)
    for name, value in (("kind", kind), ("source_type", source_type)):
        if not value or len(value) > KEY_MAX_LENGTH:
            raise InvalidInput(f"{name} must be 1-{KEY_MAX_LENGTH} characters", code="ledger_invalid_key")
    if occurred_at.tzinfo is None:
        raise InvalidInput("occurred_at must be timezone-aware", code="naive_datetime")
    if len(postings) < 2:
        raise InvalidInput("a journal entry needs at least two postings", code="ledger_too_few_postings")
    for code, amount in postings:
        spec_of(code)
        # bool is an int subclass; True would silently post one cent.
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise InvalidInput(f"amount for {code} must be integer minor units", code="ledger_invalid_amount")
        if amount == 0:
            raise InvalidInput(f"posting to {code} is zero", code="ledger_zero_posting")
    total = sum(amount for _, amount in postings)
    if total != 0:
        raise InvalidInput(f"postings sum to {total}, not zero", code="ledger_unbalanced", imbalance_minor=total)


async def _find_entry(session: AsyncSession, source_type: str, source_id: uuid.UUID, kind: str) -> JournalEntry | None:
    return await session.scalar(
        sa.select(JournalEntry).where(
            JournalEntry.source_type == source_type, JournalEntry.source_id == source_id, JournalEntry.kind == kind
        )
    )


async def entry_postings(session: AsyncSession, entry_id: uuid.UUID) -> list[tuple[str, str, int]]:
    """An entry's postings as ``(account_code, currency, amount_minor)``, in a stable order."""
    rows = await session.execute(
        sa.select(LedgerAccount.code, Posting.currency, Posting.amount_minor)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(Posting.entry_id == entry_id)
        .order_by(LedgerAccount.code, Posting.amount_minor)
    )
    return [(code, currency, int(amount)) for code, currency, amount in rows]


async def _same_or_conflict(session: AsyncSession, existing: JournalEntry, wanted: _Content) -> JournalEntry:
    stored = await entry_postings(session, existing.id)
    currencies = {currency for _, currency, _ in stored}
    stored_content = _content(
        existing.institution_id,
        currencies.pop() if len(currencies) == 1 else "",
        [(code, amount) for code, _, amount in stored],
    )
    if stored_content != wanted:
        raise Conflict(
            f"journal entry {existing.source_type}/{existing.source_id}/{existing.kind} "
            "was already posted with different content",
            code="ledger_key_conflict",
            entry_id=str(existing.id),
        )
    return existing


async def post_entry(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    kind: str,
    source_type: str,
    source_id: uuid.UUID,
    occurred_at: datetime,
    description: str,
    postings: Sequence[tuple[str, int]],
    currency: str = "KES",
) -> JournalEntry:
    """Post a balanced entry once per ``(source_type, source_id, kind)``; a replay returns it.

    Postings are ``(account_code, amount_minor)``, debit > 0 and credit < 0. Raises
    ``InvalidInput`` (nothing written) for fewer than two postings, a zero posting, an
    unknown account or an imbalance, and ``Conflict(code="ledger_key_conflict")`` when the
    key was already posted with other accounts or amounts.
    """
    postings = list(postings)
    _validate(kind=kind, source_type=source_type, occurred_at=occurred_at, currency=currency, postings=postings)
    wanted = _content(institution_id, currency, postings)
    existing = await _find_entry(session, source_type, source_id, kind)
    if existing is not None:
        return await _same_or_conflict(session, existing, wanted)

    await ensure_accounts(session, institution_id, currency)
    entry = JournalEntry(
        id=new_id(),
        institution_id=institution_id,
        kind=kind,
        source_type=source_type,
        source_id=source_id,
        description=description[:DESCRIPTION_MAX_LENGTH],
        occurred_at=occurred_at,
    )
    try:
        # The check above can race with a concurrent transaction posting the same key: the
        # unique constraint decides, and the savepoint keeps the caller's transaction usable.
        async with session.begin_nested():
            session.add(entry)
            await session.flush()  # the entry first: postings reference it, with no relationship to order them
            session.add_all(
                Posting(
                    id=new_id(),
                    entry_id=entry.id,
                    account_id=account_id(institution_id, code, currency),
                    currency=currency,
                    amount_minor=amount,
                )
                for code, amount in postings
            )
    except IntegrityError:
        # Under READ COMMITTED the unique violation is only reported once the winner has
        # committed, so it is visible now. Anything else was not a race: let it surface.
        winner = await _find_entry(session, source_type, source_id, kind)
        if winner is None:
            raise
        return await _same_or_conflict(session, winner, wanted)
    return entry


async def balance(
    session: AsyncSession,
    institution_id: uuid.UUID,
    account_code: str,
    currency: str = "KES",
    at: datetime | None = None,
) -> int:
    """The sum of the account's postings (debit-positive), optionally as of ``at`` (inclusive)."""
    spec_of(account_code)
    check_currency(currency)
    query = sa.select(sa.func.coalesce(sa.func.sum(Posting.amount_minor), 0)).where(
        Posting.account_id == account_id(institution_id, account_code, currency)
    )
    if at is not None:
        if at.tzinfo is None:
            raise InvalidInput("at must be timezone-aware", code="naive_datetime")
        query = query.join(JournalEntry, JournalEntry.id == Posting.entry_id).where(JournalEntry.occurred_at <= at)
    # Postgres sums BIGINT as NUMERIC (a Decimal); the ledger only ever holds whole minor units.
    return int(await session.scalar(query) or 0)


async def trial_balance(
    session: AsyncSession, institution_id: uuid.UUID, currency: str = "KES", at: datetime | None = None
) -> dict[str, int]:
    """Every chart account's balance (debit-positive, zero if unused); the values sum to zero."""
    check_currency(currency)
    ids = {account_id(institution_id, spec.code, currency): spec.code for spec in CHART}
    query = (
        sa.select(Posting.account_id, sa.func.sum(Posting.amount_minor))
        .where(Posting.account_id.in_(list(ids)))
        .group_by(Posting.account_id)
    )
    if at is not None:
        if at.tzinfo is None:
            raise InvalidInput("at must be timezone-aware", code="naive_datetime")
        query = query.join(JournalEntry, JournalEntry.id == Posting.entry_id).where(JournalEntry.occurred_at <= at)
    sums = dict.fromkeys(ids.values(), 0)
    for account, total in await session.execute(query):
        sums[ids[account]] = int(total)
    return sums
