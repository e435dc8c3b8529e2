"""SMS notifications to learners: queued in the send log inside the transaction that caused
them (a payment, a renewal), then delivered through the ``SmsSender`` port.

Queuing in the same transaction means a notification exists exactly when its cause does,
and ``dedupe_key`` makes a retried cause queue it once. The opt-out (STOP) is checked when
queuing and again when sending, so a learner who texts STOP after a message was queued
does not get it.
"""

from __future__ import annotations

import logging
import string
import uuid
from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock
from lms_domain.db import insert_once, serialize_on
from lms_domain.i18n import Language
from lms_domain.ids import natural_id, new_id
from lms_domain.messaging.service import message_lock_key, reported_outcome
from lms_domain.notifications.models import (
    NotificationChannel,
    NotificationLog,
    NotificationStatus,
    NotificationTemplate,
)
from lms_domain.notifications.ports import SmsSender, SmsSendError
from lms_domain.notifications.preferences import sms_allowed
from lms_domain.tenancy.models import Learner, Phone

log = logging.getLogger("somo.notifications")

REPLY_EVENT = "sms_reply"
SEND_ATTEMPTS = 5  # a message still failing with a retryable error after this many tries is failed


async def _template(
    session: AsyncSession, institution_id: uuid.UUID, event: str, language: Language
) -> NotificationTemplate | None:
    """The school's own template for ``event`` in ``language``, else the platform's, else the
    same two in English: one query for the four candidates."""
    preference = [
        natural_id("notification_template", owner, event, NotificationChannel.SMS.value, lang.value)
        for owner, lang in (
            (institution_id, language),
            (None, language),
            (institution_id, Language.EN),
            (None, Language.EN),
        )
    ]
    found = {
        t.id: t
        for t in await session.scalars(
            sa.select(NotificationTemplate).where(
                NotificationTemplate.id.in_(preference), NotificationTemplate.is_active.is_(True)
            )
        )
    }
    return next((found[key] for key in preference if key in found), None)


def render(body: str, values: Mapping[str, object]) -> str:
    """``body`` with its ``{variables}`` filled; a variable without a value stays visible
    rather than failing the cause's transaction (templates are checked when saved)."""
    fields = {name for _, name, _, _ in string.Formatter().parse(body) if name}
    return body.format_map({name: values.get(name, "{" + name + "}") for name in fields})


async def queue_sms(
    *,
    session: AsyncSession,
    recipient: str,
    body: str,
    event: str,
    language: Language,
    dedupe_key: str,
    now: datetime,
    learner_id: uuid.UUID | None = None,
    institution_id: uuid.UUID | None = None,
    template_id: uuid.UUID | None = None,
    status: NotificationStatus = NotificationStatus.QUEUED,
) -> uuid.UUID | None:
    """Put one SMS in the send log for ``deliver_sms``, once per ``dedupe_key``: the new entry's
    id, or None when that key was queued before."""
    return await insert_once(
        session,
        NotificationLog,
        {
            "id": new_id(),
            "institution_id": institution_id,
            "learner_id": learner_id,
            "template_id": template_id,
            "event": event,
            "channel": NotificationChannel.SMS,
            "language": language,
            "recipient": recipient,
            "body": body,
            "status": status,
            "dedupe_key": dedupe_key[:128],
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        },
        unique=["dedupe_key"],
    )


async def queue_learner_sms(
    *,
    session: AsyncSession,
    learner_id: uuid.UUID,
    event: str,
    values: Mapping[str, object],
    dedupe_key: str,
    now: datetime,
) -> uuid.UUID | None:
    """Queue the ``event`` SMS for a learner, in their language, unless one with ``dedupe_key``
    exists. Stored as suppressed when they opted out, and skipped for a learner with no phone
    or an event with no template. The log entry's id, or None when nothing was queued."""
    row = (
        await session.execute(
            sa.select(Learner, Phone.e164).join(Phone, Phone.id == Learner.phone_id).where(Learner.id == learner_id)
        )
    ).first()
    if row is None:
        return None
    learner, e164 = row
    template = await _template(session, learner.institution_id, event, learner.language)
    if template is None:
        return None
    allowed = await sms_allowed(session=session, learner_id=learner_id, event=event)
    return await queue_sms(
        session=session,
        recipient=e164,
        body=render(template.body, {"learner_name": learner.display_name, **values}),
        event=event,
        language=template.language,
        dedupe_key=dedupe_key,
        now=now,
        learner_id=learner.id,
        institution_id=learner.institution_id,
        template_id=template.id,
        status=NotificationStatus.QUEUED if allowed else NotificationStatus.SUPPRESSED,
    )


