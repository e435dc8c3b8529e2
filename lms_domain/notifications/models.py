"""Notification templates, the send log and learners' preferences. Central-only."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, IdMixin, TimestampMixin
from lms_domain.i18n import Language
from lms_domain.types import enum_column


class NotificationChannel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


class NotificationTemplate(Base, IdMixin, TimestampMixin):
    """Per event, channel and language. Id is ``natural_id('notification_template',
    institution_id, event, channel, language)``; a NULL institution is the platform default."""

    __tablename__ = "notification_templates"

    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("institutions.id", ondelete="RESTRICT"), default=None, index=True
    )
    event: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[NotificationChannel] = mapped_column(enum_column(NotificationChannel, "channel"))
    language: Mapped[Language] = mapped_column(enum_column(Language, "language"))
    subject: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    body: Mapped[str] = mapped_column(sa.Text)
    variables: Mapped[list[str]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(default=True)


class NotificationStatus(StrEnum):
    QUEUED = "queued"  # waiting, e.g. for quiet hours to end
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"  # opted out


class NotificationLog(Base, IdMixin, TimestampMixin):
    """Every message we send or queue. ``dedupe_key`` makes a retried job send once."""

    __tablename__ = "notification_log"

    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("institutions.id", ondelete="RESTRICT"), default=None, index=True
    )
    learner_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("learners.id", ondelete="RESTRICT"), default=None, index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), default=None)
    template_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("notification_templates.id", ondelete="SET NULL"), default=None
    )
    event: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[NotificationChannel] = mapped_column(enum_column(NotificationChannel, "channel"))
    language: Mapped[Language] = mapped_column(enum_column(Language, "language"))
    recipient: Mapped[str] = mapped_column(sa.String(254))
    subject: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[NotificationStatus] = mapped_column(
        enum_column(NotificationStatus, "status"), default=NotificationStatus.QUEUED
    )
    dedupe_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    scheduled_for: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    segments: Mapped[int | None] = mapped_column(default=None)
    cost_minor: Mapped[int | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)

    __table_args__ = (sa.Index("ix_notification_log_status_scheduled", "status", "scheduled_for"),)


class NotificationPreference(Base, IdMixin, TimestampMixin):
    """Id is ``natural_id('notification_preference', learner_id, channel, event)``;
    ``event`` '*' covers every event."""

    __tablename__ = "notification_preferences"

    institution_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("institutions.id", ondelete="RESTRICT"))
    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"))
    channel: Mapped[NotificationChannel] = mapped_column(enum_column(NotificationChannel, "channel"))
    event: Mapped[str] = mapped_column(sa.String(64), default="*")
    enabled: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (sa.UniqueConstraint("learner_id", "channel", "event"),)


class NotificationTry(Base, IdMixin):
    """One send attempt of a ``NotificationLog`` message: what the provider said, and when.

    The log row holds the message's current state; this keeps the history (a 503, then a
    refusal, then success) that an operator needs to tell a flaky provider from a bad number."""

    __tablename__ = "notification_tries"

    notification_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("notification_log.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    tried_at: Mapped[datetime]
    outcome: Mapped[NotificationStatus] = mapped_column(enum_column(NotificationStatus, "outcome"))
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)

    __table_args__ = (sa.UniqueConstraint("notification_id", "attempt"),)
