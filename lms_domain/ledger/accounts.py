"""The chart of accounts every institution gets, one set per currency.

Sign convention (see ``models.py``): a posting is debit-positive, credit-negative, and a
balance is the plain sum of an account's postings. Debit-normal accounts (assets, and
``refunds``) therefore show their natural, positive balance; credit-normal accounts
(revenue, liabilities) show a negative one. ``as_reported`` flips the latter for people.

``refunds`` is a *contra-revenue* account, not an expense: a refund here is a full
reversal of a learner's payment, which undoes a sale (VAT payable is reversed with it,
like a credit note), rather than a cost of running the school. Keeping it apart from
``revenue`` leaves gross sales and refunds both visible, while net revenue is simply
``revenue + refunds`` in signed terms. It is typed ``revenue`` so reports group it with
sales, and is debit-normal, which is what makes it "contra".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.db import dialect_insert, utcnow
from lms_domain.errors import InvalidInput
from lms_domain.ids import natural_id
from lms_domain.ledger.models import AccountType, LedgerAccount
from lms_domain.money import MINOR_PER_MAJOR


@dataclass(frozen=True, slots=True)
class AccountSpec:
    code: str
    name: str
    type: AccountType
    debit_normal: bool


MPESA_CLEARING = "mpesa_clearing"
AIRTEL_CLEARING = "airtel_clearing"
REVENUE = "revenue"
VAT_PAYABLE = "vat_payable"
REFUNDS = "refunds"
SUSPENSE = "suspense"
CASH = "cash"

CHART: tuple[AccountSpec, ...] = (
    AccountSpec(MPESA_CLEARING, "M-Pesa clearing", AccountType.ASSET, debit_normal=True),
    AccountSpec(AIRTEL_CLEARING, "Airtel Money clearing", AccountType.ASSET, debit_normal=True),
    AccountSpec(REVENUE, "Revenue", AccountType.REVENUE, debit_normal=False),
    AccountSpec(VAT_PAYABLE, "VAT payable", AccountType.LIABILITY, debit_normal=False),
    AccountSpec(REFUNDS, "Refunds (contra-revenue)", AccountType.REVENUE, debit_normal=True),
    # Paybill money we hold but cannot yet attribute to a learner (e.g. a mistyped account no).
    AccountSpec(SUSPENSE, "Suspense (unmatched paybill)", AccountType.LIABILITY, debit_normal=False),
    # Money an admin recorded by hand (cash at the bursar's office, a bank deposit).
    AccountSpec(CASH, "Cash and bank (manual payments)", AccountType.ASSET, debit_normal=True),
)
SPEC_BY_CODE: dict[str, AccountSpec] = {spec.code: spec for spec in CHART}


def check_currency(currency: str) -> None:
    if currency not in MINOR_PER_MAJOR:
        raise InvalidInput(f"unsupported currency {currency!r}", code="invalid_currency")


def spec_of(code: str) -> AccountSpec:
    """The chart entry for ``code``; unknown codes are refused."""
    try:
        return SPEC_BY_CODE[code]
    except KeyError:
        raise InvalidInput(f"no ledger account {code!r} in the chart", code="ledger_unknown_account") from None


def account_id(institution_id: uuid.UUID, code: str, currency: str = "KES") -> uuid.UUID:
    """The deterministic id of an institution's account: no lookup needed to post to it."""
    return natural_id("ledger_account", institution_id, code, currency)


def as_reported(code: str, balance_minor: int) -> int:
    """A signed balance as people read it: positive when the account holds its normal side."""
    return balance_minor if spec_of(code).debit_normal else -balance_minor


async def ensure_accounts(
    session: AsyncSession, institution_id: uuid.UUID, currency: str = "KES"
) -> dict[str, LedgerAccount]:
    """The institution's chart in ``currency``, created if missing (safe to call concurrently)."""
    check_currency(currency)
    ids = {spec.code: account_id(institution_id, spec.code, currency) for spec in CHART}
    select_chart = sa.select(LedgerAccount).where(LedgerAccount.id.in_(list(ids.values())))
    existing = {account.code: account for account in await session.scalars(select_chart)}
    if len(existing) == len(CHART):
        return existing
    now = utcnow()
    rows = [
        {
            "id": ids[spec.code],
            "institution_id": institution_id,
            "code": spec.code,
            "name": spec.name,
            "type": spec.type,
            "currency": currency,
            "created_at": now,
        }
        for spec in CHART
        if spec.code not in existing
    ]
    # ON CONFLICT DO NOTHING rather than a savepoint: two first postings for a new school
    # may race to create its chart, and the loser must simply use the winner's rows.
    await session.execute(
        dialect_insert(session, LedgerAccount).values(rows).on_conflict_do_nothing(index_elements=["id"])
    )
    return {account.code: account for account in await session.scalars(select_chart)}