async def deliver_sms(
    *, sessions: async_sessionmaker[AsyncSession], sender: SmsSender, log_id: uuid.UUID, clock: Clock
) -> NotificationStatus | None:
    """Send one queued SMS and record what AT said for its recipient. A retryable failure
    leaves it queued for the next pass (up to ``SEND_ATTEMPTS``); anything else is final.
    Claimed first (``attempts`` bumped under a row lock), so two senders never send one twice."""
    async with sessions() as session, session.begin():
        entry = await session.get(NotificationLog, log_id, with_for_update=True, populate_existing=True)
        if entry is None or entry.status is not NotificationStatus.QUEUED:
            return None
        # A reply to a learner's own command goes even after STOP: they asked for it.
        learner_id = entry.learner_id if entry.event != REPLY_EVENT else None
        if learner_id is not None and not await sms_allowed(session=session, learner_id=learner_id, event=entry.event):
            entry.status, entry.updated_at = NotificationStatus.SUPPRESSED, clock.now()
            return entry.status
        entry.attempts += 1
        entry.status = NotificationStatus.SENT  # claimed; corrected below from AT's answer
        recipient, body, attempts = entry.recipient, entry.body, entry.attempts
    status, message_id, error, parts, cost = NotificationStatus.FAILED, None, None, None, None
    try:
        result = await sender.send(body, [recipient])
    except SmsSendError as exc:
        error = exc.detail[:500]
        if exc.retryable and attempts < SEND_ATTEMPTS:
            status = NotificationStatus.QUEUED
    else:
        mine = next((r for r in result.recipients if r.number == recipient), None)
        if mine is not None and mine.accepted:
            status, message_id = NotificationStatus.SENT, mine.message_id
        else:
            error = mine.status if mine else result.summary
            if mine is not None and mine.retryable and attempts < SEND_ATTEMPTS:
                status = NotificationStatus.QUEUED
        parts, cost = result.parts, mine.cost_minor if mine else None
    async with sessions() as session, session.begin():
        if message_id is not None:
            await serialize_on(session, message_lock_key(message_id))  # with its delivery reports
        entry = await session.get(NotificationLog, log_id, populate_existing=True)
        if entry is None:
            return None
        now = clock.now()
        entry.status, entry.provider_message_id, entry.error = status, message_id, error
        entry.segments, entry.cost_minor, entry.updated_at = parts, cost, now
        entry.sent_at = now if status is NotificationStatus.SENT else None
        if message_id is not None:
            early = await reported_outcome(session=session, message_id=message_id)
            if early is not None:
                entry.status, reason = early
                entry.error = reason or entry.error
                status = entry.status
    if status is not NotificationStatus.SENT:
        log.warning("sms not sent", extra={"notification_id": str(log_id), "status": status.value, "error": error})
    return status


async def due_sms(*, session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    """Queued SMS whose time has come (quiet hours may schedule some for later), oldest first."""
    rows = await session.scalars(
        sa.select(NotificationLog.id)
        .where(
            NotificationLog.status == NotificationStatus.QUEUED,
            NotificationLog.channel == NotificationChannel.SMS,
            sa.or_(NotificationLog.scheduled_for.is_(None), NotificationLog.scheduled_for <= now),
        )
        .order_by(NotificationLog.created_at, NotificationLog.id)
        .limit(limit)
    )
    return list(rows)
