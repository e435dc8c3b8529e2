"""Tenants and people: institutions, login users, learners and the phones they share."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, IdMixin, SyncMixin, SyncScope, TenantMixin, TimestampMixin
from lms_domain.i18n import Language
from lms_domain.money import DEFAULT_VAT_RATE_BP
from lms_domain.phones import Network
from lms_domain.types import enum_column


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    INSTITUTION_ADMIN = "institution_admin"
    INSTRUCTOR = "instructor"
    LEARNER = "learner"


class UnknownPhonePolicy(StrEnum):
    REGISTER = "register"  # a short USSD registration creates the learner
    ASK_SCHOOL = "ask_school"  # the learner is told to ask the school to register them


class Institution(Base, IdMixin, SyncMixin):
    """The tenant: a school or organisation. ``settings`` holds its tunables (see schemas)."""

    __tablename__ = "institutions"
    __sync_scope__: ClassVar[SyncScope] = "self"

    name: Mapped[str] = mapped_column(sa.String(200))
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)  # typed on USSD registration
    country: Mapped[str] = mapped_column(sa.String(2), default="KE")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Africa/Nairobi")
    default_language: Mapped[Language] = mapped_column(enum_column(Language, "default_language"), default=Language.EN)
    vat_rate_bp: Mapped[int] = mapped_column(default=DEFAULT_VAT_RATE_BP)
    unknown_phone_policy: Mapped[UnknownPhonePolicy] = mapped_column(
        enum_column(UnknownPhonePolicy, "unknown_phone_policy"), default=UnknownPhonePolicy.REGISTER
    )
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        sa.CheckConstraint("vat_rate_bp >= 0 AND vat_rate_bp <= 10000", name="vat_rate_in_range"),
        sa.CheckConstraint("length(code) >= 2", name="code_not_blank"),
    )


class User(Base, IdMixin, SyncMixin):
    """A login account. Learners' logins link to a ``Learner``; staff have none."""

    __tablename__ = "users"
    __sync_scope__: ClassVar[SyncScope] = "tenant_only"
    # Credentials and lock-out state: never synced, and changing only these is no change to sync.
    __sync_private__: ClassVar[frozenset[str]] = frozenset(
        {"password_hash", "failed_logins", "locked_until", "last_login_at"}
    )

    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("institutions.id", ondelete="RESTRICT"), index=True
    )
    username: Mapped[str] = mapped_column(sa.String(150), unique=True)
    email: Mapped[str | None] = mapped_column(sa.String(254), default=None)
    full_name: Mapped[str] = mapped_column(sa.String(200), default="")
    role: Mapped[Role] = mapped_column(enum_column(Role, "role"))
    password_hash: Mapped[str] = mapped_column(sa.String(255))  # argon2id; central-only, never synced
    is_active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        # A platform admin belongs to no institution; everyone else belongs to exactly one.
        sa.CheckConstraint(
            "(role = 'platform_admin' AND institution_id IS NULL) "
            "OR (role <> 'platform_admin' AND institution_id IS NOT NULL)",
            name="role_matches_tenancy",
        ),
        sa.CheckConstraint("failed_logins >= 0", name="failed_logins_non_negative"),
    )


class Phone(Base, IdMixin, TimestampMixin):
    """An MSISDN in E.164. Global, not per tenant: a parent's phone may serve children in
    two schools. Its id is ``natural_id('phone', e164)`` so offline nodes agree on it;
    it travels with the learners that reference it rather than in a feed of its own."""

    __tablename__ = "phones"

    e164: Mapped[str] = mapped_column(sa.String(16), unique=True)
    network: Mapped[Network] = mapped_column(enum_column(Network, "network"), default=Network.OTHER)
    verified_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (sa.CheckConstraint("e164 LIKE '+%'", name="e164_format"),)


class Learner(Base, IdMixin, SyncMixin, TenantMixin):
    """The person who learns. Enrollments, attempts, certificates and subscriptions hang
    off the learner, never off a user or a phone, because phones are shared and most
    learners never have a login."""

    __tablename__ = "learners"
    # The USSD PIN is checked on the central server only, where USSD runs.
    __sync_private__: ClassVar[frozenset[str]] = frozenset({"pin_hash", "pin_failed_count", "pin_locked_until"})

    display_name: Mapped[str] = mapped_column(sa.String(120))
    language: Mapped[Language] = mapped_column(enum_column(Language, "language"), default=Language.EN)
    phone_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("phones.id", ondelete="RESTRICT"), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), unique=True, default=None
    )
    # Used as the M-Pesa AccountReference and paybill account number: at most 12 chars.
    account_no: Mapped[str] = mapped_column(sa.String(12), unique=True)
    pin_hash: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    pin_failed_count: Mapped[int] = mapped_column(default=0)
    pin_locked_until: Mapped[datetime | None] = mapped_column(default=None)
    grade: Mapped[str | None] = mapped_column(sa.String(32), default=None)

    __table_args__ = (
        sa.CheckConstraint("length(account_no) BETWEEN 4 AND 12", name="account_no_length"),
        sa.CheckConstraint("pin_failed_count >= 0", name="pin_failed_count_non_negative"),
    )
