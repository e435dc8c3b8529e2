"""Recording AT's callbacks about the phone channels, each exactly once."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.db import insert_once, serialize_on
from lms_domain.ids import new_id
from lms_domain.messaging.models import InboundSms, InboundStatus, SmsDeliveryReport, UssdSessionEvent
from lms_domain.notifications.models import NotificationLog, NotificationStatus

FINAL_SUCCESS = {"Success"}


def message_lock_key(message_id: str) -> str:
    return f"sms-message:{message_id}"


FINAL_FAILURE = {"Failed", "Rejected"}


async def record_ussd_event(*, session: AsyncSession, fields: dict[str, Any], now: datetime) -> bool:
    """Store an end-of-session notice; False if this session's notice is already stored."""
    values = {"id": new_id(), "received_at": now, **fields}
    return await insert_once(session, UssdSessionEvent, values, unique=["session_id"]) is not None


async def record_inbound_sms(*, session: AsyncSession, fields: dict[str, Any], now: datetime) -> uuid.UUID | None:
    """Store an inbound SMS before acting on it; its row id, or None for AT's retry of one
    already stored."""
    values = {"id": new_id(), "received_at": now, "status": InboundStatus.RECEIVED, **fields}
    return await insert_once(session, InboundSms, values, unique=["at_id"])


async def record_delivery_report(*, session: AsyncSession, fields: dict[str, Any], now: datetime) -> bool:
    """Store one delivery status and carry a final one onto the send log. False for a retry."""
    # Serialised with the sender recording the message id (see ``message_lock_key``): a report
    # racing that write would otherwise match no row, and the sender would not see it yet.
    await serialize_on(session, message_lock_key(fields["message_id"]))
    values = {"id": new_id(), "received_at": now, **fields}
    if await insert_once(session, SmsDeliveryReport, values, unique=["message_id", "status"]) is None:
        return False
    status = fields["status"]
    # The first final status stands: reports may arrive out of order, and a message is not
    # both delivered and failed.
    open_entry = sa.and_(
        NotificationLog.provider_message_id == fields["message_id"],
        NotificationLog.status.not_in([NotificationStatus.DELIVERED, NotificationStatus.FAILED]),
    )
    if status in FINAL_SUCCESS:
        await session.execute(
            sa.update(NotificationLog).where(open_entry).values(status=NotificationStatus.DELIVERED, updated_at=now)
        )
    elif status in FINAL_FAILURE:
        await session.execute(
            sa.update(NotificationLog)
            .where(open_entry)
            .values(status=NotificationStatus.FAILED, error=fields.get("failure_reason") or status, updated_at=now)
        )
    return True


async def reported_outcome(*, session: AsyncSession, message_id: str) -> tuple[NotificationStatus, str | None] | None:
    """The final status AT already reported for ``message_id``, if any: a report can arrive
    before the sender has recorded the message id, and must not be lost for that."""
    rows = await session.execute(
        sa.select(SmsDeliveryReport.status, SmsDeliveryReport.failure_reason)
        .where(
            SmsDeliveryReport.message_id == message_id,
            SmsDeliveryReport.status.in_(sorted(FINAL_SUCCESS | FINAL_FAILURE)),
        )
        .order_by(SmsDeliveryReport.received_at, SmsDeliveryReport.id)
        .limit(1)
    )
    first = rows.first()
    if first is None:
        return None
    status, reason = first
    if status in FINAL_SUCCESS:
        return NotificationStatus.DELIVERED, None
    return NotificationStatus.FAILED, reason or status
