"""Double-entry ledger: every money movement is a balanced journal entry.

Postings carry a signed amount (debit positive, credit negative) so "balanced" is one
SUM = 0 per entry, and an account's balance is one SUM over its postings.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, IdMixin, utcnow
from lms_domain.types import enum_column


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"


class LedgerAccount(Base, IdMixin):
    """Id is ``natural_id('ledger_account', institution_id, code, currency)``."""

    __tablename__ = "ledger_accounts"

    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("institutions.id", ondelete="RESTRICT"), default=None, index=True
    )
    code: Mapped[str] = mapped_column(sa.String(64))  # e.g. mpesa_clearing, vat_payable
    name: Mapped[str] = mapped_column(sa.String(200))
    type: Mapped[AccountType] = mapped_column(enum_column(AccountType, "type"))
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.Index("ix_ledger_accounts_institution_code", "institution_id", "code", "currency"),)


class JournalEntry(Base, IdMixin):
    """One business event. ``(source_type, source_id, kind)`` is unique so replaying a
    settlement can never post it twice."""

    __tablename__ = "journal_entries"

    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("institutions.id", ondelete="RESTRICT"), default=None, index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(32))  # settlement, refund, reversal, adjustment
    source_type: Mapped[str] = mapped_column(sa.String(32))
    source_id: Mapped[uuid.UUID]
    description: Mapped[str] = mapped_column(sa.String(255), default="")
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.UniqueConstraint("source_type", "source_id", "kind"),)


class Posting(Base, IdMixin):
    __tablename__ = "postings"

    entry_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("journal_entries.id", ondelete="RESTRICT"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("ledger_accounts.id", ondelete="RESTRICT"), index=True)
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)  # debit > 0, credit < 0

    __table_args__ = (sa.CheckConstraint("amount_minor <> 0", name="amount_non_zero"),)
