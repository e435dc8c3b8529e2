"""What Africa's Talking tells us about the phone channels: USSD end-of-session notices,
inbound SMS and SMS delivery reports. Each is stored before it is acted on, unique on AT's
own id, because AT retries every callback for about ten minutes until it gets a 200."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, IdMixin, utcnow
from lms_domain.types import enum_column


class UssdSessionEvent(Base, IdMixin):
    """AT's end-of-session notification, one per session: the source of USSD analytics
    (sessions per day, completion, drop-off by ``last_screen``)."""

    __tablename__ = "ussd_session_events"

    session_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    service_code: Mapped[str] = mapped_column(sa.String(32), default="")
    phone: Mapped[str] = mapped_column(sa.String(32), default="")
    network_code: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    status: Mapped[str] = mapped_column(sa.String(32))  # Success, Incomplete, Failed
    duration_ms: Mapped[int | None] = mapped_column(default=None)
    hops: Mapped[int | None] = mapped_column(default=None)
    input: Mapped[str | None] = mapped_column(sa.Text, default=None)
    last_app_response: Mapped[str | None] = mapped_column(sa.Text, default=None)
    last_screen: Mapped[str | None] = mapped_column(sa.String(64), default=None)  # ours, if still known
    error_message: Mapped[str | None] = mapped_column(sa.Text, default=None)
    cost: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    occurred_at: Mapped[datetime | None] = mapped_column(default=None)  # AT's ``date``, Nairobi time
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.Index("ix_ussd_session_events_received", "received_at"),)


class InboundStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"


class InboundSms(Base, IdMixin):
    """An SMS a learner sent us, stored as received; ``reply`` is what we answered."""

    __tablename__ = "inbound_sms"

    at_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    sender: Mapped[str] = mapped_column(sa.String(32))
    recipient: Mapped[str] = mapped_column(sa.String(32), default="")
    text: Mapped[str] = mapped_column(sa.Text, default="")
    link_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    network_code: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    command: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    status: Mapped[InboundStatus] = mapped_column(enum_column(InboundStatus, "status"), default=InboundStatus.RECEIVED)
    reply: Mapped[str | None] = mapped_column(sa.Text, default=None)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (sa.Index("ix_inbound_sms_status_received", "status", "received_at"),)


class SmsDeliveryReport(Base, IdMixin):
    """One delivery status of one message we sent. AT reports a message several times as it
    moves (Sent, Submitted, then Success or Failed), so a retry of the same report collapses
    on (message id, status) while each new status is kept."""

    __tablename__ = "sms_delivery_reports"

    message_id: Mapped[str] = mapped_column(sa.String(128), index=True)
    status: Mapped[str] = mapped_column(sa.String(32))
    phone: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    network_code: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    failure_reason: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    retry_count: Mapped[int | None] = mapped_column(default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.UniqueConstraint("message_id", "status"),)
