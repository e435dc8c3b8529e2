"""Provider accounts, payment intents, settled payments and the raw webhook inbox.

Central-only: none of these tables ever leaves the central server.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, IdMixin, TenantMixin, TimestampMixin, utcnow
from lms_domain.types import enum_column


class Provider(StrEnum):
    MPESA = "mpesa"
    AIRTEL = "airtel"
    MANUAL = "manual"  # recorded by an admin (cash, bank)


class ProviderAccountKind(StrEnum):
    STK_PUSH = "stk_push"  # Lipa na M-Pesa Online (shortcode + passkey)
    PAYBILL = "paybill"  # C2B: learner pays to our paybill with their account number
    COLLECTION = "collection"  # Airtel Money collection


class ProviderAccount(Base, IdMixin, TimestampMixin, TenantMixin):
    """An institution's account at a provider. Secrets are never stored here: the
    ``credentials_ref`` names a settings entry (``SOMO_PAYMENTS__CREDENTIALS__<ref>__...``)."""

    __tablename__ = "provider_accounts"

    provider: Mapped[Provider] = mapped_column(enum_column(Provider, "provider"))
    kind: Mapped[ProviderAccountKind] = mapped_column(enum_column(ProviderAccountKind, "kind"))
    shortcode: Mapped[str] = mapped_column(sa.String(32))
    base_url: Mapped[str] = mapped_column(sa.String(255))
    credentials_ref: Mapped[str] = mapped_column(sa.String(64))
    environment: Mapped[str] = mapped_column(sa.String(16), default="sandbox")
    is_active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (sa.UniqueConstraint("institution_id", "provider", "kind", "shortcode"),)


class PaymentMethod(Base, IdMixin, TimestampMixin, TenantMixin):
    """A wallet a learner (or their parent) pays from."""

    __tablename__ = "payment_methods"

    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"), index=True)
    provider: Mapped[Provider] = mapped_column(enum_column(Provider, "provider"))
    msisdn: Mapped[str] = mapped_column(sa.String(16))
    label: Mapped[str] = mapped_column(sa.String(64), default="")
    is_default: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (sa.UniqueConstraint("learner_id", "provider", "msisdn"),)


class IntentStatus(StrEnum):
    CREATED = "created"
    PENDING = "pending"  # request accepted by the provider, waiting for the customer
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # no callback and the query could not tell: reconciliation decides


class FailureClass(StrEnum):
    CUSTOMER = "customer"  # cancelled, wrong PIN, insufficient funds: retry later
    UNREACHABLE = "unreachable"  # phone off: retry soon
    TRANSIENT = "transient"  # provider hiccup
    CONFIGURATION = "configuration"  # our credentials or shortcode: page an admin, not the learner


class PaymentIntent(Base, IdMixin, TimestampMixin, TenantMixin):
    """Our intention to collect an amount; at most one settled ``Payment`` results."""

    __tablename__ = "payment_intents"

    learner_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"), index=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("orders.id", ondelete="RESTRICT"), default=None, index=True
    )
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("subscriptions.id", ondelete="RESTRICT"), default=None, index=True
    )
    provider_account_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("provider_accounts.id", ondelete="RESTRICT"), default=None
    )
    provider: Mapped[Provider] = mapped_column(enum_column(Provider, "provider"))
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    msisdn: Mapped[str] = mapped_column(sa.String(16))
    account_reference: Mapped[str] = mapped_column(sa.String(12))
    description: Mapped[str] = mapped_column(sa.String(13))
    idempotency_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    status: Mapped[IntentStatus] = mapped_column(enum_column(IntentStatus, "status"), default=IntentStatus.CREATED)
    # CheckoutRequestID for STK, our transaction id for Airtel.
    provider_request_id: Mapped[str | None] = mapped_column(sa.String(64), unique=True, default=None)
    merchant_request_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    result_code: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    result_desc: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    failure_class: Mapped[FailureClass | None] = mapped_column(enum_column(FailureClass, "failure_class"), default=None)
    requested_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
        sa.CheckConstraint("currency <> 'KES' OR amount_minor % 100 = 0", name="whole_kes"),
        sa.CheckConstraint("length(description) <= 13", name="description_length"),
        sa.Index("ix_payment_intents_status_created", "status", "created_at"),
    )


class PaymentStatus(StrEnum):
    SETTLED = "settled"
    REVERSED = "reversed"


class Payment(Base, IdMixin, TimestampMixin, TenantMixin):
    """Money that actually arrived. Unique per provider receipt: a receipt settles once."""

    __tablename__ = "payments"

    intent_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("payment_intents.id", ondelete="RESTRICT"), unique=True, default=None
    )
    learner_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("learners.id", ondelete="RESTRICT"), default=None, index=True
    )  # NULL while an unmatched paybill payment sits in suspense
    provider: Mapped[Provider] = mapped_column(enum_column(Provider, "provider"))
    provider_receipt: Mapped[str] = mapped_column(sa.String(64))
    currency: Mapped[str] = mapped_column(sa.String(3), default="KES")
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    msisdn: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    account_reference: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    payer_name: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    status: Mapped[PaymentStatus] = mapped_column(enum_column(PaymentStatus, "status"), default=PaymentStatus.SETTLED)
    paid_at: Mapped[datetime]
    webhook_event_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("webhook_events.id", ondelete="RESTRICT"), default=None
    )
    recorded_by_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )

    __table_args__ = (
        sa.UniqueConstraint("provider", "provider_receipt"),
        sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
        sa.Index("ix_payments_paid_at", "paid_at"),  # reconciliation reads a day at a time
    )


class WebhookStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"  # an exact duplicate or irrelevant event
    FAILED = "failed"  # processing raised; kept for retry and inspection


class WebhookEvent(Base, IdMixin):
    """The raw inbox, written before any processing. Unique on (provider, event key,
    body hash): an exact duplicate collapses, while a contradicting body for the same
    event key is kept as its own row for reconciliation to judge."""

    __tablename__ = "webhook_events"

    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("institutions.id", ondelete="RESTRICT"), default=None, index=True
    )
    provider: Mapped[Provider] = mapped_column(enum_column(Provider, "provider"))
    kind: Mapped[str] = mapped_column(sa.String(32))  # stk_callback, c2b_confirmation, ...
    event_key: Mapped[str] = mapped_column(sa.String(128))
    body_sha256: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[str] = mapped_column(sa.Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    status: Mapped[WebhookStatus] = mapped_column(enum_column(WebhookStatus, "status"), default=WebhookStatus.RECEIVED)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        sa.UniqueConstraint("provider", "event_key", "body_sha256"),
        sa.Index("ix_webhook_events_status_received", "status", "received_at"),
        sa.Index("ix_webhook_events_kind_received", "provider", "kind", "received_at"),
    )
